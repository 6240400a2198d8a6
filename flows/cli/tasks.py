"""Dataset task commands: `forge generate`, `forge export`, `forge report`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flows.cli import llm as llm_options
from flows.cli import preflight
from flows.cli.common import TaskOption, WarehouseOption, flow_api, user_errors
from pipeline.errors import ForgeError
from pipeline.storage import Warehouse

SPLITS = ("train", "dev", "test", "wiki")


class ExportFormat(StrEnum):
    auditorybench_csv = "auditorybench-csv"
    mellow_json = "mellow-json"
    nlar_json = "nlar-json"
    hf = "hf"
    jsonl = "jsonl"


class Backend(StrEnum):
    offline = "offline"
    openai = "openai"


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("export")(export)
    app.command("report")(report)


@user_errors
def generate(
    task: TaskOption,
    backend: Annotated[
        Backend | None,
        typer.Option(
            help="LLM backend (default: openai if OPENAI_BASE_URL/KEY is set, else offline)."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model name (default: $FORGE_LLM_MODEL).")
    ] = None,
    prompts: Annotated[
        Path | None, typer.Option("--prompts", help="Folder of templates overriding the defaults.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for splits, pairing and LLM sampling.")] = 0,
    split: Annotated[
        list[str] | None, typer.Option("--split", help="Only this split (repeatable).")
    ] = None,
    warehouse: WarehouseOption = None,
    mode: llm_options.ModeOption = "live",
    dry_run: llm_options.DryRunOption = False,
    max_cost: llm_options.MaxCostOption = None,
    max_tokens: llm_options.MaxTokensOption = None,
    prices: llm_options.PricesOption = None,
) -> None:
    """Generate one task's items (the build's generate stage) and print the counts."""
    config = preflight.check_llm(
        backend=backend.value if backend else None,
        model=model,
        **llm_options.run_overrides(mode, max_cost, max_tokens, prices),
    )
    if prompts is not None:
        prompts = preflight.existing_path(prompts, "--prompts", kind="dir")
    unknown_splits = sorted(set(split or []) - set(SPLITS))
    if unknown_splits:
        raise ForgeError(f"unknown split {unknown_splits[0]!r}; --split takes one of {SPLITS}")
    root = str(Warehouse(warehouse).root)
    if dry_run:
        llm_options.print_dry_run(root, task.value, config, prompts, seed, split or None)
        return
    from flows.stages.generate import GenerateSettings, generate_stage

    settings = GenerateSettings(
        seed=seed, prompts_dir=str(prompts) if prompts else None, splits=split or None
    )
    with flow_api():
        report = generate_stage(root, None, [task.value], config, settings)
    (summary,) = report.summaries
    typer.echo(
        f"{summary.task} (version {summary.generation_version}): {summary.valid} valid, "
        f"{summary.rejected} rejected"
    )
    for name, count in sorted(summary.valid_by_split.items()):
        typer.echo(f"  {name}: {count} valid, {summary.rejected_by_split.get(name, 0)} rejected")
    if summary.rejected_by_reason:
        reasons = ", ".join(f"{k}={v}" for k, v in summary.rejected_by_reason.items())
        typer.echo(f"  rejected by reason: {reasons}")


@user_errors
def export(
    task: TaskOption,
    format: Annotated[ExportFormat, typer.Option("--format", help="Output format.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    include_dropped: Annotated[
        bool, typer.Option(help="Also export items the CLAP filter dropped.")
    ] = False,
    extra_columns: Annotated[
        bool, typer.Option(help="auditorybench-csv: add our columns after the published ones.")
    ] = False,
    warehouse: WarehouseOption = None,
) -> None:
    """Export a task's current valid items (the build's export stage) into OUT."""
    root = str(Warehouse(warehouse).root)
    from flows.stages.publish import ExportSettings, export_stage

    settings = ExportSettings(
        formats=[format.value],
        out_dir=str(out.resolve()),
        flat=True,
        include_dropped=include_dropped,
        extra_columns=extra_columns,
    )
    with flow_api():
        report = export_stage(root, [task.value], settings)
    for exported in report.summaries:
        for path in exported.paths:
            typer.echo(path)


@user_errors
def report(
    task: TaskOption,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the Markdown to this file.")
    ] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Print a task's quality report (counts, balance, duplicates, rejects, pitch gaps, and
    the CLAP part: kept/dropped per policy, score histograms as PNG beside --out, or under
    <warehouse>/reports/<task>/)."""
    root = str(Warehouse(warehouse).root)
    from flows.stages.publish import report_stage

    figures_dir = str(out.resolve().parent) if out else None
    with flow_api():
        report = report_stage(root, [task.value], figures_dir)
    (output,) = report.summaries
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(output.markdown, encoding="utf-8")
    typer.echo(output.markdown)
