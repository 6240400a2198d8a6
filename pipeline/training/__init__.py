"""AudioBERT: span detector, CLAP retrieval index, LoRA audio-injection masked LMs (one per
task, as published), evaluation, and import of the published AuditoryBench CSVs.

Entry points (plain functions; flows and the CLI call these):

    train_audiobert(warehouse, config, run_id, reuse=True, on_epoch=None) -> TrainSummary
    evaluate_csv(warehouse, csv_path, model_dir=None) -> CsvEvaluation
    predict(warehouse, sentence, model_dir=None) -> Prediction

Heavy imports (torch, transformers, peft) happen on first use of an entry point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.training.config import TrainConfig

if TYPE_CHECKING:
    from pipeline.storage import Warehouse
    from pipeline.training.inference import CsvEvaluation, Prediction
    from pipeline.training.records import TrainSummary

__all__ = ["TrainConfig", "evaluate_csv", "predict", "train_audiobert"]


def train_audiobert(
    warehouse: Warehouse,
    config: TrainConfig | None,
    run_id: str,
    dataset_run_id: str | None = None,
    **kwargs: Any,
) -> TrainSummary:
    from pipeline.training.train import train_audiobert as run

    return run(warehouse, config, run_id, dataset_run_id, **kwargs)


def evaluate_csv(warehouse: Warehouse, csv_path: Any, **kwargs: Any) -> CsvEvaluation:
    from pipeline.training.inference import evaluate_csv as run

    return run(warehouse, csv_path, **kwargs)


def predict(warehouse: Warehouse, sentence: str, **kwargs: Any) -> Prediction:
    from pipeline.training.inference import predict as run

    return run(warehouse, sentence, **kwargs)
