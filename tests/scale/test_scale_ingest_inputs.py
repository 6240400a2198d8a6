"""Ingest change detection without reading audio, and without re-reading unchanged metadata:
touch keeps the fingerprint (same content), an edit changes it, audio is only stat-ed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from flows.stages import cache
from pipeline.samples import SAMPLE_PATHS
from pipeline.storage import Warehouse


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "clotho"
    shutil.copytree(SAMPLE_PATHS["clotho"], folder)
    (folder / "audio").mkdir()
    (folder / "audio" / "a.flac").write_bytes(b"fLaC" + b"\0" * 4096)
    (folder / "shard-000.tar").write_bytes(b"\0" * 10240)
    return folder


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file whose content the fingerprint reads."""
    read: list[Path] = []
    original = cache._content_hash

    def spy(path: Path) -> str:
        read.append(path)
        return original(path)

    monkeypatch.setattr(cache, "_content_hash", spy)
    return read


def test_unchanged_inputs_are_not_read_again_and_audio_never(
    corpus: Path, tmp_path: Path, hashed: list[Path]
) -> None:
    wh = Warehouse(tmp_path / "warehouse")
    first = cache.inputs_fingerprint([corpus], wh)
    metadata = sorted(p for p in corpus.rglob("*.csv"))
    assert sorted(hashed) == metadata  # CSVs hashed once; the .flac and the .tar not at all
    hashed.clear()
    assert cache.inputs_fingerprint([corpus], wh) == first
    assert hashed == []  # nothing read on a rerun


def test_touch_keeps_the_fingerprint_an_edit_changes_it(
    corpus: Path, tmp_path: Path, hashed: list[Path]
) -> None:
    wh = Warehouse(tmp_path / "warehouse")
    first = cache.inputs_fingerprint([corpus], wh)
    target = next(corpus.glob("clotho_captions_development.csv"))
    hashed.clear()
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert cache.inputs_fingerprint([corpus], wh) == first  # same content
    assert hashed == [target]  # re-hashed once because its stat changed
    target.write_text(target.read_text(encoding="latin-1") + "\n", encoding="latin-1")
    assert cache.inputs_fingerprint([corpus], wh) != first


def test_audio_changes_are_seen_by_their_stat(corpus: Path, tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "warehouse")
    first = cache.inputs_fingerprint([corpus], wh)
    audio = corpus / "audio" / "a.flac"
    stat = audio.stat()
    os.utime(audio, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert cache.inputs_fingerprint([corpus], wh) != first
    assert cache.inputs_fingerprint([tmp_path / "nowhere"], wh) != first
