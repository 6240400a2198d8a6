"""Serving a clip's audio safely: inside its audio root only, in byte ranges.

A clip's audio is `audio_root/audio_path` (a file) or `audio_root/shard.tar#member` (a
member of an uncompressed webdataset shard; pipeline.audio.io). The viewer resolves the
path with symlinks followed and refuses anything that lands outside the resolved audio
root (`..` in the stored path, absolute paths, symlinks pointing elsewhere). A tar member
is served from its byte extent inside the shard, never extracted.

Range requests follow RFC 9110 §14: one range `bytes=a-b`, `bytes=a-` or `bytes=-n`;
a satisfiable range gets 206 with `Content-Range`, an unsatisfiable one 416.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.audio import io as audio_io
from pipeline.errors import ForgeError

CHUNK_BYTES = 64 * 1024
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
# First bytes of the containers libsndfile/browsers play → the content type to send.
_MAGIC = (
    (b"RIFF", "audio/wav"),
    (b"fLaC", "audio/flac"),
    (b"OggS", "audio/ogg"),
    (b"ID3", "audio/mpeg"),
    (b"\xff\xfb", "audio/mpeg"),
    (b"\xff\xf3", "audio/mpeg"),
)
_SUFFIX_TYPES = {
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg",
}


class AudioNotServable(ForgeError):
    """The clip's audio is missing, or its path leaves the audio root."""


@dataclass(frozen=True)
class AudioExtent:
    """Bytes [offset, offset + size) of `file` are the clip's encoded audio."""

    file: Path
    offset: int
    size: int
    content_type: str


def locate(clip: dict[str, Any]) -> AudioExtent:
    """Where a `clips` row's audio lies, checked to stay inside its audio root."""
    if not clip.get("audio_root"):
        raise AudioNotServable(f"clip {clip.get('clip_id')!r} has no audio root")
    root = Path(clip["audio_root"]).resolve()
    try:
        path, member = audio_io.split_location(clip)
    except audio_io.AudioLoadError as exc:
        raise AudioNotServable(str(exc)) from exc
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise AudioNotServable(f"clip {clip['clip_id']!r}: audio path leaves the audio root")
    if not resolved.is_file():
        raise AudioNotServable(f"clip {clip['clip_id']!r}: no audio file")
    if member is None:
        offset, size = 0, resolved.stat().st_size
    else:
        # The shard's member index (built once per shard by pipeline.audio.io).
        extent = audio_io._TAR_INDEX.lookup(resolved, member)
        if extent is None:
            raise AudioNotServable(f"clip {clip['clip_id']!r}: no member {member!r} in the shard")
        offset, size = extent
    return AudioExtent(resolved, offset, size, _content_type(resolved, member, offset))


def _content_type(path: Path, member: str | None, offset: int) -> str:
    with open(path, "rb") as handle:
        handle.seek(offset)
        head = handle.read(4)
    for magic, content_type in _MAGIC:
        if head.startswith(magic):
            return content_type
    return _SUFFIX_TYPES.get(Path(member or path.name).suffix.lower(), "audio/wav")


class RangeNotSatisfiable(ForgeError):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte positions asked for, None for the whole body."""
    if not header:
        return None
    match = _RANGE_RE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None  # a malformed or multi-range header is ignored: send everything
    first_text, last_text = match.groups()
    if first_text == "":
        length = int(last_text)
        if length == 0:
            raise RangeNotSatisfiable(header)
        return max(size - length, 0), size - 1
    first = int(first_text)
    last = min(int(last_text), size - 1) if last_text else size - 1
    if first >= size or first > last:
        raise RangeNotSatisfiable(header)
    return first, last


def read_extent(extent: AudioExtent, first: int, last: int) -> Iterator[bytes]:
    """Stream bytes [first, last] of the clip, CHUNK_BYTES at a time."""
    remaining = last - first + 1
    with open(extent.file, "rb") as handle:
        handle.seek(extent.offset + first)
        while remaining > 0:
            chunk = handle.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
