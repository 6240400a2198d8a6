"""Output details: CSV line endings, one-line SQL errors, progress events, and a catalog
that the DuckDB CLI from PyPI opens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from pipeline import progress
from pipeline.ingest import ingest_source
from pipeline.samples import SAMPLE_PATHS
from pipeline.storage import Warehouse

runner = CliRunner()


def test_sql_csv_uses_newline_line_endings(tmp_path: Path) -> None:
    Warehouse(tmp_path / "wh").ensure_catalog()
    result = runner.invoke(
        app,
        ["sql", "select 1 as a, 'x' as b", "--format", "csv", "--warehouse", str(tmp_path / "wh")],
    )
    assert result.exit_code == 0
    assert result.stdout == "a,b\n1,x\n"


def test_sql_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    wh = str(tmp_path / "wh")
    Warehouse(wh).ensure_catalog()
    for query in ("selec 1", "select nope from clips", "select * from clipz"):
        result = runner.invoke(app, ["sql", query, "--warehouse", wh])
        assert result.exit_code == 2, query
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        assert "Traceback" not in result.stderr


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def started(self, step_id: int, name: str, total: int | None, unit: str) -> None:
        self.events.append(("started", name, total, unit))

    def advanced(self, step_id: int, done: int, counters: dict[str, int]) -> None:
        self.events.append(("advanced", done, counters))

    def finished(self, step_id: int) -> None:
        self.events.append(("finished",))


def test_ingest_reports_progress_per_row(tmp_path: Path) -> None:
    recorder = Recorder()
    with progress.listening(recorder):
        summary = ingest_source(
            Warehouse(tmp_path / "wh"), "clotho", SAMPLE_PATHS["clotho"], "run-1"
        )
    assert recorder.events[0] == ("started", "ingest clotho", None, "row")
    assert recorder.events[-1] == ("finished",)
    *_, last = [e for e in recorder.events if e[0] == "advanced"]
    assert last[1] == summary.clips + summary.rejects
    assert last[2].get("rejected", 0) == summary.rejects
    # nobody listening: no events, nothing else changes
    progress.listen(None)
    with progress.step("quiet", total=3) as advance:
        advance(3)


def test_catalog_opens_in_the_duckdb_cli_from_pypi(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    ingest_source(wh, "clotho", SAMPLE_PATHS["clotho"], "run-1")
    wh.ensure_catalog()
    cli = Path(sys.executable).with_name("duckdb")
    assert cli.exists(), "the duckdb-cli package (dev extras) provides the `duckdb` command"
    result = subprocess.run(
        [str(cli), "-readonly", "-csv", str(wh.catalog_path), "select count(*) from clips"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "14"
