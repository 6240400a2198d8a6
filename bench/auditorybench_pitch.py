"""Pitch measurement accuracy and speed: our method vs a librosa-default pYIN.

Synthetic harmonic tones (four partials, 1/k amplitudes, `pipeline.samples.audio`) at
f0s log-spaced over 60 Hz – 4.2 kHz plus 3000, 3520 and 4186 Hz, rendered at 48 kHz,
clean and in seeded white noise at 10 dB SNR, resampled to the analysis rate:

  forge      pipeline.audio.pitch.measure_audio (METHOD, PitchConfig defaults)
  baseline   librosa.pyin with its defaults (frame 2048, hop 512, 0.1-semitone grid) at
             the same 44.1 kHz and the same f0 range where its frame allows it
             (fmin 60 Hz: its 2048-sample frame holds no longer period)

Prints per condition the median and worst absolute error in cents against the known
f0, the number of octave errors (|error| > 600 cents, or no voiced frame), and speed as
seconds of audio analysed per CPU second on one core (numeric libraries pinned to one
thread). Usage: python bench/auditorybench_pitch.py [--tones 24] [--seconds 4]
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # "per core": set before numpy/numba load

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import librosa  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.audio.pitch import METHOD, PitchConfig, measure_audio  # noqa: E402
from pipeline.samples.audio import SAMPLE_RATE, synthesize  # noqa: E402

OCTAVE_ERROR_CENTS = 600.0


def sweep(count: int) -> list[float]:
    spaced = np.geomspace(60.0, 4200.0, count)
    return sorted({*(round(float(f), 1) for f in spaced), 3000.0, 3520.0, 4186.0})


def with_noise(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    power = float(np.mean(audio.astype(np.float64) ** 2)) / 10 ** (snr_db / 10)
    return (audio + rng.standard_normal(audio.shape) * math.sqrt(power)).astype(np.float32)


def baseline(config: PitchConfig) -> Callable[[np.ndarray], float | None]:
    def measure(audio: np.ndarray) -> float | None:
        f0, voiced, _ = librosa.pyin(audio, fmin=60.0, fmax=config.fmax_hz, sr=config.sample_rate)
        voiced = voiced & np.isfinite(f0)
        return float(np.median(f0[voiced])) if voiced.any() else None

    return measure


def evaluate(
    name: str, measure: Callable[[np.ndarray], float | None], clips: dict, seconds: float
) -> None:
    for condition, tones in clips.items():
        cpu, errors, octave_errors = 0.0, [], 0
        for f0, audio in tones:
            start = time.process_time()
            median = measure(audio)
            cpu += time.process_time() - start
            if median is None:
                octave_errors += 1
                continue
            cents = 1200 * math.log2(median / f0)
            errors.append(abs(cents))
            octave_errors += abs(cents) > OCTAVE_ERROR_CENTS
        print(
            f"{name:9s} {condition:6s} median {np.median(errors):6.1f} cents  "
            f"worst {max(errors):7.1f} cents  octave errors {octave_errors}/{len(tones)}  "
            f"speed {len(tones) * seconds / cpu:6.1f}x real time per core"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tones", type=int, default=24, help="log-spaced f0s in the sweep")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each tone")
    args = parser.parse_args()
    config = PitchConfig()
    freqs = sweep(args.tones)
    clips: dict[str, list[tuple[float, np.ndarray]]] = {"clean": [], "snr10": []}
    for index, f0 in enumerate(freqs):
        tone = synthesize("harmonic", f0, args.seconds, seed=index)
        for condition, audio in (("clean", tone), ("snr10", with_noise(tone, 10.0, index))):
            resampled = librosa.resample(audio, orig_sr=SAMPLE_RATE, target_sr=config.sample_rate)
            clips[condition].append((f0, resampled))
    print(
        f"{len(freqs)} harmonic tones {freqs[0]:g}-{freqs[-1]:g} Hz, {args.seconds:g} s each, "
        f"analysed at {config.sample_rate} Hz; forge method {METHOD}"
    )
    warm = clips["clean"][0][1][: config.sample_rate]
    measure_audio(warm, config)  # numba/FFT warm-up outside the timings
    baseline(config)(warm)
    evaluate("forge", lambda a: measure_audio(a, config).median_f0_hz, clips, args.seconds)
    evaluate("baseline", baseline(config), clips, args.seconds)


if __name__ == "__main__":
    main()
