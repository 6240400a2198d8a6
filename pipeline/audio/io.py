"""Decode a clip's audio to a float32 array at a requested sample rate.

A clip's audio lives at `audio_root / audio_path` (columns of `clips`). Two layouts:

* a plain file (wav/flac/ogg/mp3, whatever libsndfile reads);
* a member of an uncompressed webdataset tar shard, written `shard.tar#member`. The
  shard's member index (name → byte offset, size) is read once per shard and cached, so
  each clip is one seek + read, never a scan of the shard.

Decoding uses soundfile; mono is the mean of the channels, taken before resampling;
resampling uses librosa's soxr backend (`soxr_hq`), skipped when the file is already at the
requested rate. So a clip decoded at 48 kHz has the samples `librosa.load(path, sr=48000)`
gives (librosa 0.11: channel mean, then `resample(res_type="soxr_hq")`), the input
laion-clap's README path and the transformers CLAP extractor expect. Problems raise `AudioLoadError` with a machine-readable
`reason` (`missing`, `unreadable`, `silent`, `too_short`) that callers record per clip
instead of crashing the run.
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from pipeline.errors import ForgeError

AudioFailure = Literal["missing", "unreadable", "silent", "too_short"]
AUDIO_FAILURE_REASONS: tuple[AudioFailure, ...] = ("missing", "unreadable", "silent", "too_short")

TAR_MEMBER_SEPARATOR = "#"
# Peak below -80 dBFS: digital silence or a dead recording; any embedding of it is noise.
DEFAULT_SILENCE_PEAK = 1e-4
DEFAULT_MIN_SECONDS = 0.1
_RESAMPLE_TYPE = "soxr_hq"
_TAR_INDEX_CACHE_SIZE = 64

ClipLocation = Mapping[str, Any] | tuple[str | Path | None, str] | str | Path


class AudioLoadError(ForgeError):
    """A clip's audio cannot be used; `reason` is one of AUDIO_FAILURE_REASONS."""

    def __init__(self, reason: AudioFailure, location: str, detail: str) -> None:
        self.reason = reason
        self.location = location
        self.detail = detail
        super().__init__(f"{location}: {reason}: {detail}")


def split_location(clip: ClipLocation) -> tuple[Path, str | None]:
    """(file on disk, tar member or None) for a clip row, an (audio_root, audio_path) pair or a path."""
    if isinstance(clip, Mapping):
        root, rel = clip.get("audio_root"), clip.get("audio_path")
    elif isinstance(clip, tuple):
        root, rel = clip
    else:
        root, rel = None, str(clip)
    if not rel:
        raise AudioLoadError("missing", str(clip), "the clip has no audio_path")
    rel = str(rel)
    member: str | None = None
    if TAR_MEMBER_SEPARATOR in rel:
        shard, _, member = rel.partition(TAR_MEMBER_SEPARATOR)
        if shard.endswith(".tar"):
            rel = shard
        else:  # a '#' that is part of an ordinary file name
            member = None
    path = Path(rel)
    if root is not None and not path.is_absolute():
        path = Path(root) / path
    return path, member


def describe_location(clip: ClipLocation) -> str:
    path, member = split_location(clip)
    return f"{path}{TAR_MEMBER_SEPARATOR}{member}" if member else str(path)


class _TarIndex:
    """Member name → (data offset, size) of one uncompressed tar, cached per (path, mtime, size)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int, int], dict[str, tuple[int, int]]] = OrderedDict()

    def lookup(self, shard: Path, member: str) -> tuple[int, int] | None:
        stat = shard.stat()
        key = (str(shard.resolve()), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            index = self._cache.get(key)
            if index is not None:
                self._cache.move_to_end(key)
        if index is None:
            index = self._build(shard)
            with self._lock:
                self._cache[key] = index
                while len(self._cache) > _TAR_INDEX_CACHE_SIZE:
                    self._cache.popitem(last=False)
        return index.get(member)

    @staticmethod
    def _build(shard: Path) -> dict[str, tuple[int, int]]:
        # Mode "r:" refuses compressed tars: random access needs byte offsets into the file.
        with tarfile.open(shard, mode="r:") as archive:
            return {m.name: (m.offset_data, m.size) for m in archive.getmembers() if m.isfile()}


_TAR_INDEX = _TarIndex()


def read_audio_bytes(clip: ClipLocation) -> bytes:
    """The encoded bytes of a clip (plain file or tar member); AudioLoadError if absent."""
    path, member = split_location(clip)
    where = describe_location(clip)
    if not path.is_file():
        raise AudioLoadError("missing", where, "file not found")
    try:
        if member is None:
            return path.read_bytes()
        entry = _TAR_INDEX.lookup(path, member)
        if entry is None:
            raise AudioLoadError("missing", where, f"no member {member!r} in the tar shard")
        offset, size = entry
        with open(path, "rb") as handle:
            data = os.pread(handle.fileno(), size, offset)
    except tarfile.TarError as exc:
        raise AudioLoadError("unreadable", where, f"not an uncompressed tar shard: {exc}") from exc
    except OSError as exc:
        raise AudioLoadError("unreadable", where, str(exc)) from exc
    if len(data) != size:
        raise AudioLoadError("unreadable", where, "tar member is truncated")
    return data


def decode_audio(data: bytes, where: str) -> tuple[np.ndarray, int]:
    """Encoded bytes → (float32 array shaped (channels, samples), sample rate)."""
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioLoadError("unreadable", where, f"cannot decode audio: {exc}") from exc
    return np.ascontiguousarray(audio.T), int(rate)


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample along the last axis with soxr; returns the input unchanged when rates match."""
    if orig_rate == target_rate:
        return audio
    import librosa  # imported on first need: librosa's import costs ~1 s

    return librosa.resample(
        audio, orig_sr=orig_rate, target_sr=target_rate, res_type=_RESAMPLE_TYPE, axis=-1
    ).astype(np.float32, copy=False)


def load_clip_audio(
    clip: ClipLocation,
    sample_rate: int,
    mono: bool = True,
    *,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    silence_peak: float = DEFAULT_SILENCE_PEAK,
) -> np.ndarray:
    """Decode a clip to float32 at `sample_rate`: shape (samples,) if mono else (channels, samples).

    `clip` is a `clips` row (uses `audio_root` and `audio_path`), an (audio_root, audio_path)
    pair, or a path. Raises AudioLoadError(reason=missing|unreadable|silent|too_short).
    """
    where = describe_location(clip)
    audio, rate = decode_audio(read_audio_bytes(clip), where)
    if audio.shape[1] == 0:
        raise AudioLoadError("too_short", where, "the file holds no samples")
    if not np.isfinite(audio).all():
        raise AudioLoadError("unreadable", where, "the decoded audio holds NaN or infinite samples")
    duration = audio.shape[1] / rate
    if duration < min_seconds:
        raise AudioLoadError(
            "too_short", where, f"{duration:.3f} s is shorter than the minimum {min_seconds} s"
        )
    if mono:
        audio = audio.mean(axis=0) if audio.shape[0] > 1 else audio[0]
    peak = float(np.abs(audio).max())
    if peak < silence_peak:
        raise AudioLoadError("silent", where, f"peak amplitude {peak:.2e} < {silence_peak:.0e}")
    return np.ascontiguousarray(resample(audio, rate, sample_rate), dtype=np.float32)
