"""Core commands: `forge ingest`, `forge sql`, `forge run` (= `build` on the samples)."""

from __future__ import annotations

import csv
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flows.cli import preflight
from flows.cli.common import WarehouseOption, flow_api, user_errors
from pipeline.sources import SOURCE_NAMES
from pipeline.storage import Warehouse


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.command("sql")(sql)
    app.command("run")(run)


@user_errors
def ingest(
    source: Annotated[str, typer.Option(help=f"One of: {', '.join(SOURCE_NAMES)}.")],
    path: Annotated[Path, typer.Option(help="Metadata file or folder in the corpus's own format.")],
    audio_root: Annotated[
        Path | None, typer.Option(help="Folder audio paths are relative to (default: PATH).")
    ] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Ingest one corpus's metadata into `clips` (bad rows go to `rejects`): the build's
    ingest stage for this one corpus (unchanged input files are not read again)."""
    from flows.stages.ingest import SourceInput, ingest_stage
    from pipeline.errors import ForgeError

    if source not in SOURCE_NAMES:
        raise ForgeError(
            f"unknown source {source!r}; --source takes one of {', '.join(SOURCE_NAMES)}"
        )
    path = preflight.existing_path(path, "--path")
    if audio_root is not None:
        audio_root = preflight.existing_path(audio_root, "--audio-root", kind="dir")
    corpus = SourceInput(
        source=source, path=str(path), audio_root=str(audio_root) if audio_root else None
    )
    with flow_api():
        report = ingest_stage(str(Warehouse(warehouse).root), sources=[corpus])
    (summary,) = report.summaries
    typer.echo(
        f"{summary.source}: {summary.clips} clips, {summary.rejects} rejects "
        f"{summary.rejects_by_reason or ''}".rstrip()
    )


@user_errors
def sql(
    query: Annotated[str, typer.Argument(help="A SELECT (or EXPLAIN) statement.")],
    format: Annotated[
        OutputFormat, typer.Option("--format", help="Output format.")
    ] = OutputFormat.table,
    warehouse: WarehouseOption = None,
) -> None:
    """Run read-only SQL against the catalog (views: clips, rejects, items, ...)."""
    columns, rows = Warehouse(warehouse).read_only_sql(query)
    print_rows(columns, rows, format)


def print_rows(columns: list[str], rows: list[tuple[Any, ...]], format: OutputFormat) -> None:
    if format is OutputFormat.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")  # as the DuckDB CLI writes
        writer.writerow(columns)
        writer.writerows(rows)
    elif format is OutputFormat.json:
        typer.echo(
            json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str, indent=1)
        )
    else:
        table = Table(*columns, show_lines=False)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        Console(width=max(120, Console().width)).print(table)


@user_errors
def run(
    train: Annotated[
        bool, typer.Option("--train/--no-train", help="Train AudioBERT at the end.")
    ] = True,
    warehouse: WarehouseOption = None,
) -> None:
    """The main job on the embedded sample data, offline: the `build` flow end to end.

    Offline LLM rules (model `offline-rules`) unless OPENAI_BASE_URL / OPENAI_API_KEY
    name an endpoint (then FORGE_LLM_MODEL is required); CLAP from
    FORGE_CLAP_BACKEND/CHECKPOINT, or items stay `unscored` when none is configured;
    training (on by default) uses the sample config, whose audio embeddings come from an
    explicitly labelled tiny random CLAP.
    """
    preflight.check_llm()
    preflight.check_clap()
    root = str(Warehouse(warehouse).root)
    from flows.build import build_flow
    from flows.cli.orchestration import print_build
    from flows.stages.params import BuildParams

    params = BuildParams(warehouse=root, train={"enabled": train, "samples": True})
    with flow_api():
        summary = build_flow(params)
    print_build(summary)
