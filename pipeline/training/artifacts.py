"""A trained AudioBERT on disk, and the objects needed to run it.

Layout of `<warehouse>/models/<run_id>/` (written to a temp folder, then renamed)::

    config.json             TrainConfig of the run
    model.json              backbone location, whether an MLM head was added, audio_dim,
                            CLAP, and `groups`: AudioBERT name → the tasks it answers
    tokenizer/              the backbone's tokenizer
    audiobert/<name>/       one AudioBERT per task as published (<name> = the task), or
                            one `joint` model: adapter/ (peft LoRA) and
                            injection.safetensors (projection + the added MLM head, if any)
    span_detector/          token classifier shared by the tasks (save_pretrained)
    retrieval_index.json    CLAP backend/checkpoint, clip count, query template
    metrics.json            every metric of the run
    MODEL_CARD.md

Folders of the earlier single-model layout (adapter/ at the top) load as one `joint` model.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForTokenClassification, PreTrainedModel, PreTrainedTokenizerBase

from pipeline.errors import ForgeError, MissingArtifactError
from pipeline.redact import redact_text
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


GROUPS_DIR = "audiobert"


def save_group(folder: Path, model: AudioBert) -> None:
    """One trained AudioBERT's own files: LoRA adapter and injection tensors."""
    folder.mkdir(parents=True, exist_ok=True)
    model.lm.save_pretrained(folder / "adapter")
    save_file(injection_state(model), folder / "injection.safetensors")


@dataclass
class SavedModel:
    directory: Path
    config: TrainConfig
    meta: dict[str, Any]
    tokenizer: PreTrainedTokenizerBase
    detector: PreTrainedModel
    device: torch.device
    groups: dict[str, list[str]]  # AudioBERT name → tasks
    group_dirs: dict[str, Path]
    _models: dict[str, AudioBert] = field(default_factory=dict)

    def group_of(self, task: str) -> str:
        for name, tasks in self.groups.items():
            if task in tasks:
                return name
        raise ForgeError(
            f"the model in {self.directory} was not trained on {task} "
            f"(it answers {', '.join(t for ts in self.groups.values() for t in ts)})"
        )

    def model_for(self, task: str) -> AudioBert:
        """The AudioBERT answering `task`, loaded on first use."""
        name = self.group_of(task)
        if name not in self._models:
            self._models[name] = _load_group(self.group_dirs[name], self.config, self.meta)
            self._models[name].to(self.device).eval()
        return self._models[name]


def save_model_files(
    target: Path,
    config: TrainConfig,
    meta: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    detector: PreTrainedModel,
    group_dirs: dict[str, Path],
    extra_files: dict[str, str],
) -> Path:
    """Write every file into a temp folder beside `target`, then swap it in atomically."""
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{target.name}.{secrets.token_hex(4)}.partial"
    tmp.mkdir()
    try:
        # Text files a model is shared with (card, metrics, config) carry no secret.
        (tmp / "config.json").write_text(redact_text(config.model_dump_json(indent=1)))
        (tmp / "model.json").write_text(redact_text(json.dumps(meta, indent=1, sort_keys=True)))
        tokenizer.save_pretrained(tmp / "tokenizer")
        for name, folder in group_dirs.items():
            for part in ("adapter", "injection.safetensors"):
                source, dest = folder / part, tmp / GROUPS_DIR / name / part
                dest.parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, dest)
                else:
                    shutil.copy2(source, dest)
        detector.save_pretrained(tmp / "span_detector")
        for name, text in extra_files.items():
            (tmp / name).write_text(redact_text(text), encoding="utf-8")
        old = parent / f".{target.name}.{secrets.token_hex(4)}.old"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _load_group(folder: Path, config: TrainConfig, meta: dict[str, Any]) -> AudioBert:
    with quiet_transformers():
        lm, head_added = load_masked_lm(resolve_backbone(config.backbone))
        lm = PeftModel.from_pretrained(lm, folder / "adapter")
    model = AudioBert(lm, int(meta["audio_dim"]), train_head=head_added)
    load_injection_state(model, load_file(folder / "injection.safetensors"))
    return model


def load_saved_model(directory: Path | str, device: torch.device | None = None) -> SavedModel:
    directory = Path(directory)
    required = ["config.json", "model.json", "tokenizer", "span_detector"]
    missing = [name for name in required if not (directory / name).exists()]
    meta = json.loads((directory / "model.json").read_text()) if not missing else {}
    groups: dict[str, list[str]] = meta.get("groups") or {"joint": meta.get("tasks", [])}
    group_dirs = {
        name: directory / GROUPS_DIR / name if "groups" in meta else directory for name in groups
    }
    missing += [
        str(folder.relative_to(directory) / part)
        for folder in group_dirs.values()
        for part in ("adapter", "injection.safetensors")
        if not (folder / part).exists()
    ]
    if missing:
        raise MissingArtifactError(
            "trained AudioBERT",
            f"{directory} ({', '.join(missing)} missing)",
            "train one with `forge train audiobert` or pass --model DIR of a finished run",
        )
    from transformers import AutoTokenizer

    config = TrainConfig.model_validate_json((directory / "config.json").read_text())
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer")
        detector = AutoModelForTokenClassification.from_pretrained(directory / "span_detector")
    device = device or pick_device(config.device)
    detector.to(device).eval()
    return SavedModel(directory, config, meta, tokenizer, detector, device, groups, group_dirs)


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
