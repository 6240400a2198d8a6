"""Stage artifacts: a table of counts and a Markdown summary per stage, linked by `build`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.settings import PREFECT_UI_URL
from pydantic import BaseModel, ConfigDict, Field


class StageReport(BaseModel):
    """What one stage did, as the build flow records and links it."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    rows: list[dict[str, Any]] = Field(default_factory=list)  # one counts row per unit
    markdown: str = ""
    artifact_ids: dict[str, str] = Field(default_factory=dict)  # artifact key -> id
    counts: dict[str, Any] = Field(default_factory=dict)  # totals for the runs table
    # The library's own summary of each unit (IngestSummary, GenerateSummary, ScoreSummary,
    # ...), in unit order: what the single-stage CLI commands print.
    summaries: list[Any] = Field(default_factory=list)


def flatten(value: Any) -> Any:
    """A table cell: scalars as they are, mappings as 'k=v, ...', lists joined."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={flatten(v)}" for k, v in sorted(value.items()))
    if isinstance(value, list | tuple):
        return ", ".join(str(flatten(v)) for v in value)
    if isinstance(value, BaseModel):
        return flatten(value.model_dump(mode="json"))
    return value


def summary_row(summary: BaseModel | Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A pydantic stage summary as one artifact table row (nested values flattened)."""
    data = summary.model_dump(mode="json") if isinstance(summary, BaseModel) else dict(summary)
    return {**extra, **{k: flatten(v) for k, v in data.items() if k not in {"run_id"}}}


def markdown_table(rows: Iterable[Mapping[str, Any]]) -> str:
    rows = list(rows)
    if not rows:
        return "_nothing to report_\n"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [str(row.get(c, "")).replace("|", "\\|").replace("\n", " ") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def artifact_key(stage: str, kind: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    text = f"{stage}-{kind}".lower()
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-")


def publish(report: StageReport, description: str) -> StageReport:
    """Create the stage's counts table and Markdown summary artifacts (in the current run)."""
    table_key = artifact_key(report.stage, "counts")
    summary_key = artifact_key(report.stage, "summary")
    rows = [{k: _cell(v) for k, v in row.items()} for row in report.rows]
    table_id = create_table_artifact(key=table_key, table=rows, description=description)
    totals = [{"count": key, "value": _cell(value)} for key, value in report.counts.items()]
    summary = (
        f"# {report.stage}\n\n{description}\n\n{markdown_table(rows)}\n"
        f"## Totals\n\n{markdown_table(totals)}\n{report.markdown}"
    )
    summary_id = create_markdown_artifact(
        key=summary_key, markdown=summary, description=description
    )
    report.artifact_ids = {table_key: _id(table_id), summary_key: _id(summary_id)}
    return report


def _cell(value: Any) -> Any:
    """A table cell people read: nested values as 'k=v, ...' text, never raw JSON."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    flat = flatten(value)
    return flat if isinstance(flat, str | int | float | bool) else str(flat)


def _id(value: UUID | Any) -> str:
    return str(value)


def artifact_link(key: str, artifact_id: str) -> str:
    """A Markdown link to an artifact in the Prefect UI (plain key when no UI URL is set)."""
    ui = PREFECT_UI_URL.value()
    if ui:
        return f"[{key}]({ui.rstrip('/')}/artifacts/artifact/{artifact_id})"
    return f"`{key}`"
