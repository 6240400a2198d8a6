"""One AudioBERT of a run: trained on one task (published) or on all tasks (joint).

Training plans follow `TrainConfig.train_audio` (published protocol: gold span position,
top-1 clip retrieved for the detected span; or the item's own clip); the best epoch is
chosen on dev accuracy under the same protocol, as the published scripts select on their
retrieved dev set. A finished model leaves `result.json` in its work folder, so a resumed
run does not train it again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.training.artifacts import build_audiobert, save_group
from pipeline.training.config import TrainConfig
from pipeline.training.data import Encoded, SkipCounter
from pipeline.training.evaluation import (
    END_TO_END,
    OWN_CLIP_ORACLE,
    PUBLISHED_PROTOCOL,
    accuracy,
    evaluate_variants,
    predict_masks,
)
from pipeline.training.inputs import (
    Prepared,
    gold_plans,
    make_batch,
    pipeline_plans,
    published_plans,
)
from pipeline.training.loop import LoopSettings, fit
from pipeline.training.retrieval import RetrievalIndex

EpochHook = Callable[[dict[str, Any]], None]
Key = tuple[str, str]  # (task, split)


class GroupContext:
    """What every per-task AudioBERT shares within one run."""

    def __init__(
        self,
        config: TrainConfig,
        tokenizer: Any,
        device: Any,
        index: RetrievalIndex,
        scorer: Any,
        encoded: dict[Key, list[Encoded]],
        labels: dict[Key, list[list[int]]],
        on_epoch: EpochHook | None,
    ) -> None:
        self.config, self.tokenizer, self.device = config, tokenizer, device
        self.index, self.scorer = index, scorer
        self.encoded, self.labels, self.on_epoch = encoded, labels, on_epoch

    def plans(self, key: Key, protocol: str, skipped: SkipCounter | None = None) -> list[Prepared]:
        values = self.encoded.get(key, [])
        if not values:
            return []
        if protocol == PUBLISHED_PROTOCOL:
            return published_plans(values, self.labels[key], self.index, self.scorer, skipped)
        if protocol == END_TO_END:
            return pipeline_plans(values, self.labels[key], self.index, self.scorer)
        return gold_plans(values, self.index, skipped)


def train_group(ctx: GroupContext, name: str, tasks: list[str], folder: Path) -> dict[str, Any]:
    """Train, evaluate and save one AudioBERT; a finished one (result.json) is not redone."""
    done = folder / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    config = ctx.config
    skipped = SkipCounter()
    train_protocol = PUBLISHED_PROTOCOL if config.train_audio == "retrieved" else OWN_CLIP_ORACLE
    model, head_added, _ = build_audiobert(config, ctx.index.audio_dim)
    train_plans = [p for t in tasks for p in ctx.plans((t, "train"), train_protocol, skipped)]
    with_audio = [p for p in train_plans if p.positions]
    if len(with_audio) < len(train_plans):
        skipped["train_items_without_audio"] += len(train_plans) - len(with_audio)
    dev_plans = {t: ctx.plans((t, "dev"), train_protocol) for t in tasks}
    dev_plans = {t: plans for t, plans in dev_plans.items() if plans}
    pad_id, audio_dim = ctx.tokenizer.pad_token_id, ctx.index.audio_dim

    def dev_score() -> float:
        scores = [
            accuracy(
                predict_masks(model, plans, ctx.tokenizer, ctx.device, True, config.eval_batch_size)
            )["accuracy"]
            for plans in dev_plans.values()
        ]
        return sum(scores) / len(scores) if scores else 0.0

    loop = LoopSettings(
        epochs=config.epochs,
        batch_size=config.batch_size,
        grad_accum_steps=config.grad_accum_steps,
        lr=config.lr,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        grad_clip=config.grad_clip,
        seed=config.seed,
        checkpoint_every_steps=config.checkpoint_every_steps,
        bf16=config.bf16,
        progress=config.progress,
        label=f"audiobert {name}",
    )
    fit_result = fit(
        model,
        len(with_audio),
        lambda idx: make_batch([with_audio[i] for i in idx], pad_id, audio_dim),
        lambda module, batch: module(batch)[0],
        loop,
        folder / "ckpt",
        ctx.device,
        evaluate=dev_score if dev_plans else None,
        on_epoch=ctx.on_epoch,
    )
    evaluation: dict[str, dict[str, Any]] = {}
    for split in ("test", "wiki"):
        for task in tasks:
            rows: dict[str, Sequence[Prepared]] = {
                PUBLISHED_PROTOCOL: ctx.plans((task, split), PUBLISHED_PROTOCOL),
                END_TO_END: ctx.plans((task, split), END_TO_END),
            }
            if not rows[PUBLISHED_PROTOCOL]:
                continue
            oracle = ctx.plans((task, split), OWN_CLIP_ORACLE) if split != "wiki" else []
            if any(p.positions for p in oracle):
                rows[OWN_CLIP_ORACLE] = oracle
            evaluation.setdefault(split, {})[task] = evaluate_variants(
                model, rows, ctx.tokenizer, ctx.device, config.eval_batch_size
            )
    save_group(folder, model)
    result = {
        "tasks": tasks,
        "head_added": head_added,
        "skipped": dict(skipped),
        "evaluation": evaluation,
        "fit": {
            "tasks": tasks,
            "best_epoch": fit_result.best_epoch,
            "best_dev_accuracy": fit_result.best_score,
            "steps": fit_result.global_step,
            "total_steps": fit_result.total_steps,
            "resumed_from_step": fit_result.resumed_from_step,
            "history": fit_result.history,
            "train_examples": len(with_audio),
        },
    }
    done.write_text(json.dumps(result))
    return result
