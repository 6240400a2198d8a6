"""CLAP commands: `forge score`, `forge filter`, `forge clap-report`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flows.cli import preflight
from flows.cli.common import TaskOption, WarehouseOption, flow_api, user_errors
from pipeline.storage import Warehouse


class Backend(StrEnum):
    laion = "laion"
    hf = "hf"


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Policy(StrEnum):
    task_rule = "task-rule"
    absolute = "absolute"
    relative = "relative"
    percentile = "percentile"
    topk = "topk"


def register(app: typer.Typer) -> None:
    app.command("score")(score)
    app.command("filter")(filter_items)
    app.command("clap-report")(clap_report)


@user_errors
def score(
    task: TaskOption,
    backend: Annotated[
        Backend | None, typer.Option(help="CLAP backend (default: $FORGE_CLAP_BACKEND).")
    ] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            help="laion: .pt file; hf: directory or hub id (default: $FORGE_CLAP_CHECKPOINT)."
        ),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Crops per forward pass.")] = None,
    device: Annotated[Device | None, typer.Option(help="auto picks CUDA when present.")] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Score a task's current items with CLAP (raw scores into `clap_scores`)."""
    preflight.check_clap(backend.value if backend else None, checkpoint)
    root = str(Warehouse(warehouse).root)
    from flows.stages.clap import filter_stage, make_policy, score_stage
    from pipeline.clap.config import NOT_CONFIGURED, ClapConfig

    config = ClapConfig.from_env(
        backend=backend.value if backend else None,
        checkpoint=checkpoint,
        batch_size=batch_size,
        device=device.value if device else None,
    )
    if config is None:  # as in `build`: nothing to score, the filter stage marks items unscored
        with flow_api():
            filter_stage(root, None, [task.value], make_policy(None, {}), None)
        typer.echo(f"{task.value}: not scored: {NOT_CONFIGURED}")
        return
    with flow_api():
        (s,) = score_stage(root, None, [task.value], config).summaries
    typer.echo(
        f"{task.value} ({s.backend}: {s.checkpoint}): {s.items_scored} items scored, "
        f"{s.items_unscored} unscored {s.unscored_by_reason or ''}; clips {s.clips_computed} "
        f"embedded, {s.clips_cached} reused, {s.clips_failed} unusable".rstrip()
    )


@user_errors
def filter_items(
    task: TaskOption,
    policy: Annotated[Policy, typer.Option(help="Filter policy.")] = Policy.task_rule,
    threshold: Annotated[
        float | None, typer.Option(help="absolute / task-rule: cosine threshold (default 0.3).")
    ] = None,
    margin: Annotated[
        float | None, typer.Option(help="relative: required score minus caption score (0).")
    ] = None,
    percentile: Annotated[
        float | None, typer.Option(help="percentile: drop items below this percentile (20).")
    ] = None,
    k: Annotated[
        int | None, typer.Option("--k", help="topk: keep per clip; animal rule: top-k rank (5).")
    ] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Apply a filter policy to stored CLAP scores (decisions appended to `item_filters`)."""
    from flows.stages.clap import filter_stage, make_policy

    params = {
        name: value
        for name, value in (
            ("threshold", threshold),
            ("margin", margin),
            ("percentile", percentile),
            ("k", k),
        )
        if value is not None
    }
    root = str(Warehouse(warehouse).root)
    chosen = make_policy(policy.value, params)
    with flow_api():
        report = filter_stage(root, None, [task.value], chosen, None, scored=True)
    (summary,) = report.summaries
    typer.echo(
        f"{summary.task} ({summary.policy} {summary.policy_params}): {summary.kept} kept, "
        f"{summary.dropped} dropped, {summary.unscored} unscored "
        f"{summary.unscored_by_reason or ''}".rstrip()
    )


@user_errors
def clap_report(
    task: TaskOption,
    out: Annotated[Path, typer.Option(help="Folder for the Markdown and PNG histograms.")] = Path(
        "out/clap"
    ),
    warehouse: WarehouseOption = None,
) -> None:
    """Write CLAP score histograms (PNG) and kept/dropped counts per policy for a task."""
    from pipeline.clap.report import clap_report as build_report

    markdown = build_report(Warehouse(warehouse), task.value, out)
    path = out / f"clap_{task.value}.md"
    path.write_text(markdown, encoding="utf-8")
    typer.echo(markdown)
    typer.echo(f"written: {path}")
