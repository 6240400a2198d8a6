"""`forge score` / `forge filter` / `forge clap-report` through the Prefect flows."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.cli import clap as clap_cli
from pipeline.clap import NOT_CONFIGURED
from pipeline.clap.tiny import save_tiny_hf_clap
from pipeline.storage import Warehouse
from pipeline.storage.warehouse import utc_now


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    clap_cli.register(app)
    return app


def _write_items(wh: Warehouse) -> list[str]:
    clips = [
        r["clip_id"]
        for r in wh.rows("SELECT clip_id FROM clips WHERE source = 'audiocaps' ORDER BY 1 LIMIT 2")
    ]
    rows = [
        {
            "item_id": f"d{i}",
            "task": "reasonaqa",
            "subtask": "detail",
            "split": "train",
            "clip_ids": [clip],
            "answer": "birds chirping",
            "generation_version": "v1",
            "validation_status": "valid",
            "run_id": "gen",
            "created_at": utc_now(),
        }
        for i, clip in enumerate(clips)
    ]
    wh.write_partition("item_records", "task=reasonaqa/split=train/version=v1", rows)
    return clips


def test_score_and_filter_commands(
    app: typer.Typer,
    sample_warehouse: Warehouse,
    prefect_harness: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wh = sample_warehouse
    _write_items(wh)
    runner = CliRunner()
    args = ["--task", "reasonaqa", "--warehouse", str(wh.root)]

    # No checkpoint configured: one line says how to configure one, items are unscored.
    result = runner.invoke(app, ["score", *args])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == f"reasonaqa: not scored: {NOT_CONFIGURED}"
    shown = wh.rows(
        "SELECT DISTINCT filter_status, filter_reason FROM items WHERE task = 'reasonaqa'"
    )
    assert shown == [{"filter_status": "unscored", "filter_reason": NOT_CONFIGURED}]

    # A configured checkpoint that does not exist is an error naming it.
    monkeypatch.setenv("FORGE_CLAP_BACKEND", "hf")
    monkeypatch.setenv("FORGE_CLAP_CHECKPOINT", str(tmp_path / "no-such-clap"))
    result = runner.invoke(app, ["score", *args])
    assert result.exit_code == 2 and "no-such-clap" in result.output

    # A real (tiny, random) checkpoint directory: scores, then filters.
    checkpoint = save_tiny_hf_clap(tmp_path / "tiny-clap")
    monkeypatch.setenv("FORGE_CLAP_CHECKPOINT", str(checkpoint))
    result = runner.invoke(app, ["score", *args, "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "2 items scored, 0 unscored" in result.output
    result = runner.invoke(app, ["filter", *args, "--policy", "absolute", "--threshold", "-1"])
    assert result.exit_code == 0, result.output
    assert "2 kept, 0 dropped, 0 unscored" in result.output
    shown = wh.rows("SELECT filter_status, filter_policy FROM items WHERE task = 'reasonaqa'")
    assert shown == [{"filter_status": "kept", "filter_policy": "absolute"}] * 2

    # Another policy decides; then the first again: decided again (not a stale cache hit).
    result = runner.invoke(app, ["filter", *args, "--policy", "absolute", "--threshold", "1"])
    assert "0 kept, 2 dropped" in result.output
    result = runner.invoke(app, ["filter", *args, "--policy", "absolute", "--threshold", "-1"])
    assert result.exit_code == 0 and "2 kept, 0 dropped" in result.output
    shown = wh.rows("SELECT DISTINCT filter_status FROM items WHERE task = 'reasonaqa'")
    assert shown == [{"filter_status": "kept"}]

    result = runner.invoke(app, ["clap-report", *args, "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "| absolute |" in result.output
    pngs = list((tmp_path / "report").glob("*.png"))
    assert len(pngs) == 1 and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
