"""Training commands: `forge train audiobert`, `forge evaluate --csv`, `forge predict`."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import WarehouseOption, flow_api, user_errors
from pipeline.storage import Warehouse

ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model", help="Saved model folder (default: the newest under <warehouse>/models)."
    ),
]


class TrainTask(StrEnum):
    animal = "auditorybench-animal"
    pitch = "auditorybench-pitch"


class TaskChoice(StrEnum):
    auto = "auto"
    animal = "auditorybench-animal"
    pitch = "auditorybench-pitch"


def register(app: typer.Typer) -> None:
    train_app = typer.Typer(
        help="Train models on the warehouse's current items.", no_args_is_help=True
    )
    train_app.command("audiobert")(audiobert)
    app.add_typer(train_app, name="train")
    app.command("evaluate")(evaluate)
    app.command("predict")(predict)


@user_errors
def audiobert(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TrainConfig as YAML or JSON (unknown keys are errors)."),
    ] = None,
    samples: Annotated[
        bool,
        typer.Option(
            "--samples",
            help="The small offline sample-run config (tiny random CLAP: no audio knowledge).",
        ),
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume", help="Run id of an interrupted training run to continue (same config)."
        ),
    ] = None,
    task: Annotated[
        list[TrainTask] | None,
        typer.Option(
            "--task", help="Train only these tasks (repeatable; default: the config's tasks)."
        ),
    ] = None,
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain", help="Train even when a model of the same items and config exists."
        ),
    ] = False,
    warehouse: WarehouseOption = None,
) -> None:
    """Train the span detector + one AudioBERT per task (the `train` flow); prints test
    accuracy per evaluation row. Unchanged items and config reuse the saved model."""
    from flows.train import resolve_train_config, train_flow

    tasks = [t.value for t in task] if task else None
    # Configuration errors surface before any flow or Prefect server starts.
    resolve_train_config(str(config) if config else None, samples, tasks)
    with flow_api():
        summary = train_flow(
            warehouse=str(Warehouse(warehouse).root),
            config=str(config.resolve()) if config else None,
            samples=samples,
            run_id=resume,
            tasks=tasks,
            reuse=not retrain,
        )
    for line in summary.lines():
        typer.echo(line)


@user_errors
def evaluate(
    csv: Annotated[Path, typer.Option("--csv", help="AuditoryBench CSV (animal or pitch format).")],
    model: ModelOption = None,
    max_rows: Annotated[int | None, typer.Option(help="Evaluate only the first N rows.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    warehouse: WarehouseOption = None,
) -> None:
    """Score an AuditoryBench CSV: the published-protocol row (gold span position, clip
    retrieved by the detected span), end to end, text-only and backbone zero-shot."""
    from pipeline.training import evaluate_csv

    result = evaluate_csv(Warehouse(warehouse), csv, model_dir=model, max_rows=max_rows)
    if as_json:
        typer.echo(result.model_dump_json(indent=1))
        return
    for line in result.lines():
        typer.echo(line)


@user_errors
def predict(
    sentence: Annotated[str, typer.Argument(help='e.g. "Meow is the sound a [MASK] makes."')],
    model: ModelOption = None,
    task: Annotated[
        TaskChoice, typer.Option(help="auto: pitch if the sentence says 'pitch'.")
    ] = TaskChoice.auto,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    warehouse: WarehouseOption = None,
) -> None:
    """Detect the span, retrieve a clip, inject it and fill the [MASK]."""
    from pipeline.training import predict as run_predict

    result = run_predict(
        Warehouse(warehouse),
        sentence,
        model_dir=model,
        task=None if task is TaskChoice.auto else task.value,
    )
    if as_json:
        typer.echo(json.dumps(result.model_dump(), indent=1))
        return
    typer.echo(f"answer: {result.answer}   (text only: {result.text_only_answer})")
    for span, clip_id, score in zip(result.spans, result.clip_ids, result.scores, strict=True):
        typer.echo(f"span: {span!r} -> clip {clip_id} (cosine {score:.3f})")
    if not result.spans:
        typer.echo("no auditory span detected: answered without audio")
