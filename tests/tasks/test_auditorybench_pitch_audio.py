"""pipeline.audio.pitch: measured f0 of the synthetic sample tones against their known f0."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.audio.pitch import PitchConfig, load_pitches, measure_audio, measure_clips
from pipeline.samples.audio import SAMPLE_RATE, read_specs, synthesize
from pipeline.storage import Warehouse

CHIRP_MEDIAN_FACTOR = 1 + 0.5 * math.sin(math.pi / 4)  # median of f0·(1 + 0.5·sin(πt/T))


def expected_pitch(kind: str, f0: float) -> float | None:
    """The true median f0 of a synthetic sample signal (None: unpitched)."""
    if kind in ("harmonic", "pulses"):
        return f0
    if kind == "chirp":
        return f0 * CHIRP_MEDIAN_FACTOR
    return None


@pytest.mark.parametrize(
    ("kind", "f0"),
    [("harmonic", 41), ("harmonic", 440), ("harmonic", 3100), ("pulses", 140), ("chirp", 500)],
)
def test_measured_median_f0_is_within_three_percent(kind: str, f0: float) -> None:
    import librosa

    config = PitchConfig()
    audio = librosa.resample(
        synthesize(kind, f0, 4.0, seed=1), orig_sr=SAMPLE_RATE, target_sr=config.sample_rate
    )
    measurement = measure_audio(audio, config)
    expected = expected_pitch(kind, f0)
    assert measurement.median_f0_hz == pytest.approx(expected, rel=0.03)
    assert measurement.voiced_fraction >= config.min_voiced_fraction


def test_noise_has_too_little_voiced_audio() -> None:
    import librosa

    audio = librosa.resample(
        synthesize("noise", 0, 4.0, seed=2),
        orig_sr=SAMPLE_RATE,
        target_sr=PitchConfig().sample_rate,
    )
    assert measure_audio(audio).voiced_fraction < PitchConfig().min_voiced_fraction


def _with_noise(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise_power = float(np.mean(audio.astype(np.float64) ** 2)) / 10 ** (snr_db / 10)
    return (audio + rng.standard_normal(audio.shape) * np.sqrt(noise_power)).astype(np.float32)


SWEEP_HZ = (60, 70, 80, 131, 440, 1000, 2093, 2800, 3000, 3520, 4186, 4200)


@pytest.mark.parametrize("snr_db", [None, 10.0], ids=["clean", "snr10"])
def test_harmonic_sweep_within_25_cents_and_no_octave_errors(snr_db: float | None) -> None:
    """Harmonic tones (four partials, 1/k amplitudes) across 60 Hz – 4.2 kHz, clean and in
    white noise at 10 dB SNR (seeded): every median within 25 cents of the true f0."""
    import librosa

    config = PitchConfig()
    cents = {}
    for index, f0 in enumerate(SWEEP_HZ):
        audio = synthesize("harmonic", f0, 2.0, seed=index)
        if snr_db is not None:
            audio = _with_noise(audio, snr_db, seed=100 + index)
        audio = librosa.resample(audio, orig_sr=SAMPLE_RATE, target_sr=config.sample_rate)
        measured = measure_audio(audio, config)
        assert measured.median_f0_hz is not None, f"{f0} Hz: no voiced frame"
        assert measured.voiced_fraction >= 0.9, f"{f0} Hz: voiced {measured.voiced_fraction}"
        cents[f0] = 1200 * math.log2(measured.median_f0_hz / f0)
    off = {f0: round(c, 1) for f0, c in cents.items() if abs(c) > 25}
    assert not off, f"cents off (1200 = an octave): {off}"


def test_method_identity_is_part_of_the_key() -> None:
    """Values from earlier analysis (16 kHz pYIN) never share a cache key with these."""
    from pipeline.audio import pitch

    assert pitch.METHOD == "yin-cmndf-44k-v2"
    key = PitchConfig().key()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pitch, "METHOD", "librosa-pyin")
        assert PitchConfig().key() != key


def test_measure_clips_records_every_clip_and_caches_reruns(sample_warehouse: Warehouse) -> None:
    specs = {
        f"laion630k:{s.audio_path.split('/')[-1].split('.')[0]}": s
        for s in read_specs()
        if s.source == "laion630k"
    }
    clip_ids = sorted(c for c in specs if c.endswith(("0201", "0204", "0208", "0401", "0307")))
    known = {
        r["clip_id"]
        for r in sample_warehouse.rows(
            "SELECT clip_id FROM clips WHERE list_contains(?, clip_id)", [clip_ids]
        )
    }
    assert known == set(clip_ids), "sample LAION clip ids changed"
    first = measure_clips(sample_warehouse, clip_ids, "run-a")
    assert (first.measured, first.cached) == (5, 0)
    second = measure_clips(sample_warehouse, clip_ids, "run-b")
    assert (second.measured, second.cached) == (0, 5)
    pitches = load_pitches(sample_warehouse, clip_ids)
    for clip_id in clip_ids:
        spec = specs[clip_id]
        expected = expected_pitch(spec.kind, spec.f0_hz)
        if expected is None:
            assert pitches[clip_id]["status"] == "too_little_voiced"
        else:
            assert pitches[clip_id]["status"] == "ok"
            assert pitches[clip_id]["median_f0_hz"] == pytest.approx(expected, rel=0.03)


def test_missing_audio_is_a_recorded_status_not_a_crash(warehouse: Warehouse) -> None:
    from datetime import UTC, datetime

    warehouse.write_partition(
        "clips",
        "source=laion630k",
        [
            {
                "clip_id": "laion630k:gone",
                "source": "laion630k",
                "audio_path": "train/gone.flac",
                "audio_root": "/nonexistent-root",
                "source_file": "x.json",
                "run_id": "r",
                "ingested_at": datetime.now(UTC),
            }
        ],
    )
    summary = measure_clips(warehouse, ["laion630k:gone"], "r")
    assert summary.by_status == {"missing": 1}
    row = warehouse.rows("SELECT status, detail FROM clip_pitch")[0]
    assert row["status"] == "missing" and row["detail"]
