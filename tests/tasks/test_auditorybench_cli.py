"""`forge generate / export / report` through the stage flows (flows/stages)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer
from typer.testing import CliRunner

from flows.cli import tasks as task_commands
from pipeline.storage import Warehouse


def forge_app() -> typer.Typer:
    app = typer.Typer()
    task_commands.register(app)
    return app


def test_generate_export_report_commands(
    prefect_harness: None, sample_warehouse: Warehouse, tmp_path: Path
) -> None:
    runner = CliRunner()
    app = forge_app()
    root = str(sample_warehouse.root)
    result = runner.invoke(
        app, ["generate", "--task", "auditorybench-animal", "--warehouse", root, "--split", "test"]
    )
    assert result.exit_code == 0, result.output
    valid_test = sample_warehouse.rows(
        "SELECT count(*) AS n FROM items_current WHERE task = 'auditorybench-animal' "
        "AND validation_status = 'valid'"
    )[0]["n"]
    assert f"{valid_test} valid" in result.output
    assert sample_warehouse.rows("SELECT DISTINCT split FROM item_records") == [{"split": "test"}]

    out = tmp_path / "csv"
    result = runner.invoke(
        app,
        [
            "export",
            "--task",
            "auditorybench-animal",
            "--format",
            "auditorybench-csv",
            "--out",
            str(out),
            "--warehouse",
            root,
        ],
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out / "animal_sound_recognition_test.csv")
    assert list(frame.columns) == ["animal", "description", "sentence"]
    assert len(frame) == valid_test

    report_file = tmp_path / "report.md"
    result = runner.invoke(
        app,
        [
            "report",
            "--task",
            "auditorybench-animal",
            "--out",
            str(report_file),
            "--warehouse",
            root,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Cross-split duplicates among valid items: **0**" in result.output
    assert "### CLAP filter: auditorybench-animal" in result.output  # forge report's CLAP part
    assert report_file.read_text() in result.output + "\n"


def test_user_errors_are_one_line(
    prefect_harness: None, warehouse: Warehouse, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        forge_app(),
        [
            "export",
            "--task",
            "auditorybench-pitch",
            "--format",
            "hf",
            "--out",
            str(tmp_path),
            "--warehouse",
            str(warehouse.root),
        ],
    )
    assert result.exit_code == 2
    assert "no exportable items for task 'auditorybench-pitch'" in result.output
    result = CliRunner().invoke(
        forge_app(),
        [
            "export",
            "--task",
            "auditorybench-pitch",
            "--format",
            "nlar-json",
            "--out",
            str(tmp_path),
            "--warehouse",
            str(warehouse.root),
        ],
    )
    assert result.exit_code == 2
    assert "cannot export format 'nlar-json'" in result.output
