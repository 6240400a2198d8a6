"""Cache keys for stage tasks: what the work reads, the code that does it, its settings.

A stage task's key is the sha256 of

* the warehouse root (a fresh warehouse never reuses another's results),
* a fingerprint of the warehouse partitions the task reads (path, size, mtime of each
  Parquet file): new upstream data changes the key, untouched data keeps it,
* for ingest, a fingerprint of the input files (`inputs_fingerprint`): metadata files by
  content, hashed only when their stat changed; audio and shards by stat, never read,
* a fingerprint of the source code that does the work (the library packages and prompt
  templates it uses, not only the thin task function), and
* the task's own settings (task id, prompt versions, model, CLAP checkpoint, policy, ...).

The cached value (the stage's pydantic summary) is stored under
`<warehouse>/prefect_results/`, next to the data it describes; the data itself is in the
warehouse tables the stage wrote. Only tables the task does NOT itself write may be listed
as reads, or a rerun would see its own output and never hit the cache.

A key alone cannot say whether the work it stands for is still done: the outputs may have
been deleted (`make clean` keeps `prefect_results/` but removes `data/`), or the cached
result may record unfinished work (failed LLM calls). Stages therefore read the cached
summary first (`cached_summary`) and run the task with `refresh_cache=True` when its
outputs are gone or it left work unfinished; the fresh result then replaces the record.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from prefect.context import TaskRunContext

from pipeline.config import REPO_ROOT
from pipeline.storage import Warehouse

RESULTS_DIR = "prefect_results"


def results_dir(warehouse: Warehouse) -> Path:
    path = warehouse.root / RESULTS_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def tables_fingerprint(
    warehouse: Warehouse, tables: Iterable[str], partition_contains: str | None = None
) -> str:
    """Fingerprint of the current Parquet files of `tables` (optionally only partitions
    whose name contains `partition_contains`, e.g. 'task=nlar')."""
    digest = hashlib.sha256()
    for table in sorted(tables):
        digest.update(f"<{table}>".encode())
        for partition in warehouse.partitions(table):
            if partition_contains and partition_contains not in partition:
                continue
            stat = warehouse.partition_path(table, partition).stat()
            digest.update(f"{partition}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def files_fingerprint(paths: Iterable[Path | str]) -> str:
    """Content fingerprint of files and folders (recursively); missing paths count too."""
    digest = hashlib.sha256()
    for root in sorted(Path(p) for p in paths):
        digest.update(f"<{root}>".encode())
        if root.is_file():
            digest.update(root.read_bytes())
            continue
        if not root.is_dir():
            digest.update(b"missing")
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


# Files fingerprinted by their stat alone, never read: audio, and webdataset shards (which
# are mostly audio; a changed shard changes its size or mtime).
STAT_ONLY_SUFFIXES = frozenset(
    {".flac", ".wav", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".tar", ".gz", ".tgz"}
)
INPUT_HASHES_FILE = ".input_hashes.json"
_HASH_CHUNK = 1 << 20


def inputs_fingerprint(paths: Iterable[Path | str], warehouse: Warehouse) -> str:
    """Fingerprint of a stage's input files that reads as little as possible.

    Every file is stat-ed (size, mtime, inode). Audio and tar shards are fingerprinted by
    that stat alone and never opened. Metadata files (CSV, JSON, ...) are fingerprinted by
    their content, hashed in 1 MiB chunks, and the hash is remembered per stat in
    `<warehouse>/.input_hashes.json`: an unchanged file is not read again, a touched file
    with the same content is re-hashed once and keeps its fingerprint, an edited one
    changes it. Missing paths count too."""
    memo_path = warehouse.root / INPUT_HASHES_FILE
    try:
        memo: dict[str, str] = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    fresh: dict[str, str] = {}
    digest = hashlib.sha256()
    for root in sorted(Path(p) for p in paths):
        digest.update(f"<{root}>".encode())
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = sorted(
                f for f in root.rglob("*") if f.is_file() and "__pycache__" not in f.parts
            )
        else:
            digest.update(b"missing")
            continue
        for path in files:
            stat = path.stat()
            identity = f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"
            name = str(path.relative_to(root)) if path != root else path.name
            if path.suffix.lower() in STAT_ONLY_SUFFIXES:
                digest.update(f"{name}|stat|{identity};".encode())
                continue
            memo_key = f"{path.resolve()}|{identity}"
            content = memo.get(memo_key) or _content_hash(path)
            fresh[memo_key] = content
            digest.update(f"{name}|sha256|{content};".encode())
    if fresh.items() - memo.items():
        warehouse.root.mkdir(parents=True, exist_ok=True)
        partial = memo_path.with_name(f"{INPUT_HASHES_FILE}.{os.getpid()}.partial")
        partial.write_text(json.dumps({**memo, **fresh}, sort_keys=True), encoding="utf-8")
        os.replace(partial, memo_path)
    return digest.hexdigest()


def _content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@cache
def code_fingerprint(*relative_paths: str) -> str:
    """Fingerprint of library code, given relative to the repository root (or the installed
    package: `pipeline/...` resolves inside it either way). Computed once per process: a
    process runs the code it imported at start, so that is the code the key must name."""
    return files_fingerprint(REPO_ROOT / p for p in relative_paths)


def stage_key(stage: str, warehouse: Warehouse, **parts: Any) -> str:
    """The cache key of one stage task; `parts` are fingerprints and settings (JSON-able)."""
    payload = {"stage": stage, "warehouse": str(warehouse.root), **parts}
    text = json.dumps(payload, sort_keys=True, default=_jsonable)
    return f"{stage}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


def key_from_parameter(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Prefect `cache_key_fn`: stage tasks take their precomputed key as `cache_key`."""
    return str(parameters["cache_key"])


def cached_summary(warehouse: Warehouse, cache_key: str) -> Any | None:
    """The value Prefect cached under `cache_key` for this warehouse, or None when there
    is none or it cannot be read (then the task simply runs)."""
    from prefect.filesystems import LocalFileSystem
    from prefect.results import ResultStore

    if not (warehouse.root / RESULTS_DIR / cache_key).is_file():
        return None
    store = ResultStore(result_storage=LocalFileSystem(basepath=str(results_dir(warehouse))))
    try:
        return store.read(cache_key).result
    except Exception:  # unreadable or from an older code version: recompute
        return None
