"""Pitch measurement speed and accuracy: our pYIN settings vs a librosa-default pYIN.

Renders the synthetic sample tones (known f0), then in the same process measures:

  forge      pipeline.audio.pitch.measure_audio (16 kHz, frame 1024, 0.5-semitone grid)
  baseline   librosa.pyin with its default frame_length 2048 and 0.1-semitone grid,
             same sample rate and f0 range (what a plain call would do)

Prints seconds per 4 s clip, the speed ratio, and the worst relative error of the
median f0 against the known frequency for each.  Usage: python bench/auditorybench_pitch.py
"""

from __future__ import annotations

import argparse
import math
import time

import librosa
import numpy as np

from pipeline.audio.pitch import PitchConfig, measure_audio
from pipeline.samples.audio import SAMPLE_RATE, read_specs, synthesize


def known_median(kind: str, f0: float) -> float:
    return f0 * (1 + 0.5 * math.sin(math.pi / 4)) if kind == "chirp" else f0


def baseline(audio: np.ndarray, config: PitchConfig) -> float | None:
    f0, voiced, _ = librosa.pyin(
        audio, fmin=config.fmin_hz, fmax=config.fmax_hz, sr=config.sample_rate
    )
    voiced = voiced & np.isfinite(f0)
    return float(np.median(f0[voiced])) if voiced.any() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12, help="pitched sample clips to use")
    args = parser.parse_args()
    config = PitchConfig()
    specs = [s for s in read_specs() if s.kind in ("harmonic", "pulses", "chirp")][: args.clips]
    clips = [
        librosa.resample(
            synthesize(s.kind, s.f0_hz, s.duration_s, seed=i),
            orig_sr=SAMPLE_RATE,
            target_sr=config.sample_rate,
        )
        for i, s in enumerate(specs)
    ]
    # warm up numba/JIT paths for both so neither pays compilation in the timing
    measure_audio(clips[0], config)
    baseline(clips[0][: config.sample_rate], config)

    results = {}
    for name, fn in (
        ("forge", lambda a: measure_audio(a, config).median_f0_hz),
        ("baseline", lambda a: baseline(a, config)),
    ):
        start = time.perf_counter()
        medians = [fn(audio) for audio in clips]
        elapsed = time.perf_counter() - start
        errors = [
            abs(m - known_median(s.kind, s.f0_hz)) / known_median(s.kind, s.f0_hz)
            for m, s in zip(medians, specs, strict=True)
            if m is not None
        ]
        results[name] = (elapsed / len(clips), max(errors), len(errors))
        print(
            f"{name:9s} {results[name][0]:.3f} s/clip  worst median error {100 * results[name][1]:.2f} %"
            f"  ({results[name][2]}/{len(clips)} clips measured)"
        )
    print(f"speed ratio baseline/forge: {results['baseline'][0] / results['forge'][0]:.1f}x")


if __name__ == "__main__":
    main()
