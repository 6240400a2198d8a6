"""Orchestration commands: `forge build`, `forge regenerate`, `forge serve`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import WarehouseOption, user_errors
from pipeline.storage import Warehouse

TaskOption = Annotated[
    list[str] | None,
    typer.Option("--task", help="Dataset task (repeatable; default: every registered task)."),
]
RunnerOption = Annotated[
    str, typer.Option("--runner", help="Task runner of the audio/CLAP stages: local | dask.")
]
DaskAddressOption = Annotated[
    str | None,
    typer.Option("--dask-address", help="Scheduler of an existing Dask cluster (tcp://host:8786)."),
]
BackendOption = Annotated[
    str | None,
    typer.Option(
        "--backend", help="LLM backend: offline | openai (default: from the environment)."
    ),
]
ModelOption = Annotated[str | None, typer.Option("--model", help="LLM model id (openai backend).")]


def register(app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("regenerate")(regenerate)
    app.command("serve")(serve)


@user_errors
def build(
    task: TaskOption = None,
    stage: Annotated[
        list[str] | None,
        typer.Option("--stage", help="Run only these stages (repeatable; default: all)."),
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="Corpus to ingest as NAME=PATH[:AUDIO_ROOT] (repeatable; default: samples).",
        ),
    ] = None,
    backend: BackendOption = None,
    model: ModelOption = None,
    prompts: Annotated[
        Path | None, typer.Option("--prompts", help="Templates overriding the defaults.")
    ] = None,
    export_format: Annotated[
        list[str] | None, typer.Option("--format", help="Export format (repeatable).")
    ] = None,
    train: Annotated[bool, typer.Option("--train/--no-train", help="Train at the end.")] = False,
    train_config: Annotated[
        Path | None, typer.Option("--train-config", help="Training config (YAML/JSON).")
    ] = None,
    runner: RunnerOption = "local",
    dask_address: DaskAddressOption = None,
    params_file: Annotated[
        Path | None,
        typer.Option("--params", help="JSON file of BuildParams (options above override it)."),
    ] = None,
    warehouse: WarehouseOption = None,
) -> None:
    """Run the whole pipeline (the `build` flow) for a set of tasks and sources."""
    from flows.build import build_flow
    from flows.stages.params import BuildParams

    data = json.loads(params_file.read_text()) if params_file else {}
    data["warehouse"] = str(Warehouse(warehouse or data.get("warehouse")).root)
    if task:
        data["tasks"] = task
    if stage:
        data["stages"] = stage
    if source:
        data["sources"] = [parse_source(s) for s in source]
    llm = data.setdefault("llm", {})
    if backend:
        llm["backend"] = backend
    if model:
        llm["model"] = model
    if prompts:
        data.setdefault("generate", {})["prompts_dir"] = str(prompts.resolve())
    if export_format:
        data.setdefault("export", {})["formats"] = export_format
    if train:
        data.setdefault("train", {})["enabled"] = True
    if train_config:
        data.setdefault("train", {})["config"] = str(train_config.resolve())
    data.setdefault("runner", {}).update(runner=runner, dask_address=dask_address)
    summary = build_flow(BuildParams.model_validate(data))
    print_build(summary)


def parse_source(text: str) -> dict[str, str | None]:
    name, sep, rest = text.partition("=")
    if not sep or not rest:
        raise typer.BadParameter(f"--source {text!r}: expected NAME=PATH[:AUDIO_ROOT]")
    path, _, audio_root = rest.partition(":")
    return {"source": name, "path": str(Path(path).resolve()), "audio_root": audio_root or None}


def print_build(summary) -> None:  # flows.build.BuildSummary
    typer.echo(f"build {summary.run_id} → {summary.warehouse}")
    for name, report in summary.stages.items():
        typer.echo(f"  {name:<11} {json.dumps(report.counts, default=str)}")
    if summary.training is not None:
        typer.echo(f"  {'train':<11} {json.dumps(summary.training, default=str)[:300]}")


@user_errors
def regenerate(
    task: Annotated[str, typer.Option("--task", help="Dataset task to regenerate.")],
    prompts: Annotated[
        Path, typer.Option("--prompts", help="Folder of new templates (override by name).")
    ],
    split: Annotated[str | None, typer.Option("--split", help="Only this split.")] = None,
    backend: BackendOption = None,
    model: ModelOption = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    runner: RunnerOption = "local",
    dask_address: DaskAddressOption = None,
    warehouse: WarehouseOption = None,
) -> None:
    """New items for TASK with new templates, beside the old version; then score + filter."""
    from flows.regenerate import regenerate_flow
    from flows.stages.params import RegenerateParams

    params = RegenerateParams(
        task=task,
        prompts_dir=str(prompts.resolve()),
        split=split,
        warehouse=str(Warehouse(warehouse).root),
        seed=seed,
        llm={"backend": backend, "model": model},
        runner={"runner": runner, "dask_address": dask_address},
    )
    summary = regenerate_flow(params)
    typer.echo(f"regenerate {summary.run_id}: {task}")
    for split_name, version in sorted(summary.current_versions.items()):
        before = summary.previous_versions.get(split_name)
        change = "unchanged" if before == version else f"{before or 'none'} → {version}"
        typer.echo(f"  {split_name:<6} {change}")
    typer.echo(
        "compare: forge sql \"SELECT * FROM version_diff('"
        + task
        + "', '<old version>', '<new version>')\""
    )


@user_errors
def serve(
    limit: Annotated[
        int | None, typer.Option("--limit", help="Concurrent flow runs this process takes.")
    ] = None,
) -> None:
    """Serve the build, regenerate, export and train flows from this process (flow.serve)."""
    from flows.serve import serve_all

    serve_all(limit=limit)
