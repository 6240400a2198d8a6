"""The memory-bounded DuckDB database exports and reports read through
(pipeline.tasks.common.streaming): its settings, its isolation from the shared
connection, its spill files, and the scratch files of an export pass."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipeline.errors import ForgeError
from pipeline.storage import Warehouse
from pipeline.tasks.common import streaming
from pipeline.tasks.common.export import ExportRows

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """500 ReasonAQA-shaped items, as bench/scale.py writes them."""
    root = tmp_path_factory.mktemp("scan") / "warehouse"
    # By path: `scale` alone would be this test package (tests/scale).
    spec = importlib.util.spec_from_file_location("bench_scale", REPO / "bench" / "scale.py")
    assert spec and spec.loader
    bench_scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_scale)
    bench_scale.synthetic_items(root, 500)
    return Warehouse(root)


def settings(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    names = ("memory_limit", "threads", "preserve_insertion_order", "temp_directory")
    columns = ", ".join(f"current_setting('{name}')" for name in names)
    (row,) = con.sql(f"SELECT {columns}").fetchall()
    return dict(zip(names, map(str, row), strict=True))


def test_scan_database_is_bounded_and_separate_from_the_shared_one(
    bench_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(streaming.MEMORY_LIMIT_ENV, raising=False)
    with streaming.scan_connection(bench_warehouse) as con:
        scan = settings(con)
    with bench_warehouse.connect() as con:
        shared = settings(con)
    assert scan["memory_limit"] == "244.1 MiB"  # DuckDB's rendering of 256MB
    assert scan["threads"] == "1"
    assert scan["preserve_insertion_order"] == "False"
    assert Path(scan["temp_directory"]) == streaming.spill_dir(bench_warehouse)
    assert streaming.spill_dir(bench_warehouse).parent == bench_warehouse.root / ".spill"
    # The shared connection keeps DuckDB's defaults: nothing set for exports leaks into it.
    assert shared["memory_limit"] != scan["memory_limit"]
    assert shared["preserve_insertion_order"] == "True"

    monkeypatch.setenv(streaming.MEMORY_LIMIT_ENV, "96MB")
    with streaming.scan_connection(bench_warehouse) as con:
        assert settings(con)["memory_limit"] == "91.5 MiB"
    monkeypatch.setenv(streaming.MEMORY_LIMIT_ENV, "a lot")
    with pytest.raises(ForgeError, match="FORGE_SCAN_MEMORY_LIMIT='a lot' is not a memory size"):
        streaming.scan_connection(bench_warehouse)


def test_spill_files_of_dead_processes_are_removed(bench_warehouse: Warehouse) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(finished.stdout)
    base = bench_warehouse.root / streaming.SPILL_FOLDER
    base.mkdir(parents=True, exist_ok=True)
    (base / str(dead)).mkdir()
    (base / str(dead) / "duckdb_temp_storage-0.tmp").write_bytes(b"x")
    (base / f"{dead}-abc.duckdb").write_bytes(b"x")
    (base / f"{dead}-abc.duckdb.wal").write_bytes(b"x")
    alive = base / f"{1}-abc.duckdb"  # pid 1 (init) outlives every test
    alive.write_bytes(b"x")
    with streaming.scan_connection(bench_warehouse):
        pass
    left = sorted(p.name for p in base.iterdir())
    assert left == [alive.name], left
    alive.unlink()


def test_an_export_pass_leaves_no_scratch_files_even_when_stopped_early(
    bench_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(streaming.MEMORY_LIMIT_ENV, raising=False)
    base = bench_warehouse.root / streaming.SPILL_FOLDER
    rows = ExportRows(bench_warehouse, "reasonaqa")
    passes = iter(rows)
    first = next(passes)
    assert list(base.glob("*.duckdb")), "an export pass writes its scratch database here"
    passes.close()
    assert not list(base.glob("*.duckdb*"))
    # A full pass afterwards gives every valid item once, by split then item_id.
    valid = bench_warehouse.rows(
        "SELECT item_id, split FROM items_current WHERE validation_status = 'valid'"
    )
    expected = sorted(valid, key=lambda r: (streaming.split_rank(r["split"]), r["item_id"]))
    items = [row["item_id"] for row in rows]
    assert items == [r["item_id"] for r in expected]
    assert items[0] == first["item_id"]
    assert len(items) == 490  # bench/scale.py rejects 1 item in 50
    assert not list(base.glob("*.duckdb*"))
