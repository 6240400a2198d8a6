"""`train_audiobert(warehouse, config, run_id)`: the whole AudioBERT run, from the warehouse's
current AuditoryBench items to a saved model, its metrics, model card and `models` row.

Steps: read items → CLAP retrieval index (clip_embeddings) → span detector → AudioBERT
(gold spans + own clips during training, best epoch on dev accuracy) → test evaluation
(detected span → retrieved clip → inject, as published; plus gold-span/own-clip,
text-only and backbone baselines) → files under `<warehouse>/models/<run_id>/`.

A run is resumable: its checkpoints live in `<warehouse>/models/.work/<run_id>/` until the
model is saved, and calling again with the same run_id and config continues from them.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import AutoModelForTokenClassification

from pipeline.errors import ForgeError
from pipeline.storage import Warehouse
from pipeline.storage.warehouse import utc_now
from pipeline.training.artifacts import (
    build_audiobert,
    load_clap_scorer,
    models_root,
    save_model_files,
)
from pipeline.training.backbone import (
    load_token_classifier,
    load_tokenizer,
    quiet_transformers,
    resolve_backbone,
)
from pipeline.training.card import PUBLISHED, model_card
from pipeline.training.config import TrainConfig
from pipeline.training.data import (
    Encoded,
    SkipCounter,
    encode_examples,
    item_data_version,
    load_items,
)
from pipeline.training.evaluation import accuracy, evaluate_variants, predict_masks
from pipeline.training.inputs import Prepared, gold_plans, make_batch, pipeline_plans
from pipeline.training.loop import LoopSettings, fit, pick_device, seed_everything
from pipeline.training.records import ModelRecord, TrainSummary
from pipeline.training.retrieval import build_index, retrieval_recall
from pipeline.training.span_detector import (
    predict_token_labels,
    span_metrics,
    train_span_detector,
)

RANDOM_CLAP_NOTE = "audio embeddings from a randomly initialised CLAP: no real audio knowledge"


def _check_work_dir(work: Path, config: TrainConfig) -> bool:
    """True when resuming. A work dir left by a different config is an error, not reused."""
    marker = work / "config_fingerprint"
    if marker.exists():
        if marker.read_text().strip() != config.fingerprint():
            raise ForgeError(
                f"{work} holds checkpoints of run with a different config; use a new run id "
                "or delete that folder"
            )
        return True
    work.mkdir(parents=True, exist_ok=True)
    marker.write_text(config.fingerprint())
    return False


def _flatten(encoded: dict[tuple[str, str], list[Encoded]], split: str) -> list[Encoded]:
    return [e for (_, s), values in sorted(encoded.items()) for e in values if s == split]


def train_audiobert(
    warehouse: Warehouse,
    config: TrainConfig | None,
    run_id: str,
    dataset_run_id: str | None = None,
) -> TrainSummary:
    """Train, evaluate and save one AudioBERT; `dataset_run_id` names the build that made
    the data (recorded with the model)."""
    started = time.perf_counter()
    config = config or TrainConfig()
    seed_everything(config.seed)
    device = pick_device(config.device)
    backbone = resolve_backbone(config.backbone)
    tokenizer = load_tokenizer(backbone)
    pad_id = tokenizer.pad_token_id

    items = load_items(warehouse, config.tasks, max_per_split=config.max_items_per_split)
    counts = {f"{task}/{split}": len(values) for (task, split), values in items.items()}
    if not any(items[(task, "train")] for task in config.tasks):
        raise ForgeError(
            f"no usable training items for {', '.join(config.tasks)} in items_current "
            "(valid, kept or unscored, split train); generate the AuditoryBench tasks first"
        )
    data_version = item_data_version(warehouse, config.tasks)

    scorer = load_clap_scorer(config.clap)
    clap_is_random = config.clap.mode == "tiny-random"
    all_clip_ids = sorted({c for values in items.values() for ex in values for c in ex.clip_ids})
    index = build_index(warehouse, scorer, all_clip_ids, run_id)

    skipped = SkipCounter()
    encoded = {
        key: encode_examples(tokenizer, values, config.max_length, skipped)
        for key, values in items.items()
    }
    work = models_root(warehouse.root) / ".work" / run_id
    resumed = _check_work_dir(work, config)

    # ---- span detector ----------------------------------------------------------------
    detector_dir = work / "span_detector"
    if (detector_dir / "config.json").exists():
        with quiet_transformers():
            detector = AutoModelForTokenClassification.from_pretrained(detector_dir)
        detector.to(device)
        span_fit: dict[str, Any] = json.loads((work / "span_detector_fit.json").read_text())
    else:
        detector = load_token_classifier(backbone, config.seed)
        fit_result = train_span_detector(
            detector,
            _flatten(encoded, "train"),
            _flatten(encoded, "dev"),
            config.span_detector,
            pad_id,
            work / "span_detector_ckpt",
            device,
            config.seed,
            progress=config.progress,
            bf16=config.bf16,
        )
        span_fit = {
            "best_epoch": fit_result.best_epoch,
            "best_dev_token_f1": fit_result.best_score,
            "steps": fit_result.global_step,
            "history": fit_result.history,
        }
        detector.save_pretrained(detector_dir)
        (work / "span_detector_fit.json").write_text(json.dumps(span_fit))
    span_eval = {
        split: {
            task: span_metrics(values, predict_token_labels(detector, values, pad_id, device))
            for (task, s), values in encoded.items()
            if s == split and values
        }
        for split in ("dev", "test")
    }

    # ---- retrieval ----------------------------------------------------------------------
    ks = sorted(set(config.retrieval_top_k))
    retrieval_eval = {
        task: retrieval_recall(index, scorer, items[(task, "dev")], ks) for task in config.tasks
    }

    # ---- AudioBERT ------------------------------------------------------------------------
    model, head_added, _ = build_audiobert(config, index.audio_dim)
    train_plans = [p for p in gold_plans(_flatten(encoded, "train"), index, skipped) if p.positions]
    without_audio = len(_flatten(encoded, "train")) - len(train_plans)
    if without_audio:
        skipped["train_items_without_audio"] += without_audio
    dev_plans = {
        task: gold_plans(values, index)
        for (task, split), values in encoded.items()
        if split == "dev" and values
    }

    def dev_score() -> float:
        scores = [
            accuracy(predict_masks(model, plans, tokenizer, device, True, config.eval_batch_size))[
                "accuracy"
            ]
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
        label="audiobert",
    )
    audio_dim = index.audio_dim
    fit_result = fit(
        model,
        len(train_plans),
        lambda idx: make_batch([train_plans[i] for i in idx], pad_id, audio_dim),
        lambda module, batch: module(batch)[0],
        loop,
        work / "audiobert_ckpt",
        device,
        evaluate=dev_score if dev_plans else None,
        on_step=None,
    )

    # ---- evaluation -----------------------------------------------------------------------
    evaluation: dict[str, dict[str, Any]] = {}
    for split in ("test", "wiki"):
        for task in config.tasks:
            values = encoded.get((task, split), [])
            if not values:
                continue
            labels = predict_token_labels(detector, values, pad_id, device)
            variants: dict[str, Sequence[Prepared]] = {
                "audiobert": pipeline_plans(values, labels, index, scorer)
            }
            if split != "wiki":
                variants["audiobert_gold"] = gold_plans(values, index)
            evaluation.setdefault(split, {})[task] = evaluate_variants(
                model, variants, tokenizer, device, config.eval_batch_size
            )

    metrics: dict[str, Any] = {
        "run_id": run_id,
        "dataset_run_id": dataset_run_id,
        "backbone": config.backbone,
        "backbone_location": backbone.location,
        "mlm_head_added": head_added,
        "clap": {
            "mode": config.clap.mode,
            "backend": scorer.backend,
            "checkpoint": scorer.checkpoint_id,
            "is_random": clap_is_random,
            "note": RANDOM_CLAP_NOTE if clap_is_random else None,
        },
        "device": device.type,
        "items": counts,
        "skipped": dict(skipped),
        "data_version": data_version,
        "span_detector": {"fit": span_fit, **span_eval},
        "retrieval": {"dev": retrieval_eval, "index": index.metadata()},
        "audiobert": {
            "fit": {
                "best_epoch": fit_result.best_epoch,
                "best_dev_accuracy": fit_result.best_score,
                "steps": fit_result.global_step,
                "total_steps": fit_result.total_steps,
                "resumed_from_step": fit_result.resumed_from_step,
                "history": fit_result.history,
                "train_examples": len(train_plans),
            },
            "evaluation": evaluation,
        },
        "published": PUBLISHED,
    }
    meta = {
        "run_id": run_id,
        "backbone": config.backbone,
        "backbone_location": backbone.location,
        "mlm_head_added": head_added,
        "audio_dim": audio_dim,
        "tasks": list(config.tasks),
        "retrieval_index": index.metadata(),
        "clap": metrics["clap"],
    }
    target = models_root(warehouse.root) / run_id
    model_dir = save_model_files(
        target,
        config,
        meta,
        tokenizer,
        model,
        detector,
        {
            "metrics.json": json.dumps(metrics, indent=1, default=str),
            "retrieval_index.json": json.dumps(
                {**index.metadata(), "clip_ids": index.clip_ids}, indent=1
            ),
            "MODEL_CARD.md": model_card(metrics, config),
        },
    )
    _record_model(warehouse, run_id, model_dir, config, metrics, head_added, counts)
    shutil.rmtree(work, ignore_errors=True)

    test = evaluation.get("test", {})
    return TrainSummary(
        run_id=run_id,
        model_dir=str(model_dir),
        backbone=config.backbone,
        clap_checkpoint=scorer.checkpoint_id,
        clap_is_random=clap_is_random,
        items=counts,
        skipped=dict(skipped),
        test_accuracy={
            task: {name: result["accuracy"] for name, result in variants.items()}
            for task, variants in test.items()
        },
        resumed=resumed,
        seconds=time.perf_counter() - started,
    )


def _accuracy(metrics: dict[str, Any], task: str, variant: str) -> float | None:
    result = metrics["audiobert"]["evaluation"].get("test", {}).get(task, {}).get(variant)
    return None if result is None else float(result["accuracy"])


def _record_model(
    warehouse: Warehouse,
    run_id: str,
    model_dir: Path,
    config: TrainConfig,
    metrics: dict[str, Any],
    head_added: bool,
    counts: dict[str, int],
) -> None:
    test_f1 = [m["token_f1"] for m in metrics["span_detector"].get("test", {}).values()]
    recall = [m["recall@1"] for m in metrics["retrieval"]["dev"].values() if "recall@1" in m]
    animal, pitch = "auditorybench-animal", "auditorybench-pitch"
    record = ModelRecord(
        run_id=run_id,
        dataset_run_id=metrics["dataset_run_id"],
        model_dir=str(model_dir),
        backbone=config.backbone,
        mlm_head_added=head_added,
        tasks=list(config.tasks),
        clap_backend=metrics["clap"]["backend"],
        clap_checkpoint=metrics["clap"]["checkpoint"],
        clap_is_random=metrics["clap"]["is_random"],
        config_fingerprint=config.fingerprint(),
        data_version=json.dumps(metrics["data_version"], default=str),
        train_items=sum(v for k, v in counts.items() if k.endswith("/train")),
        dev_items=sum(v for k, v in counts.items() if k.endswith("/dev")),
        test_items=sum(v for k, v in counts.items() if k.endswith("/test")),
        animal_test_acc=_accuracy(metrics, animal, "audiobert"),
        pitch_test_acc=_accuracy(metrics, pitch, "audiobert"),
        animal_text_only_acc=_accuracy(metrics, animal, "text_only"),
        pitch_text_only_acc=_accuracy(metrics, pitch, "text_only"),
        animal_backbone_acc=_accuracy(metrics, animal, "backbone"),
        pitch_backbone_acc=_accuracy(metrics, pitch, "backbone"),
        span_token_f1=sum(test_f1) / len(test_f1) if test_f1 else None,
        retrieval_recall_at_1=sum(recall) / len(recall) if recall else None,
        best_epoch=metrics["audiobert"]["fit"]["best_epoch"],
        metrics=json.dumps(metrics, default=str),
        created_at=utc_now(),
    )
    warehouse.write_partition("models", f"run_id={run_id}", [record.model_dump()])
