"""CLAP settings: which backend and checkpoint, where to run, how to batch and crop.

`ClapConfig.from_env()` reads `FORGE_CLAP_BACKEND` (laion | hf) and `FORGE_CLAP_CHECKPOINT`
(a `.pt` file for laion; a local directory or hub id for hf), optionally
`FORGE_CLAP_DEVICE`, `FORGE_CLAP_TOKENIZER`, `FORGE_CLAP_CROP_POLICY` (mean | reference |
loudest) and `FORGE_CLAP_CROP_SEED`, and returns None when no checkpoint is configured,
so stages can mark items `unscored` instead of failing.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import ForgeError

BACKEND_ENV = "FORGE_CLAP_BACKEND"
CHECKPOINT_ENV = "FORGE_CLAP_CHECKPOINT"
DEVICE_ENV = "FORGE_CLAP_DEVICE"
TOKENIZER_ENV = "FORGE_CLAP_TOKENIZER"
CROP_POLICY_ENV = "FORGE_CLAP_CROP_POLICY"
CROP_SEED_ENV = "FORGE_CLAP_CROP_SEED"

NOT_CONFIGURED = (
    f"no CLAP checkpoint configured: set {BACKEND_ENV} (laion|hf) and {CHECKPOINT_ENV} "
    "(a LAION .pt file such as 630k-audioset-best.pt, or a transformers ClapModel "
    "directory / hub id such as laion/clap-htsat-unfused)"
)

Backend = Literal["laion", "hf"]
CropPolicy = Literal["mean", "reference", "loudest"]


class ClapConfig(BaseModel):
    """Everything that decides a CLAP embedding; recorded with every stored vector and score."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend
    checkpoint: str = Field(description="laion: path to a .pt file; hf: local directory or hub id")
    tokenizer: str = Field(
        default="roberta-base",
        description="laion only: RoBERTa tokenizer directory or cached hub id",
    )
    device: Literal["auto", "cuda", "cpu"] = "auto"
    amp_dtype: Literal["fp16", "bf16", "fp32"] = Field(
        default="fp16", description="autocast dtype on CUDA; CPU always runs fp32"
    )
    batch_size: int = Field(default=16, ge=1)
    crop_seconds: float = Field(default=10.0, gt=0)
    crop_policy: CropPolicy = Field(
        default="mean",
        description="clips longer than a crop: mean of evenly spread crops, the reference "
        "libraries' seeded random crop / fused view, or the loudest crop (pipeline.clap.crops)",
    )
    max_crops: int = Field(default=6, ge=1, description="cap on crops per long clip (mean policy)")
    crop_seed: int = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="reference policy: numpy seed set before each clip's crop",
    )
    decode_workers: int = Field(default=2, ge=1)

    @classmethod
    def from_env(cls, **overrides: object) -> ClapConfig | None:
        """The configured CLAP, or None when FORGE_CLAP_CHECKPOINT is unset."""
        checkpoint = overrides.pop("checkpoint", None) or os.environ.get(CHECKPOINT_ENV)
        backend = overrides.pop("backend", None) or os.environ.get(BACKEND_ENV)
        if not checkpoint:
            return None
        if not backend:
            backend = "laion" if str(checkpoint).endswith((".pt", ".ckpt", ".pth")) else "hf"
        if backend not in ("laion", "hf"):
            raise ForgeError(f"{BACKEND_ENV}={backend!r}: choose 'laion' or 'hf'")
        values: dict[str, object] = {"backend": backend, "checkpoint": str(checkpoint)}
        if os.environ.get(DEVICE_ENV):
            values["device"] = os.environ[DEVICE_ENV]
        if os.environ.get(TOKENIZER_ENV):
            values["tokenizer"] = os.environ[TOKENIZER_ENV]
        if os.environ.get(CROP_POLICY_ENV):
            values["crop_policy"] = os.environ[CROP_POLICY_ENV]
        if os.environ.get(CROP_SEED_ENV):
            values["crop_seed"] = os.environ[CROP_SEED_ENV]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
