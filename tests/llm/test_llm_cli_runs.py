"""`forge generate --dry-run / --mode / --max-*`, `forge llm export-batch --task`, batches."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from pipeline.storage import Warehouse

runner = CliRunner()


def parquet_files(warehouse: Warehouse) -> list[str]:
    return sorted(str(p) for p in warehouse.root.rglob("*.parquet"))


def test_dry_run_prints_the_estimate_and_changes_nothing(
    sample_warehouse: Warehouse, tmp_path: Path
) -> None:
    before = parquet_files(sample_warehouse)
    where = ["--warehouse", str(sample_warehouse.root)]
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": {"m": {"input_per_1m": 2, "output_per_1m": 8}}}))
    # An endpoint that does not exist: a dry run never connects.
    result = runner.invoke(
        app,
        ["generate", "--task", "auditorybench-animal", "--backend", "openai", "--model", "m",
         "--dry-run", "--prices", str(prices), *where],
        env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    last = lines[-1]
    assert last.startswith("dry-run: ") and last.endswith(" USD")
    requests = int(last.split()[1])
    assert requests > 0 and ", 0 cached, ~" in last
    assert f"auditorybench-animal: {requests} calls to send (live mode, model m)" in lines[0]
    assert parquet_files(sample_warehouse) == before

    out = tmp_path / "batch.jsonl"
    exported = runner.invoke(
        app,
        ["llm", "export-batch", "--task", "auditorybench-animal", "--model", "m",
         "--out", str(out), *where],
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert len(out.read_text().splitlines()) == requests
    listed = runner.invoke(app, ["llm", "batches", *where])
    assert listed.exit_code == 0 and "no batches recorded" in listed.output


def test_bad_llm_run_options_are_one_line_errors(warehouse: Warehouse, tmp_path: Path) -> None:
    where = ["--warehouse", str(warehouse.root)]
    bad_mode = runner.invoke(
        app, ["generate", "--task", "nlar", "--mode", "later", "--dry-run", *where]
    )
    assert bad_mode.exit_code == 2
    assert "--mode 'later': choose one of live, batch" in bad_mode.output
    assert "Traceback" not in bad_mode.output
    no_price = runner.invoke(
        app,
        ["generate", "--task", "nlar", "--backend", "openai", "--model", "m", "--max-cost",
         "1", "--prices", str(tmp_path / "none.yaml"), *where],
        env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
    )  # fmt: skip
    assert no_price.exit_code == 2 and "none.yaml: no such file" in no_price.output
    both = runner.invoke(app, ["llm", "export-batch", "--out", str(tmp_path / "x"), *where])
    assert both.exit_code == 2 and "exactly one of --requests FILE or --task TASK" in both.output
