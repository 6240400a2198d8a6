"""Content fingerprints: re-encoded copies match, different sounds and dull signals do not."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import fingerprint as fp
from pipeline.audio.io import decode_audio, resample
from pipeline.samples.audio import AudioCopy, reencode, synthesize


def fingerprint_of(audio: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    return fp.fingerprint_signal(resample(audio.astype(np.float32), rate, fp.SAMPLE_RATE))


def copy_of(audio: np.ndarray, rate: int, codec: str, gain: float) -> np.ndarray:
    return reencode(audio, 48_000, AudioCopy("x", "y.wav", "x", "z.wav", rate, codec, gain))


@pytest.mark.parametrize("kind", ["noise", "pulses"])
@pytest.mark.parametrize(
    ("rate", "codec", "gain"),
    [(16_000, "OGG", 0.5), (22_050, "MP3", 0.7), (44_100, "FLAC", 1.3), (8_000, "WAV", 0.3)],
)
def test_a_reencoded_copy_matches_its_original(kind: str, rate: int, codec: str, gain: float):
    original = synthesize(kind, 450.0, 4.0, seed=7)
    bits, strong = fingerprint_of(original, 48_000)
    copy_bits, _ = fingerprint_of(copy_of(original, rate, codec, gain), rate)
    assert strong >= fp.MIN_STRONG_SHARE  # informative, so it may link clips
    assert int((bits != copy_bits).sum()) <= fp.MATCH_MAX_BITS


def test_different_recordings_are_far_apart() -> None:
    first, _ = fingerprint_of(synthesize("noise", 0, 4.0, seed=1), 48_000)
    distances = [
        int((first != fingerprint_of(synthesize("noise", 0, 4.0, seed=s), 48_000)[0]).sum())
        for s in range(2, 8)
    ]
    assert min(distances) > 2 * fp.MATCH_MAX_BITS


def test_gain_cancels_exactly() -> None:
    audio = synthesize("noise", 0, 4.0, seed=3)
    assert np.array_equal(fingerprint_of(audio, 48_000)[0], fingerprint_of(audio * 0.25, 48_000)[0])


@pytest.mark.parametrize("kind", ["harmonic", "silence"])
def test_steady_tones_and_silence_are_not_informative(kind: str) -> None:
    _, strong = fingerprint_of(synthesize(kind, 300.0, 4.0, seed=0), 48_000)
    assert strong < fp.MIN_STRONG_SHARE


def test_fingerprint_clip_records_a_status_for_bad_audio(tmp_path) -> None:
    (tmp_path / "broken.wav").write_bytes(b"not audio")
    buffer = io.BytesIO()
    sf.write(buffer, synthesize("noise", 0, 4.0, seed=4), 48_000, format="WAV")
    (tmp_path / "good.wav").write_bytes(buffer.getvalue())
    broken = fp.fingerprint_clip(
        {"clip_id": "a", "audio_root": str(tmp_path), "audio_path": "broken.wav"}, "r"
    )
    missing = fp.fingerprint_clip(
        {"clip_id": "b", "audio_root": str(tmp_path), "audio_path": "absent.wav"}, "r"
    )
    good = fp.fingerprint_clip(
        {"clip_id": "c", "audio_root": str(tmp_path), "audio_path": "good.wav"}, "r"
    )
    assert (broken.status, broken.bits, broken.informative) == ("unreadable", None, False)
    assert missing.status == "missing"
    assert good.status == "ok" and good.informative and len(good.bits or "") == fp.N_BITS // 4
    decoded, _ = decode_audio(buffer.getvalue(), "good")
    expected, _ = fingerprint_of(decoded[0], 48_000)
    assert good.bits == fp.bits_to_hex(expected)
