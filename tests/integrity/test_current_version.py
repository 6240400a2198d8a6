"""A version becomes current for all splits of its task at once, and only when complete.

Disk full is real here: the writing process runs under a file-size limit (RLIMIT_FSIZE,
SIGXFSZ ignored), so the OS refuses the write with EFBIG exactly as it would on a full
disk; nothing is patched.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.llm import LLMConfig
from pipeline.storage import Warehouse
from pipeline.tasks.common.generate import generate_task

REPO = Path(__file__).resolve().parents[2]
TASK = "auditorybench-pitch"
# Larger than every partition of the sample run except the pitch task's wiki split (~90 kB).
FILE_SIZE_LIMIT = 40_000

CLIPS_IN_SEVERAL_SPLITS = """
SELECT clip_id, list(DISTINCT split ORDER BY split) AS splits
FROM (SELECT unnest(clip_ids) AS clip_id, split FROM items_current WHERE task = ?)
GROUP BY clip_id HAVING count(DISTINCT split) > 1
"""

CHILD = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
from pipeline.errors import ForgeError
from pipeline.llm import LLMConfig
from pipeline.storage import Warehouse
from pipeline.tasks.common.generate import generate_task
try:
    generate_task(Warehouse({warehouse!r}), {task!r}, LLMConfig(backend="offline"), "full-disk",
                  seed=7)
except ForgeError as exc:
    print(f"error: {{exc}}", file=sys.stderr)
    sys.exit(1)
"""


def current_versions(wh: Warehouse) -> dict[str, str]:
    rows = wh.rows(
        "SELECT DISTINCT split, generation_version FROM items_current WHERE task = ?", [TASK]
    )
    return {r["split"]: r["generation_version"] for r in rows}


def test_new_seed_never_puts_a_clip_in_two_splits(sample_warehouse: Warehouse) -> None:
    offline = LLMConfig(backend="offline")
    first = generate_task(sample_warehouse, TASK, offline, "seed-0", seed=0)
    second = generate_task(sample_warehouse, TASK, offline, "seed-7", seed=7)
    assert first.generation_version != second.generation_version
    # The seeds split the clips differently (else the test proves nothing) ...
    assert set(first.valid_by_split) != set(second.valid_by_split) or any(
        first.valid_by_split[s] != second.valid_by_split[s] for s in first.valid_by_split
    )
    # ... yet items_current holds the new version only, for every split.
    assert set(current_versions(sample_warehouse).values()) == {second.generation_version}
    assert sample_warehouse.rows(CLIPS_IN_SEVERAL_SPLITS, [TASK]) == []
    # The old version is still there, just not current.
    old = sample_warehouse.rows(
        "SELECT count(*) AS n FROM items WHERE generation_version = ? AND NOT is_current",
        [first.generation_version],
    )
    assert old[0]["n"] == first.items


def test_disk_full_mid_generation_leaves_the_previous_version_current(
    sample_warehouse: Warehouse,
) -> None:
    before = generate_task(sample_warehouse, TASK, LLMConfig(backend="offline"), "seed-0")
    current_before = current_versions(sample_warehouse)
    code = CHILD.format(limit=FILE_SIZE_LIMIT, warehouse=str(sample_warehouse.root), task=TASK)
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    lines = child.stderr.strip().splitlines()
    assert child.returncode == 1, child.stderr
    assert len(lines) == 1 and lines[0].startswith("error: cannot write "), child.stderr
    assert "File too large" in lines[0]
    written_path = lines[0].removeprefix("error: cannot write ").split(": ")[0]
    assert Path(written_path).is_relative_to(sample_warehouse.data_dir)

    # The limit hits the staged items (every split in one file, so the largest file of the
    # run): no split of the new version is written, none is current, nothing is left over.
    assert written_path.split("/data/", 1)[1].startswith(".staging/"), written_path
    new_versions = {
        p.rsplit("version=", 1)[1]
        for p in sample_warehouse.partitions("item_records")
        if p.startswith(f"task={TASK}/")
    } - {before.generation_version}
    assert not new_versions
    assert current_versions(sample_warehouse) == current_before
    assert not list((sample_warehouse.data_dir / ".staging").glob("*/*"))
    assert sample_warehouse.rows(CLIPS_IN_SEVERAL_SPLITS, [TASK]) == []
    leftovers = list(sample_warehouse.data_dir.rglob("*.partial"))
    assert leftovers == [], leftovers


KILLED_WRITER = """
import os
from datetime import UTC, datetime
from pipeline.storage import Warehouse
wh = Warehouse({warehouse!r})
with wh.writer("rejects", "stage=test/source=killed") as writer:
    writer.write([{{"stage": "test", "reason": "x", "action": "row_rejected", "run_id": "r",
                   "rejected_at": datetime.now(UTC)}}])
    os._exit(9)  # dies mid-write: no abort, no cleanup
"""


def test_partial_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    code = KILLED_WRITER.format(warehouse=str(wh.root))
    child = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=120)
    assert child.returncode == 9
    folder = wh.data_dir / "rejects" / "stage=test"
    assert len(list(folder.glob("*.partial"))) == 1
    assert not (folder / "source=killed.parquet").exists()
    wh.write_partition("rejects", "stage=test/source=killed", [])
    assert list(folder.glob("*.partial")) == []


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """This process's writes beyond `limit` bytes fail with EFBIG (as on a full disk)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@pytest.mark.usefixtures("prefect_harness")
def test_build_on_a_full_disk_is_recorded_failed_with_the_path(
    sample_warehouse: Warehouse,
) -> None:
    from flows.build import build_flow
    from flows.stages.params import BuildParams

    params = BuildParams(warehouse=str(sample_warehouse.root), tasks=[TASK], stages=["generate"])
    Warehouse(sample_warehouse.root).ensure_catalog()  # the catalog is not under test here
    with file_size_limit(FILE_SIZE_LIMIT), pytest.raises(Exception) as failure:
        build_flow(params)
    message = str(failure.value)
    assert "cannot write " in message and "File too large" in message
    runs = sample_warehouse.rows("SELECT status, error FROM runs WHERE flow_name = 'build'")
    assert [r["status"] for r in runs] == ["failed"]
    assert "cannot write " in runs[0]["error"]
    assert list(sample_warehouse.data_dir.rglob("*.partial")) == []
    assert current_versions(sample_warehouse) == {}
