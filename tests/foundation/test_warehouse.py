"""Warehouse: atomic partitions, schemas from the DDL, read-only SQL, idempotent ingest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from pipeline.errors import ReadOnlyQueryError, SchemaError
from pipeline.ingest import ingest_source
from pipeline.samples import SAMPLE_PATHS
from pipeline.sources.records import ClipRecord, Rejection
from pipeline.storage import Warehouse
from pipeline.storage.schema import all_tables


def reject_row(reason: str, run_id: str = "r") -> dict:
    return Rejection(reason=reason).to_row(run_id, datetime.now(UTC))


@pytest.mark.parametrize(
    ("model", "table", "lineage"),
    [
        (ClipRecord, "clips", {"run_id", "ingested_at"}),
        (Rejection, "rejects", {"run_id", "rejected_at"}),
    ],
)
def test_record_models_match_their_ddl(model: type, table: str, lineage: set[str]) -> None:
    assert set(model.model_fields) | lineage == set(all_tables()[table].columns)


def test_every_table_carries_run_lineage() -> None:
    for name, spec in all_tables().items():
        assert "run_id" in spec.columns, name


def test_partition_replace_is_idempotent(warehouse: Warehouse) -> None:
    warehouse.write_partition("rejects", "stage=x", [reject_row("a"), reject_row("b")])
    warehouse.write_partition("rejects", "stage=x", [reject_row("c")])
    assert warehouse.rows("SELECT reason FROM rejects") == [{"reason": "c"}]
    assert warehouse.partitions("rejects") == ["stage=x"]


def test_unknown_columns_and_bad_partition_names_are_refused(warehouse: Warehouse) -> None:
    with pytest.raises(SchemaError, match="unknown columns"):
        warehouse.write_partition("rejects", "p", [{**reject_row("a"), "api_key": "x"}])
    with pytest.raises(Exception, match="invalid partition name"):
        warehouse.write_partition("rejects", "../escape", [reject_row("a")])


def test_failed_write_leaves_the_old_partition(warehouse: Warehouse) -> None:
    warehouse.write_partition("rejects", "p", [reject_row("old")])
    with pytest.raises(RuntimeError), warehouse.writer("rejects", "p") as writer:
        writer.write([reject_row("new")])
        raise RuntimeError("crash mid-write")
    assert warehouse.rows("SELECT reason FROM rejects") == [{"reason": "old"}]
    leftovers = [
        p.name for p in (warehouse.data_dir / "rejects").iterdir() if p.name.startswith(".")
    ]
    assert leftovers == []


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime
    from pipeline.sources.records import Rejection
    from pipeline.storage import Warehouse

    wh = Warehouse(sys.argv[1])
    row = Rejection(reason="new").to_row("killed", datetime.now(UTC))
    with wh.writer("rejects", "p") as writer:
        for _ in range(1000):
            writer.write([row] * 200)
            print("batch", flush=True)
            time.sleep(0.05)
    """
)


def test_killed_write_leaves_old_data_readable(warehouse: Warehouse) -> None:
    warehouse.write_partition("rejects", "p", [reject_row("old")])
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(warehouse.root)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for _ in range(3):  # let it write a few batches into its temporary file
        assert proc.stdout.readline().strip() == "batch"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    partials = list((warehouse.data_dir / "rejects").glob(".*.partial"))
    assert partials, "the killed writer should have left its temporary file behind"
    assert warehouse.rows("SELECT reason, count(*) AS n FROM rejects GROUP BY 1") == [
        {"reason": "old", "n": 1}
    ]
    # The next write of that partition tidies the dead writer's temporary file.
    warehouse.write_partition("rejects", "p", [reject_row("next")])
    assert not list((warehouse.data_dir / "rejects").glob(".*.partial"))


def test_ingest_rerun_replaces_its_own_partition(warehouse: Warehouse) -> None:
    first = ingest_source(warehouse, "clotho", SAMPLE_PATHS["clotho"], "run-1")
    ingest_source(warehouse, "audiocaps", SAMPLE_PATHS["audiocaps"], "run-1")
    second = ingest_source(warehouse, "clotho", SAMPLE_PATHS["clotho"], "run-2")
    assert (first.clips, first.rejects) == (second.clips, second.rejects) == (14, 2)
    rows = warehouse.rows(
        "SELECT source, run_id, count(*) AS n FROM clips GROUP BY ALL ORDER BY source"
    )
    assert rows == [
        {"source": "audiocaps", "run_id": "run-1", "n": 21},
        {"source": "clotho", "run_id": "run-2", "n": 14},
    ]
    assert warehouse.rows("SELECT count(*) AS n FROM rejects") == [{"n": 2}]


def test_clip_lineage_names_the_input(sample_warehouse: Warehouse) -> None:
    (row,) = sample_warehouse.rows(
        "SELECT source_file, source_row, run_id, ingested_at FROM clips WHERE clip_id = ?",
        ["audiocaps:1ZlcTANOyWE_30"],
    )
    assert row["source_file"].endswith("audiocaps/test.csv")
    assert row["source_row"] == 1 and row["run_id"] == "test-ingest"
    assert row["ingested_at"] is not None


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO clips (clip_id) VALUES ('x')",
        "COPY (SELECT 1) TO 'out.csv'",
        "CREATE TABLE t AS SELECT 1",
        "ATTACH 'other.duckdb'",
        "SELECT 1; DROP VIEW clips",
        "SET threads = 1",
    ],
)
def test_read_only_sql_refuses_writes(sample_warehouse: Warehouse, statement: str) -> None:
    with pytest.raises(ReadOnlyQueryError, match="read-only"):
        sample_warehouse.read_only_sql(statement)


def test_read_only_sql_answers_queries(sample_warehouse: Warehouse) -> None:
    columns, rows = sample_warehouse.read_only_sql(
        "SELECT source, count(*) AS n FROM clips GROUP BY 1 ORDER BY 1"
    )
    assert columns == ["source", "n"]
    assert rows == [("audiocaps", 21), ("clotho", 14), ("clotho-aqa", 13), ("laion630k", 43)]


def test_catalog_opens_with_plain_duckdb(sample_warehouse: Warehouse) -> None:
    sample_warehouse.read_only_sql("SELECT 1")
    con = duckdb.connect(str(sample_warehouse.catalog_path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM clips").fetchone() == (91,)
        assert con.execute("SELECT count(*) FROM rejects_summary").fetchone() == (1,)
    finally:
        con.close()


def test_catalog_follows_a_moved_warehouse(sample_warehouse: Warehouse, tmp_path: Path) -> None:
    sample_warehouse.read_only_sql("SELECT 1")
    moved = tmp_path / "moved"
    sample_warehouse.root.rename(moved)
    time.sleep(0.01)
    assert Warehouse(moved).read_only_sql("SELECT count(*) FROM clips")[1] == [(91,)]
