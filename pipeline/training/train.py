"""`train_audiobert(warehouse, config, run_id)`: the whole AudioBERT run, from the warehouse's
current AuditoryBench items to saved models, their metrics, model card and `models` row.

Steps, as published (github HJ-Ok/AudioBERT `model/`): read items → CLAP retrieval index
(clip_embeddings) → one span detector for both tasks → one AudioBERT per task, trained on
the top-1 clip retrieved for the detected span, injected at the gold span (best epoch on
dev accuracy under the same protocol) → test evaluation rows (`published_protocol`,
`end_to_end`, `own_clip_oracle`, `text_only`, `backbone_zero_shot`, see evaluation.py) →
files under `<warehouse>/models/<run_id>/`.

A run is resumable: its checkpoints live in `<warehouse>/models/.work/<run_id>/` until the
model is saved, and calling again with the same run_id and config continues from them.
A run whose items, CLAP and config equal a saved model's returns that model (`reused`).
"""

from __future__ import annotations

import hashlib
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
from pipeline.training.artifacts import load_clap_scorer, models_root, save_model_files
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
    Example,
    SkipCounter,
    encode_examples,
    item_data_version,
    load_items,
)
from pipeline.training.evaluation import (
    BACKBONE_ZERO_SHOT,
    END_TO_END,
    PUBLISHED_PROTOCOL,
    TEXT_ONLY,
)
from pipeline.training.groups import EpochHook, GroupContext, Key, train_group
from pipeline.training.loop import pick_device, seed_everything
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


def _flatten(encoded: dict[Key, list[Encoded]], split: str, tasks: Sequence[str]) -> list[Encoded]:
    return [
        e for (t, s), values in sorted(encoded.items()) for e in values if s == split and t in tasks
    ]


def data_fingerprint(items: dict[Key, list[Example]], clap_identity: str) -> str:
    """Hash of every item trained or evaluated on and the CLAP that embeds the audio."""
    digest = hashlib.sha256(clap_identity.encode())
    for key in sorted(items):
        for ex in items[key]:
            row = [*key, ex.item_id, ex.sentence, ex.answer, ex.spans, ex.clip_ids]
            digest.update(json.dumps(row).encode())
    return digest.hexdigest()[:16]


def reusable_model(warehouse: Warehouse, config_fp: str, data_fp: str) -> dict[str, Any] | None:
    """The newest saved model trained on the same data with the same config, if its files
    are still there."""
    if not warehouse.partitions("models"):
        return None
    rows = warehouse.rows(
        "SELECT run_id, model_dir, metrics FROM models WHERE config_fingerprint = ? "
        "AND data_fingerprint = ? ORDER BY created_at DESC",
        [config_fp, data_fp],
    )
    for row in rows:
        if (Path(row["model_dir"]) / "model.json").is_file():
            return row
    return None


def _pool_clip_ids(
    warehouse: Warehouse, config: TrainConfig, items: dict[Key, list[Example]]
) -> list[str]:
    item_clips = sorted({c for values in items.values() for ex in values for c in ex.clip_ids})
    without_clips = any(not ex.clip_ids for values in items.values() for ex in values)
    pool = config.retrieval_pool
    if pool == "all_clips" or (pool == "auto" and without_clips):
        # Items without a clip (published imports) get audio by retrieval over every clip.
        every = [
            r["clip_id"] for r in warehouse.rows("SELECT DISTINCT clip_id FROM clips ORDER BY 1")
        ]
        return sorted(set(every) | set(item_clips))
    return item_clips


