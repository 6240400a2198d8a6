"""Deterministic synthetic audio for the sample clips.

Signals with known properties, so measured features can be checked against the truth:

* `harmonic`: f0 plus three harmonics (amplitudes 1, 1/2, 1/3, 1/4), steady; pitch = f0.
* `pulses`:   the harmonic tone gated on/off at 4 Hz (voiced about half the time).
* `chirp`:    a glide from f0 to 1.5·f0 and back (median pitch above f0).
* `noise`:    pink-ish noise, no pitch.
* `silence`:  digital silence.

Clips are 48 kHz mono 16-bit, seeded from their path, so reruns write identical bytes.

`audio_copies.csv` lists clips whose audio is a re-encoded copy of another sample clip
(another sample rate, a lossy codec round trip, a gain): the same sound under another id,
so the content fingerprint has an overlap to find (pipeline.tasks.common.sound_groups).
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.samples import AUDIO_SPECS, DATA_DIR

SAMPLE_RATE = 48_000
AUDIO_COPIES = DATA_DIR / "audio_copies.csv"


@dataclass(frozen=True)
class SignalSpec:
    source: str
    audio_path: str
    kind: str
    f0_hz: float
    duration_s: float


def read_specs(path: Path = AUDIO_SPECS) -> list[SignalSpec]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            SignalSpec(
                r["source"], r["audio_path"], r["kind"], float(r["f0_hz"]), float(r["duration_s"])
            )
            for r in csv.DictReader(handle)
        ]


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _harmonic(f0: float | np.ndarray, n: int, sr: int) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(np.broadcast_to(f0, (n,))) / sr
    return sum(np.sin(k * phase) / k for k in range(1, 5)) / 2.1


def synthesize(
    kind: str, f0_hz: float, duration_s: float, seed: int, sr: int = SAMPLE_RATE
) -> np.ndarray:
    n = round(duration_s * sr)
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    if kind == "harmonic":
        signal = _harmonic(f0_hz, n, sr)
    elif kind == "pulses":
        gate = (np.sin(2 * np.pi * 4 * t) > 0).astype(np.float64)
        signal = _harmonic(f0_hz, n, sr) * gate
    elif kind == "chirp":
        glide = f0_hz * (1.0 + 0.5 * np.sin(np.pi * t / duration_s))
        signal = _harmonic(glide, n, sr)
    elif kind == "noise":
        white = rng.standard_normal(n)
        spectrum = np.fft.rfft(white) / np.sqrt(np.arange(1, n // 2 + 2))
        signal = np.fft.irfft(spectrum, n)
        signal /= np.abs(signal).max() + 1e-9
    elif kind == "silence":
        signal = np.zeros(n)
    else:
        raise ValueError(f"unknown signal kind {kind!r}")
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    return (0.5 * signal * fade).astype(np.float32)


def write_sample_audio(audio_dir: Path, specs: list[SignalSpec] | None = None) -> int:
    """Render every sample clip under `audio_dir/<source>/<audio_path>`, then the re-encoded
    copies (`audio_copies.csv`, only with the default specs); skips existing files."""
    if specs:
        return _render_specs(audio_dir, specs)
    return _render_specs(audio_dir, read_specs()) + write_audio_copies(audio_dir)


def _render_specs(audio_dir: Path, specs: list[SignalSpec]) -> int:
    written = 0
    for spec in specs:
        target = audio_dir / spec.source / spec.audio_path
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        audio = synthesize(spec.kind, spec.f0_hz, spec.duration_s, _seed(spec.audio_path))
        tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
        fmt = "FLAC" if target.suffix == ".flac" else "WAV"
        sf.write(tmp, audio, SAMPLE_RATE, format=fmt, subtype="PCM_16")
        os.replace(tmp, target)
        written += 1
    return written


@dataclass(frozen=True)
class AudioCopy:
    source: str
    audio_path: str
    copy_of_source: str
    copy_of_path: str
    sample_rate: int
    codec: str  # a soundfile format the copy passes through: OGG (Vorbis), MP3, FLAC, WAV
    gain: float


def read_copies(path: Path = AUDIO_COPIES) -> list[AudioCopy]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            AudioCopy(
                r["source"],
                r["audio_path"],
                r["copy_of_source"],
                r["copy_of_path"],
                int(r["sample_rate"]),
                r["codec"],
                float(r["gain"]),
            )
            for r in csv.DictReader(handle)
        ]


def reencode(audio: np.ndarray, rate: int, copy: AudioCopy) -> np.ndarray:
    """`audio` resampled to the copy's rate, scaled by its gain and passed through its codec."""
    import io

    from pipeline.audio.io import decode_audio, resample

    scaled = resample(audio.astype(np.float32), rate, copy.sample_rate) * copy.gain
    subtypes = {"OGG": "VORBIS", "MP3": "MPEG_LAYER_III", "FLAC": "PCM_16", "WAV": "PCM_16"}
    buffer = io.BytesIO()
    sf.write(buffer, scaled, copy.sample_rate, format=copy.codec, subtype=subtypes[copy.codec])
    decoded, _ = decode_audio(buffer.getvalue(), f"{copy.source}/{copy.audio_path}")
    return decoded[0]


def write_audio_copies(audio_dir: Path) -> int:
    """Render each listed copy from its (already written) original; skips existing files."""
    written = 0
    for copy in read_copies():
        target = audio_dir / copy.source / copy.audio_path
        if target.exists():
            continue
        original, rate = sf.read(
            audio_dir / copy.copy_of_source / copy.copy_of_path, dtype="float32"
        )
        audio = reencode(original, rate, copy)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
        fmt = "FLAC" if target.suffix == ".flac" else "WAV"
        sf.write(tmp, audio, copy.sample_rate, format=fmt, subtype="PCM_16")
        os.replace(tmp, target)
        written += 1
    return written
