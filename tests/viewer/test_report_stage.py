"""`forge report`'s stage on the generated warehouse: plots beside the Markdown, review
counts in the report, and artifact table cells as text (not JSON)."""

from __future__ import annotations

from pathlib import Path

from flows.stages.artifacts import _cell
from pipeline.storage import Warehouse

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_stage_writes_plots_and_review_counts(
    prefect_harness, viewer_warehouse: Warehouse
) -> None:
    from flows.stages.publish import report_stage

    stage = report_stage(str(viewer_warehouse.root), ["auditorybench-pitch"])
    (output,) = stage.summaries
    folder = viewer_warehouse.root / "reports" / "auditorybench-pitch"
    written = {Path(p).name for p in output.plots}
    assert {"label_balance.png", "pitch_hz.png", "pitch_gap.png"} <= written
    for name in written:
        assert (folder / name).read_bytes()[:8] == PNG_MAGIC
        assert f"]({name})" in output.markdown  # linked beside the Markdown
    assert "## Human review" in output.markdown
    assert (folder / "report.md").read_text(encoding="utf-8") == output.markdown
    assert "## Plots (PNG files)" in stage.markdown and "file://" in stage.markdown


def test_artifact_cells_are_text_not_json() -> None:
    assert _cell({"kept": 3, "dropped": 1}) == "dropped=1, kept=3"
    assert _cell(["a", "b"]) == "a, b"
    assert _cell(7) == 7
