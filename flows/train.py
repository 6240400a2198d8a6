"""The `train` flow: AudioBERT on the warehouse's current AuditoryBench items.

Thin wiring over `pipeline.training.train_audiobert`; `build` triggers it (as the
`train/default` deployment when the server has one, else as a subflow). The model's run id
is the flow run id; pass `run_id` of an interrupted run to resume from its last checkpoint.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.runs import current_run_id
from pipeline.storage import Warehouse
from pipeline.training import TrainConfig, train_audiobert
from pipeline.training.records import TrainSummary


def resolve_train_config(config: str | None, samples: bool) -> TrainConfig:
    """A config file wins; `samples` picks the small offline sample-run config."""
    if config:
        return TrainConfig.load(config)
    return TrainConfig.for_samples() if samples else TrainConfig()


@flow(name="train")
def train_flow(
    warehouse: str | None = None,
    config: str | None = None,
    samples: bool = False,
    dataset_run_id: str | None = None,
    run_id: str | None = None,
) -> TrainSummary:
    """Train span detector + AudioBERT, evaluate against the text-only baseline, save."""
    wh = Warehouse(warehouse)
    summary = train_audiobert(
        wh,
        resolve_train_config(config, samples),
        run_id or current_run_id(),
        dataset_run_id=dataset_run_id,
    )
    for line in summary.lines():
        get_run_logger().info(line)
    card = (wh.root / "models" / summary.run_id / "MODEL_CARD.md").read_text(encoding="utf-8")
    create_markdown_artifact(key="audiobert-model-card", markdown=card)
    return summary
