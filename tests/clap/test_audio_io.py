"""pipeline.audio.io: plain files, tar members, resampling and typed failures."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio.io import AudioLoadError, load_clip_audio


def _tone(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _flac_bytes(audio: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _write_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_plain_file_same_rate_is_returned_unchanged(tmp_path: Path) -> None:
    audio = _tone(48_000, 1.0)
    sf.write(tmp_path / "a.wav", audio, 48_000, subtype="FLOAT")
    out = load_clip_audio({"audio_root": str(tmp_path), "audio_path": "a.wav"}, 48_000)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, audio)


def test_stereo_is_averaged_and_resampled(tmp_path: Path) -> None:
    left, right = _tone(16_000, 2.0), _tone(16_000, 2.0, 880.0)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16_000, subtype="FLOAT")
    out = load_clip_audio((tmp_path, "s.wav"), 48_000)
    assert out.shape == (96_000,)
    both = load_clip_audio(tmp_path / "s.wav", 16_000, mono=False)
    assert both.shape == (2, 32_000)
    np.testing.assert_allclose(
        load_clip_audio(tmp_path / "s.wav", 16_000), (left + right) / 2, atol=1e-6
    )


def test_tar_member_random_access(tmp_path: Path) -> None:
    first, second = _tone(48_000, 0.5, 300.0), _tone(48_000, 0.7, 600.0)
    _write_tar(
        tmp_path / "shard.tar",
        {
            "1.json": b"{}",
            "1.flac": _flac_bytes(first, 48_000),
            "2.flac": _flac_bytes(second, 48_000),
        },
    )
    out = load_clip_audio({"audio_root": str(tmp_path), "audio_path": "shard.tar#2.flac"}, 48_000)
    np.testing.assert_allclose(out, second, atol=1e-4)
    with pytest.raises(AudioLoadError) as missing:
        load_clip_audio((tmp_path, "shard.tar#3.flac"), 48_000)
    assert missing.value.reason == "missing"
    with pytest.raises(AudioLoadError) as not_audio:
        load_clip_audio((tmp_path, "shard.tar#1.json"), 48_000)
    assert not_audio.value.reason == "unreadable"


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("absent", "missing"),
        ("corrupt", "unreadable"),
        ("silent", "silent"),
        ("short", "too_short"),
        ("empty", "too_short"),
    ],
)
def test_failures_carry_a_reason(tmp_path: Path, setup: str, reason: str) -> None:
    path = tmp_path / "clip.wav"
    if setup == "corrupt":
        path.write_bytes(b"RIFF\x00\x00garbage, not audio")
    elif setup == "silent":
        sf.write(path, np.zeros(48_000, dtype=np.float32), 48_000)
    elif setup == "short":
        sf.write(path, _tone(48_000, 0.01), 48_000)
    elif setup == "empty":
        sf.write(path, np.zeros(0, dtype=np.float32), 48_000)
    with pytest.raises(AudioLoadError) as error:
        load_clip_audio((tmp_path, "clip.wav"), 48_000)
    assert error.value.reason == reason
    assert "clip.wav" in str(error.value)


@pytest.mark.parametrize("rate", [16_000, 44_100, 48_000])
@pytest.mark.parametrize("channels", [1, 2])
def test_decoding_equals_librosa_load_at_48k(tmp_path: Path, rate: int, channels: int) -> None:
    """The CLAP references' input: laion-clap's README (and its file-list hook) load with
    `librosa.load(path, sr=48000)` — mono by channel mean, then soxr_hq resampling."""
    import librosa

    rng = np.random.default_rng(rate + channels)
    audio = (0.3 * rng.standard_normal((round(1.3 * rate), channels))).astype(np.float32)
    sf.write(tmp_path / "a.flac", audio, rate, subtype="PCM_16")
    ours = load_clip_audio(tmp_path / "a.flac", 48_000)
    reference, reference_rate = librosa.load(tmp_path / "a.flac", sr=48_000)
    assert reference_rate == 48_000 and ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-6)
