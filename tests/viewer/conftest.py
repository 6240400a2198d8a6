"""One generated warehouse for the viewer tests: the samples ingested and both
AuditoryBench tasks generated offline, plus three extra clips written as real Parquet:
one inside a webdataset tar shard, one whose path climbs out of its audio root with `..`,
and one that is a symlink pointing outside the audio root."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.ingest import ingest_source
from pipeline.llm import LLMConfig
from pipeline.samples import SAMPLE_PATHS, sample_audio_root
from pipeline.storage import Warehouse
from pipeline.tasks import generate_task

TASKS = ("auditorybench-animal", "auditorybench-pitch")
TAR_CLIP = "viewer-test:shard_clip"
ESCAPING_CLIP = "viewer-test:dotdot"
SYMLINK_CLIP = "viewer-test:symlink"


def wav_bytes(seconds: float = 0.5, rate: int = 16000, hz: float = 330.0) -> bytes:
    buffer = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


def _extra_clips(root: Path) -> list[dict]:
    audio_root = root / "extra_audio"
    audio_root.mkdir()
    member = wav_bytes()
    with tarfile.open(audio_root / "shard-000.tar", "w") as shard:
        shard.addfile(tarfile.TarInfo("a.json"), io.BytesIO(b"{}"))
        info = tarfile.TarInfo("clip.wav")
        info.size = len(member)
        shard.addfile(info, io.BytesIO(member))
    outside = root / "outside_secret.wav"
    outside.write_bytes(wav_bytes())
    (audio_root / "link.wav").symlink_to(outside)
    now = datetime.now(UTC)
    base = {
        "source": "viewer-test",
        "audio_root": str(audio_root),
        "source_file": "made-by-test",
        "run_id": "viewer-test",
        "ingested_at": now,
    }
    return [
        {**base, "clip_id": TAR_CLIP, "audio_path": "shard-000.tar#clip.wav"},
        {**base, "clip_id": ESCAPING_CLIP, "audio_path": "../outside_secret.wav"},
        {**base, "clip_id": SYMLINK_CLIP, "audio_path": "link.wav"},
    ]


@pytest.fixture(scope="package")
def viewer_warehouse(tmp_path_factory: pytest.TempPathFactory, sample_audio_dir: Path) -> Warehouse:
    root = tmp_path_factory.mktemp("viewer")
    wh = Warehouse(root / "warehouse")
    for source, path in SAMPLE_PATHS.items():
        ingest_source(wh, source, path, "ingest", sample_audio_root(sample_audio_dir, source))
    wh.write_partition("clips", "source=viewer-test", _extra_clips(root))
    for task in TASKS:
        generate_task(wh, task, LLMConfig.from_env(), "run-1")
    return wh


@pytest.fixture(scope="package")
def tar_member_bytes() -> bytes:
    return wav_bytes()


@pytest.fixture(scope="package")
def made_clips() -> dict[str, str]:
    """Ids of the extra clips: tar member, `..` escape, symlink escape."""
    return {"tar": TAR_CLIP, "dotdot": ESCAPING_CLIP, "symlink": SYMLINK_CLIP}