def train_audiobert(
    warehouse: Warehouse,
    config: TrainConfig | None,
    run_id: str,
    dataset_run_id: str | None = None,
    reuse: bool = True,
    on_epoch: EpochHook | None = None,
) -> TrainSummary:
    """Train, evaluate and save the AudioBERT model(s) of one run; `dataset_run_id` names
    the build that made the data (recorded with the model). With `reuse`, an earlier model
    of the same items, CLAP and config is returned instead of training again."""
    started = time.perf_counter()
    config = config or TrainConfig()
    seed_everything(config.seed)
    items = load_items(warehouse, config.tasks, max_per_split=config.max_items_per_split)
    counts = {f"{task}/{split}": len(values) for (task, split), values in items.items()}
    if not any(items[(task, "train")] for task in config.tasks):
        raise ForgeError(
            f"no usable training items for {', '.join(config.tasks)} in items_current "
            "(valid, kept or unscored, split train); generate the AuditoryBench tasks or "
            "import the published CSVs first"
        )
    scorer = load_clap_scorer(config.clap)
    data_fp = data_fingerprint(
        items, f"{scorer.backend}:{scorer.checkpoint_id}:{scorer.crop_policy}"
    )
    if reuse:
        existing = reusable_model(warehouse, config.fingerprint(), data_fp)
        if existing is not None:
            return _reused_summary(existing, time.perf_counter() - started)

    device = pick_device(config.device)
    backbone = resolve_backbone(config.backbone)
    tokenizer = load_tokenizer(backbone)
    pad_id = tokenizer.pad_token_id
    data_version = item_data_version(warehouse, config.tasks)
    clap_is_random = config.clap.mode == "tiny-random"
    index = build_index(warehouse, scorer, _pool_clip_ids(warehouse, config, items), run_id)

    skipped = SkipCounter()
    encoded = {
        key: encode_examples(tokenizer, values, config.max_length, skipped)
        for key, values in items.items()
    }
    work = models_root(warehouse.root) / ".work" / run_id
    resumed = _check_work_dir(work, config)

    # ---- span detector (one for both tasks, as published) -------------------------------
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
            _flatten(encoded, "train", config.tasks),
            _flatten(encoded, "dev", config.tasks),
            config.span_detector,
            pad_id,
            work / "span_detector_ckpt",
            device,
            config.seed,
            progress=config.progress,
            bf16=config.bf16,
            on_epoch=on_epoch,
        )
        span_fit = {
            "best_epoch": fit_result.best_epoch,
            "best_dev_token_f1": fit_result.best_score,
            "steps": fit_result.global_step,
            "history": fit_result.history,
        }
        detector.save_pretrained(detector_dir)
        (work / "span_detector_fit.json").write_text(json.dumps(span_fit))
    labels = {
        key: predict_token_labels(detector, values, pad_id, device) if values else []
        for key, values in encoded.items()
    }
    span_eval = {
        split: {
            task: span_metrics(values, labels[(task, s)])
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

    # ---- AudioBERT: one per task (or one joint) ----------------------------------------------
    groups = (
        {task: [task] for task in config.tasks}
        if config.model_per_task
        else {"joint": list(config.tasks)}
    )
    context = GroupContext(config, tokenizer, device, index, scorer, encoded, labels, on_epoch)
    results = {
        name: train_group(context, name, tasks, work / "audiobert" / name)
        for name, tasks in groups.items()
    }
    for result in results.values():
        skipped.update(result.pop("skipped"))
    head_added = any(r["head_added"] for r in results.values())
    evaluation: dict[str, dict[str, Any]] = {}
    for result in results.values():
        for split, per_task in result["evaluation"].items():
            evaluation.setdefault(split, {}).update(per_task)

    metrics: dict[str, Any] = {
        "run_id": run_id,
        "dataset_run_id": dataset_run_id,
        "backbone": config.backbone,
        "backbone_location": backbone.location,
        "mlm_head_added": head_added,
        "backbone_comparable_with_paper": not head_added,
        "groups": groups,
        "train_audio": config.train_audio,
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
        "data_fingerprint": data_fp,
        "span_detector": {"fit": span_fit, **span_eval},
        "retrieval": {"dev": retrieval_eval, "index": index.metadata()},
        "audiobert": {
            "fit": {name: result["fit"] for name, result in results.items()},
            "evaluation": evaluation,
        },
        "published": PUBLISHED,
    }
    meta = {
        "run_id": run_id,
        "backbone": config.backbone,
        "backbone_location": backbone.location,
        "mlm_head_added": head_added,
        "audio_dim": index.audio_dim,
        "tasks": list(config.tasks),
        "groups": groups,
        "retrieval_index": index.metadata(),
        "clap": metrics["clap"],
    }
    target = models_root(warehouse.root) / run_id
    model_dir = save_model_files(
        target,
        config,
        meta,
        tokenizer,
        detector,
        {name: work / "audiobert" / name for name in groups},
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
    return TrainSummary(
        run_id=run_id,
        model_dir=str(model_dir),
        backbone=config.backbone,
        clap_checkpoint=scorer.checkpoint_id,
        clap_is_random=clap_is_random,
        items=counts,
        skipped=dict(skipped),
        test_accuracy=_test_accuracy(metrics),
        resumed=resumed,
        seconds=time.perf_counter() - started,
    )


def _test_accuracy(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    test = metrics["audiobert"]["evaluation"].get("test", {})
    return {
        task: {name: result["accuracy"] for name, result in variants.items()}
        for task, variants in test.items()
    }


def _reused_summary(row: dict[str, Any], seconds: float) -> TrainSummary:
    metrics = json.loads(row["metrics"])
    return TrainSummary(
        run_id=row["run_id"],
        model_dir=row["model_dir"],
        backbone=metrics["backbone"],
        clap_checkpoint=metrics["clap"]["checkpoint"],
        clap_is_random=metrics["clap"]["is_random"],
        items=metrics["items"],
        skipped=metrics["skipped"],
        test_accuracy=_test_accuracy(metrics),
        reused=True,
        seconds=seconds,
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
    first_fit = next(iter(metrics["audiobert"]["fit"].values()))
    per_row = {
        f"{short}_{row}_acc": _accuracy(metrics, task, row)
        for short, task in (("animal", animal), ("pitch", pitch))
        for row in (PUBLISHED_PROTOCOL, END_TO_END, TEXT_ONLY, BACKBONE_ZERO_SHOT)
    }
    record = ModelRecord(
        run_id=run_id,
        dataset_run_id=metrics["dataset_run_id"],
        model_dir=str(model_dir),
        backbone=config.backbone,
        mlm_head_added=head_added,
        backbone_comparable_with_paper=not head_added,
        tasks=list(config.tasks),
        model_per_task=config.model_per_task,
        train_audio=config.train_audio,
        clap_backend=metrics["clap"]["backend"],
        clap_checkpoint=metrics["clap"]["checkpoint"],
        clap_is_random=metrics["clap"]["is_random"],
        config_fingerprint=config.fingerprint(),
        data_fingerprint=metrics["data_fingerprint"],
        data_version=json.dumps(metrics["data_version"], default=str),
        train_items=sum(v for k, v in counts.items() if k.endswith("/train")),
        dev_items=sum(v for k, v in counts.items() if k.endswith("/dev")),
        test_items=sum(v for k, v in counts.items() if k.endswith("/test")),
        **per_row,
        span_token_f1=sum(test_f1) / len(test_f1) if test_f1 else None,
        retrieval_recall_at_1=sum(recall) / len(recall) if recall else None,
        best_epoch=first_fit["best_epoch"],
        metrics=json.dumps(metrics, default=str),
        created_at=utc_now(),
    )
    warehouse.write_partition("models", f"run_id={run_id}", [record.model_dump()])
