"""Auditory-knowledge span detector: BERT token classification, 1 on span word pieces.

Gold labels come from the item's spans aligned to word pieces by offset mapping (both
spans for pitch items). Metrics: token-level P/R/F1 of the SPAN label over real tokens,
and span-level P/R/F1 where a span is a maximal run of SPAN tokens that must match a gold
run exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from pipeline.training.config import SpanDetectorSettings
from pipeline.training.data import Encoded, token_span_labels
from pipeline.training.loop import FitResult, LoopSettings, fit
from pipeline.training.model import IGNORE_INDEX


@dataclass
class SpanBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device) -> SpanBatch:
        return SpanBatch(**{name: value.to(device) for name, value in vars(self).items()})

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])


def gold_labels(encoded: Encoded) -> list[int]:
    return token_span_labels(encoded.offsets, encoded.special, encoded.span_ranges)


def make_span_batch(examples: Sequence[Encoded], pad_id: int) -> SpanBatch:
    length = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    types = torch.zeros((len(examples), length), dtype=torch.long)
    attention = torch.zeros((len(examples), length), dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        types[row, :n] = torch.tensor(example.token_type_ids)
        attention[row, :n] = 1
        labels[row, :n] = torch.tensor(gold_labels(example))
    return SpanBatch(ids, attention, types, labels)


def _loss(model: nn.Module, batch: SpanBatch) -> torch.Tensor:
    return model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        token_type_ids=batch.token_type_ids,
        labels=batch.labels,
    ).loss


def train_span_detector(
    model: PreTrainedModel,
    train: list[Encoded],
    dev: list[Encoded],
    settings: SpanDetectorSettings,
    pad_id: int,
    work_dir: Path,
    device: torch.device,
    seed: int,
    progress: bool = True,
    bf16: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> FitResult:
    """Fine-tune all weights; the best epoch on dev token F1 is kept."""
    # Items whose spans could not be located carry no supervision: leave them out.
    train = [e for e in train if any(r is not None for r in e.span_ranges)]
    loop = LoopSettings(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        seed=seed,
        warmup_ratio=0.0,
        bf16=bf16,
        progress=progress,
        label="span detector",
    )

    def evaluate() -> float:
        return span_metrics(dev, predict_token_labels(model, dev, pad_id, device))["token_f1"]

    return fit(
        model,
        len(train),
        lambda idx: make_span_batch([train[i] for i in idx], pad_id),
        _loss,
        loop,
        work_dir,
        device,
        evaluate=evaluate if dev else None,
        on_epoch=on_epoch,
    )


@torch.no_grad()
def predict_token_labels(
    model: PreTrainedModel,
    examples: Sequence[Encoded],
    pad_id: int,
    device: torch.device,
    batch_size: int = 64,
) -> list[list[int]]:
    """Argmax label per token (special tokens get 0)."""
    model.eval()
    out: list[list[int]] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = make_span_batch(chunk, pad_id).to(device)
        logits = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            token_type_ids=batch.token_type_ids,
        ).logits
        predicted = logits.argmax(-1).cpu()
        for row, example in enumerate(chunk):
            labels = predicted[row, : len(example.input_ids)].tolist()
            out.append(
                [
                    0 if special else label
                    for label, special in zip(labels, example.special, strict=True)
                ]
            )
    return out


def label_runs(labels: Sequence[int]) -> list[tuple[int, int]]:
    """Maximal runs of 1-labels as (first token, last token)."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for index, label in enumerate([*labels, 0]):
        if label == 1 and start is None:
            start = index
        elif label != 1 and start is not None:
            runs.append((start, index - 1))
            start = None
    return runs


def runs_to_text(example: Encoded, runs: list[tuple[int, int]]) -> list[str]:
    return [example.text[example.offsets[a][0] : example.offsets[b][1]] for a, b in runs]


def select_spans(task: str, runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Animal: the longest detected run; pitch: the first two in sentence order."""
    if not runs:
        return []
    if task == "auditorybench-animal":
        return [max(runs, key=lambda r: (r[1] - r[0], -r[0]))]
    return runs[:2]


def span_metrics(
    examples: Sequence[Encoded], predicted: Sequence[Sequence[int]]
) -> dict[str, float]:
    tp = fp = fn = 0
    span_tp = span_pred = span_gold = 0
    for example, labels in zip(examples, predicted, strict=True):
        gold = gold_labels(example)
        pred = [label if g != IGNORE_INDEX else 0 for label, g in zip(labels, gold, strict=True)]
        gold_clean = [max(g, 0) for g in gold]
        for p, g in zip(pred, gold_clean, strict=True):
            tp += p == 1 and g == 1
            fp += p == 1 and g == 0
            fn += p == 0 and g == 1
        gold_runs, pred_runs = set(label_runs(gold_clean)), set(label_runs(pred))
        span_tp += len(gold_runs & pred_runs)
        span_pred += len(pred_runs)
        span_gold += len(gold_runs)
    return {
        "examples": float(len(examples)),
        "token_precision": _ratio(tp, tp + fp),
        "token_recall": _ratio(tp, tp + fn),
        "token_f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "span_precision": _ratio(span_tp, span_pred),
        "span_recall": _ratio(span_tp, span_gold),
        "span_f1": _ratio(2 * span_tp, span_pred + span_gold),
    }


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / denominator if denominator else 0.0
