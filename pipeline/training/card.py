"""MODEL_CARD.md for a trained AudioBERT: data version, backbone, CLAP, metrics vs baselines."""

from __future__ import annotations

from typing import Any

from pipeline.training.config import TrainConfig

# Published test accuracy (%) of AuditoryBench (AudioBERT, ICASSP 2025), DESIGN §2.
PUBLISHED: dict[str, dict[str, float]] = {
    "BERT-large (text only)": {"auditorybench-animal": 15.85, "auditorybench-pitch": 58.90},
    "LLaMA3.1-8B": {"auditorybench-animal": 21.80, "auditorybench-pitch": 62.55},
    "AudioBERT": {"auditorybench-animal": 36.69, "auditorybench-pitch": 76.31},
}

ROW_LABELS = {
    "published_protocol": "AudioBERT, published protocol (gold span position, clip retrieved by detected span)",
    "end_to_end": "AudioBERT end to end (detected span position and retrieval)",
    "own_clip_oracle": "AudioBERT, gold span + the item's own source clip (oracle)",
    "text_only": "same model, no audio injected (text-only)",
    "backbone_zero_shot": "backbone zero-shot (LoRA off, no audio)",
}
NOT_COMPARABLE = (
    "The backbone checkpoint has no pretrained masked-LM head (one was added), so the "
    "backbone zero-shot row is not comparable with the paper's BERT rows."
)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def accuracy_table(
    evaluation: dict[str, Any], tasks: list[str], published: bool = True
) -> list[str]:
    lines = ["| model | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    variants = [v for v in ROW_LABELS if any(v in evaluation.get(t, {}) for t in tasks)]
    for variant in variants:
        cells = []
        for task in tasks:
            result = evaluation.get(task, {}).get(variant)
            cells.append(
                "—" if result is None else f"{result['accuracy']:.2f} (n={int(result['n'])})"
            )
        lines.append(f"| {ROW_LABELS[variant]} | " + " | ".join(cells) + " |")
    gains = []
    for task in tasks:
        result = evaluation.get(task, {})
        if "published_protocol" in result and "text_only" in result:
            gain = result["published_protocol"]["accuracy"] - result["text_only"]["accuracy"]
            gains.append(f"{task} {gain:+.2f}")
    for name, scores in PUBLISHED.items() if published else ():
        lines.append(
            f"| published: {name} | " + " | ".join(_pct(scores.get(t)) for t in tasks) + " |"
        )
    if gains:
        lines += [
            "",
            "Gain from audio (published protocol − text-only, points): " + ", ".join(gains) + ".",
        ]
    return lines


def model_card(metrics: dict[str, Any], config: TrainConfig) -> str:
    tasks = list(config.tasks)
    clap = metrics["clap"]
    fits = metrics["audiobert"]["fit"]
    lines = [
        f"# AudioBERT — run {metrics['run_id']}",
        "",
    ]
    if clap["is_random"]:
        lines += [f"> **Warning: {clap['note']}.** This run only shows the pipeline works.", ""]
    lines += [
        "## Model",
        f"- Backbone: `{config.backbone}` (loaded from `{metrics['backbone_location']}`).",
    ]
    if metrics["mlm_head_added"]:
        lines.append(
            "- The backbone checkpoint has no masked-LM head: one was added, its decoder tied "
            "to the pretrained word embeddings, its transform initialised to the identity and "
            "trained with the adapter. " + NOT_COMPARABLE
        )
    groups = metrics["groups"]
    lines.append(
        f"- {len(groups)} AudioBERT model(s): "
        + "; ".join(f"`{name}` for {', '.join(tasks)}" for name, tasks in groups.items())
        + (" (one per task, as published)." if len(groups) > 1 or "joint" not in groups else ".")
    )
    lines.append(
        "- Training audio: "
        + (
            "the top-1 clip retrieved for the detected span, injected at the gold span (as published)."
            if metrics["train_audio"] == "retrieved"
            else "each item's own source clip, injected at the gold span."
        )
    )
    lines += [
        f"- LoRA r={config.lora.r}, alpha={config.lora.alpha}, dropout={config.lora.dropout}, "
        f"targets {', '.join(config.lora.target_modules)}; audio projection "
        f"{metrics['retrieval']['index']['audio_dim']} → hidden size; the projected clip "
        "embedding replaces the input embedding of each span's first word piece.",
        f"- CLAP: backend `{clap['backend']}`, checkpoint `{clap['checkpoint']}`; retrieval "
        f'index of {metrics["retrieval"]["index"]["clips"]} clips, query `"{{span}} sound"`, cosine.',
        f"- Training: {config.epochs} epochs, batch {config.batch_size} × "
        f"{config.grad_accum_steps} accumulation, lr {config.lr}, AdamW, cosine schedule with "
        f"{config.warmup_ratio:.0%} warm-up, grad clip {config.grad_clip}, seed {config.seed}, "
        f"device {metrics['device']}. Best epoch on dev: "
        + "; ".join(
            f"`{name}` {fit['best_epoch']} (dev accuracy {_pct(fit['best_dev_accuracy'])}, "
            f"{fit['train_examples']} training items)"
            for name, fit in fits.items()
        )
        + ".",
        f"- Span detector: {config.span_detector.epochs} epochs, batch "
        f"{config.span_detector.batch_size}, lr {config.span_detector.lr}.",
        "",
        "## Data version",
        f"Built by run `{metrics.get('dataset_run_id') or 'unknown'}`; items from view "
        "`items_current` (valid, CLAP filter kept or unscored).",
        "",
        "| task | split | generation_version | prompt versions | models | usable items | items |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in metrics["data_version"]:
        lines.append(
            f"| {row['task']} | {row['split']} | {row['generation_version']} | "
            f"{', '.join(row.get('prompt_versions') or []) or '—'} | "
            f"{', '.join(row.get('models') or []) or '—'} | {row['usable_items']} | {row['items']} |"
        )
    if metrics["skipped"]:
        lines += [
            "",
            "Left out (reason: count): "
            + ", ".join(f"{k}: {v}" for k, v in sorted(metrics["skipped"].items())),
        ]
    evaluation = metrics["audiobert"]["evaluation"]
    for split in ("test", "wiki"):
        if split in evaluation:
            lines += [
                "",
                f"## Accuracy (%) on our {split} split",
                *accuracy_table(evaluation[split], tasks, published=split == "test"),
            ]
    lines += [
        "",
        "## Span detector (token / span F1)",
        "| split | task | token F1 | span F1 |",
        "|---|---|---|---|",
    ]
    for split in ("dev", "test"):
        for task, result in metrics["span_detector"].get(split, {}).items():
            lines.append(
                f"| {split} | {task} | {result['token_f1']:.3f} | {result['span_f1']:.3f} |"
            )
    lines += ["", "## Retrieval recall on dev (gold span → its own source clip)"]
    for task, result in metrics["retrieval"]["dev"].items():
        recalls = ", ".join(f"{k} {v:.3f}" for k, v in result.items() if k.startswith("recall@"))
        lines.append(f"- {task}: {int(result['queries'])} queries; {recalls or 'no queries'}")
    lines += [
        "",
        "Published numbers are BERT-large / AudioBERT on the published test sets under the "
        "published protocol; ours are on this warehouse's test split (the published one when "
        "imported with `forge import auditorybench`), so they compare the method, and the data "
        "only when the published CSVs were imported.",
        "",
    ]
    return "\n".join(lines)
