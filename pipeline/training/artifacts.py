"""A trained AudioBERT on disk, and the objects needed to run it.

Layout of `<warehouse>/models/<run_id>/` (written to a temp folder, then renamed)::

    config.json             TrainConfig of the run
    model.json              backbone location, whether an MLM head was added, audio_dim, CLAP
    tokenizer/              the backbone's tokenizer
    adapter/                LoRA adapter (peft save_pretrained)
    injection.safetensors   audio projection (+ the added MLM head's transform, if any)
    span_detector/          BertForTokenClassification (save_pretrained)
    retrieval_index.json    CLAP backend/checkpoint, clip count, query template
    metrics.json            every metric of the run
    MODEL_CARD.md
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForTokenClassification, PreTrainedModel, PreTrainedTokenizerBase

from pipeline.errors import ForgeError, MissingArtifactError
from pipeline.training.backbone import (
    ResolvedBackbone,
    load_masked_lm,
    quiet_transformers,
    resolve_backbone,
)
from pipeline.training.config import ClapChoice, TrainConfig
from pipeline.training.loop import pick_device
from pipeline.training.model import AudioBert, wrap_with_lora

MODELS_DIR = "models"


def models_root(warehouse_root: Path) -> Path:
    return warehouse_root / MODELS_DIR


def injection_state(model: AudioBert) -> dict[str, torch.Tensor]:
    """Trained tensors outside the LoRA adapter: projection and the added head's transform."""
    state = {f"projection.{k}": v for k, v in model.projection.state_dict().items()}
    params = dict(model.lm.named_parameters())
    for name in model._initial_head:
        state[f"head::{name}"] = params[name]
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def load_injection_state(model: AudioBert, state: dict[str, torch.Tensor]) -> None:
    projection = {
        k.removeprefix("projection."): v for k, v in state.items() if k.startswith("projection.")
    }
    model.projection.load_state_dict(projection)
    head = {k.removeprefix("head::"): v for k, v in state.items() if k.startswith("head::")}
    if set(head) != set(model._initial_head):
        raise ForgeError(f"saved head tensors {sorted(head)} do not fit the backbone's added head")
    params = dict(model.lm.named_parameters())
    with torch.no_grad():
        for name, value in head.items():
            params[name].copy_(value)


def build_audiobert(
    config: TrainConfig, audio_dim: int
) -> tuple[AudioBert, bool, ResolvedBackbone]:
    """A fresh AudioBERT on the configured backbone (seeded projection and LoRA init)."""
    backbone = resolve_backbone(config.backbone)
    lm, head_added = load_masked_lm(backbone)
    torch.manual_seed(config.seed)
    model = AudioBert(wrap_with_lora(lm, config.lora), audio_dim, train_head=head_added)
    return model, head_added, backbone


@dataclass
class SavedModel:
    directory: Path
    config: TrainConfig
    meta: dict[str, Any]
    tokenizer: PreTrainedTokenizerBase
    model: AudioBert
    detector: PreTrainedModel
    device: torch.device


def save_model_files(
    target: Path,
    config: TrainConfig,
    meta: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    model: AudioBert,
    detector: PreTrainedModel,
    extra_files: dict[str, str],
) -> Path:
    """Write every file into a temp folder beside `target`, then swap it in atomically."""
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{target.name}.{secrets.token_hex(4)}.partial"
    tmp.mkdir()
    try:
        (tmp / "config.json").write_text(config.model_dump_json(indent=1))
        (tmp / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        tokenizer.save_pretrained(tmp / "tokenizer")
        model.lm.save_pretrained(tmp / "adapter")
        save_file(injection_state(model), tmp / "injection.safetensors")
        detector.save_pretrained(tmp / "span_detector")
        for name, text in extra_files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        old = parent / f".{target.name}.{secrets.token_hex(4)}.old"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_saved_model(directory: Path | str, device: torch.device | None = None) -> SavedModel:
    directory = Path(directory)
    required = [
        "config.json",
        "model.json",
        "tokenizer",
        "adapter",
        "injection.safetensors",
        "span_detector",
    ]
    missing = [name for name in required if not (directory / name).exists()]
    if missing:
        raise MissingArtifactError(
            "trained AudioBERT",
            f"{directory} ({', '.join(missing)} missing)",
            "train one with `forge train audiobert` or pass --model DIR of a finished run",
        )
    from transformers import AutoTokenizer

    config = TrainConfig.model_validate_json((directory / "config.json").read_text())
    meta = json.loads((directory / "model.json").read_text())
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer")
        lm, head_added = load_masked_lm(resolve_backbone(config.backbone))
        lm = PeftModel.from_pretrained(lm, directory / "adapter")
        detector = AutoModelForTokenClassification.from_pretrained(directory / "span_detector")
    model = AudioBert(lm, int(meta["audio_dim"]), train_head=head_added)
    load_injection_state(model, load_file(directory / "injection.safetensors"))
    device = device or pick_device(config.device)
    model.to(device).eval()
    detector.to(device).eval()
    return SavedModel(directory, config, meta, tokenizer, model, detector, device)


def latest_model_dir(warehouse_root: Path) -> Path:
    root = models_root(warehouse_root)
    candidates = sorted(
        (p for p in root.glob("*") if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: (p / "model.json").stat().st_mtime if (p / "model.json").exists() else 0,
    )
    candidates = [p for p in candidates if (p / "model.json").exists()]
    if not candidates:
        raise MissingArtifactError(
            "trained AudioBERT", f"{root}/<run_id>/", "train one with `forge train audiobert`"
        )
    return candidates[-1]


def load_clap_scorer(choice: ClapChoice) -> Any:
    """The CLAP scorer a run uses; tiny-random only when asked for by name."""
    if choice.mode == "tiny-random":
        from pipeline.clap.tiny import build_tiny_hf_clap

        return build_tiny_hf_clap(seed=0)
    from pipeline.clap import ClapConfig, load_scorer

    config = ClapConfig.from_env(backend=choice.backend, checkpoint=choice.checkpoint)
    if config is None:
        raise MissingArtifactError(
            "CLAP checkpoint",
            "FORGE_CLAP_BACKEND / FORGE_CLAP_CHECKPOINT or `clap.checkpoint` in the train config",
            "set them to a local CLAP checkpoint, or use clap: {mode: tiny-random} for an "
            "offline smoke run without real audio knowledge",
        )
    return load_scorer(config)
