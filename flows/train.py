"""The `train` flow: AudioBERT on the warehouse's current AuditoryBench items.

Thin wiring over `pipeline.training.train_audiobert`; `build` triggers it (as the
`train/default` deployment when the server has one, else as a subflow). The model's run id
is the flow run id; pass `run_id` of an interrupted run to resume from its last checkpoint.
Each finished epoch is a log line and an update of the run's progress artifact, so a long
run is visibly alive in the Prefect UI. Unchanged items and config reuse the saved model.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

from flows.runs import current_run_id
from pipeline.storage import Warehouse
from pipeline.training import TrainConfig, train_audiobert
from pipeline.training.records import TrainSummary


def resolve_train_config(
    config: str | None, samples: bool, tasks: list[str] | None = None
) -> TrainConfig:
    """A config file wins; `samples` picks the small offline sample-run config; `tasks`
    narrows the tasks trained."""
    if config:
        resolved = TrainConfig.load(config)
    else:
        resolved = TrainConfig.for_samples() if samples else TrainConfig()
    if tasks:
        resolved = TrainConfig.from_mapping(
            {**resolved.model_dump(mode="json"), "tasks": tasks}, source=config or "--task"
        )
    return resolved


class EpochReporter:
    """Log line + progress artifact (percent of all epochs of the run) per finished epoch."""

    def __init__(self, config: TrainConfig) -> None:
        groups = len(config.tasks) if config.model_per_task else 1
        self.total = max(1, config.span_detector.epochs + groups * config.epochs)
        self.done = 0
        self.artifact_id: Any = None

    def __call__(self, entry: dict[str, Any]) -> None:
        self.done += 1
        dev = entry.get("dev_score")
        get_run_logger().info(
            "%s epoch %d/%d: train loss %.4f, dev %s, %.1f samples/s",
            entry.get("label"),
            entry["epoch"],
            entry.get("epochs", 0),
            entry["train_loss"],
            "-" if dev is None else f"{dev:.3f}",
            entry["samples_per_s"],
        )
        progress = min(100.0, 100.0 * self.done / self.total)
        try:
            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(
                    progress, key="audiobert-training", description="epochs finished, all models"
                )
            else:
                update_progress_artifact(self.artifact_id, progress)
        except Exception as exc:  # progress display must never fail a training run
            get_run_logger().debug("progress artifact not updated: %s", exc)


@flow(name="train")
def train_flow(
    warehouse: str | None = None,
    config: str | None = None,
    samples: bool = False,
    dataset_run_id: str | None = None,
    run_id: str | None = None,
    tasks: list[str] | None = None,
    reuse: bool = True,
) -> TrainSummary:
    """Train span detector + AudioBERT (one per task), evaluate against the baselines, save."""
    wh = Warehouse(warehouse)
    resolved = resolve_train_config(config, samples, tasks)
    summary = train_audiobert(
        wh,
        resolved,
        run_id or current_run_id(),
        dataset_run_id=dataset_run_id,
        reuse=reuse,
        on_epoch=EpochReporter(resolved),
    )
    for line in summary.lines():
        get_run_logger().info(line)
    if not summary.reused:
        card = (wh.root / "models" / summary.run_id / "MODEL_CARD.md").read_text(encoding="utf-8")
        create_markdown_artifact(key="audiobert-model-card", markdown=card)
    return summary
