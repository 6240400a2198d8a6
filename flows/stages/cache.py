"""Cache keys for stage tasks: what the work reads, the code that does it, its settings.

A stage task's key is the sha256 of

* the warehouse root (a fresh warehouse never reuses another's results),
* a fingerprint of the warehouse partitions the task reads (path, size, mtime of each
  Parquet file): new upstream data changes the key, untouched data keeps it,
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
