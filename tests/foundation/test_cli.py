"""`forge ingest` and `forge sql` through the real CLI (Typer runner, Prefect test harness)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.samples import SAMPLE_PATHS
from pipeline.storage import Warehouse

runner = CliRunner()


def forge(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_then_query_in_every_format(tmp_path: Path) -> None:
    wh = str(tmp_path / "wh")
    code, out, _ = forge(
        "ingest", "--source", "clotho", "--path", str(SAMPLE_PATHS["clotho"]), "--warehouse", wh
    )
    assert code == 0, out
    assert "clotho: 14 clips, 2 rejects" in out

    query = "SELECT split, count(*) AS n FROM clips GROUP BY 1 ORDER BY 1"
    code, out, _ = forge("sql", query, "--format", "csv", "--warehouse", wh)
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["split", "n"],
        ["dev", "3"],
        ["test", "3"],
        ["train", "8"],
    ]

    code, out, _ = forge("sql", query, "--format", "json", "--warehouse", wh)
    assert json.loads(out) == [
        {"split": "dev", "n": 3},
        {"split": "test", "n": 3},
        {"split": "train", "n": 8},
    ]

    code, out, _ = forge("sql", "SELECT reason, n FROM rejects_summary", "--warehouse", wh)
    assert code == 0 and "empty_caption" in out and "2" in out


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_of_a_broken_file_is_one_clear_line(tmp_path: Path) -> None:
    broken = tmp_path / "audiocaps"
    broken.mkdir()
    (broken / "train.csv").write_text("youtube_id,caption\nabc,dog\n")
    code, _, err = forge(
        "ingest",
        "--source",
        "audiocaps",
        "--path",
        str(broken),
        "--warehouse",
        str(tmp_path / "wh"),
    )
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert str(broken / "train.csv") in lines[0] and "audiocap_id" in lines[0]


def test_sql_refuses_writes_with_exit_code_2(tmp_path: Path) -> None:
    Warehouse(tmp_path / "wh").ensure_catalog()
    code, _, err = forge("sql", "DELETE FROM clips", "--warehouse", str(tmp_path / "wh"))
    assert code == 2 and "read-only" in err
