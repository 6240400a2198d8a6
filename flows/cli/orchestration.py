"""Orchestration commands: `forge build`, `forge regenerate`, `forge serve`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.cli import preflight
from flows.cli.common import WarehouseOption, flow_api, user_errors
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
    data = preflight.check_build_params_file(params_file) if params_file else {}
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
    check_build(data)
    from flows.build import build_flow
    from flows.stages.params import BuildParams

    params = BuildParams.model_validate(data)
    with flow_api():
        summary = build_flow(params)
    print_build(summary)


def check_build(data: dict) -> None:
    """The build's configuration errors, before Prefect or any stage starts."""
    if data.get("tasks") is not None:
        preflight.check_tasks(data["tasks"])
    if data.get("stages") is not None:
        preflight.check_stages(data["stages"])
    for corpus in data.get("sources") or []:
        if isinstance(corpus, dict):
            preflight.existing_path(corpus.get("path") or "", f"--source {corpus.get('source')}")
            if corpus.get("audio_root"):
                preflight.existing_path(corpus["audio_root"], "audio root", kind="dir")
    llm = dict(data.get("llm") or {})
    preflight.check_llm(llm.pop("backend", None), llm.pop("model", None), **llm)
    clap = data.get("clap") or {}
    preflight.check_clap(clap.get("backend"), clap.get("checkpoint"))
    prompts_dir = (data.get("generate") or {}).get("prompts_dir")
    if prompts_dir:
        preflight.existing_path(prompts_dir, "--prompts", kind="dir")
    train_config = (data.get("train") or {}).get("config")
    if train_config:
        preflight.existing_path(train_config, "--train-config", kind="file")


def parse_source(text: str) -> dict[str, str | None]:
    name, sep, rest = text.partition("=")
    if not sep or not rest:
        raise typer.BadParameter(f"--source {text!r}: expected NAME=PATH[:AUDIO_ROOT]")
    path, _, audio_root = rest.partition(":")
    return {"source": name, "path": str(Path(path).resolve()), "audio_root": audio_root or None}


def print_build(summary) -> None:  # flows.build.BuildSummary
    """One line per stage. Pitch and generation lines are read back from the warehouse, so
    they say what this run did even when Prefect returned a cached stage result (whose
    counts describe the run that first computed it)."""
    wh = Warehouse(summary.warehouse)
    typer.echo(f"build {summary.run_id} → {summary.warehouse}")
    for name, report in summary.stages.items():
        counts = dict(report.counts)
        if name == "pitch" and "measured" in counts:
            counts = pitch_counts(wh, summary.run_id)
        if name == "generate":
            counts["generation_versions"] = generation_versions(
                wh, counts.get("generation_versions") or {}
            )
        typer.echo(f"  {name:<11} {json.dumps(counts, default=str)}")
    if summary.training is not None:
        typer.echo(f"  {'train':<11} {json.dumps(summary.training, default=str)[:300]}")
    for task, why in summary.incomplete.items():
        typer.secho(f"incomplete: {task}: {why}", fg=typer.colors.YELLOW, err=True)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def pitch_counts(wh: Warehouse, run_id: str) -> dict[str, int]:
    """Clips measured by this run vs measured before (reused from `clip_pitch`)."""
    (row,) = wh.rows(
        "SELECT count(DISTINCT clip_id) FILTER (WHERE run_id = ?) AS measured, "
        "count(DISTINCT clip_id) FILTER (WHERE run_id <> ?) AS cached FROM clip_pitch",
        [run_id, run_id],
    )
    return {"measured": row["measured"], "cached": row["cached"]}


def generation_versions(wh: Warehouse, produced: dict[str, str]) -> dict[str, str]:
    """Per task: the version the stage produced, and the current one when they differ (a
    cached stage result names the version it first wrote; a regenerate may have made
    another current since)."""
    rows = wh.rows(
        "SELECT task, string_agg(DISTINCT generation_version, ',') AS versions "
        "FROM items_current WHERE list_contains(?, task) GROUP BY task",
        [list(produced)],
    )
    current = {r["task"]: r["versions"] for r in rows}
    shown = {}
    for task, version in produced.items():
        now = current.get(task)
        if now is None:
            shown[task] = f"{version} (not current: no items)"
        elif now == version:
            shown[task] = version
        else:
            shown[task] = f"{version} (cached; current: {now})"
    return shown


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
    preflight.check_tasks([task])
    prompts = preflight.existing_path(prompts, "--prompts", kind="dir")
    preflight.check_llm(backend, model)
    preflight.check_clap()
    from flows.regenerate import regenerate_flow
    from flows.stages.params import RegenerateParams

    params = RegenerateParams(
        task=task,
        prompts_dir=str(prompts),
        split=split,
        warehouse=str(Warehouse(warehouse).root),
        seed=seed,
        llm={"backend": backend, "model": model},
        runner={"runner": runner, "dask_address": dask_address},
    )
    with flow_api():
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

    with flow_api():
        serve_all(limit=limit)
