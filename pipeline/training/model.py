"""AudioBERT: a LoRA-wrapped masked LM whose span-start input embeddings are replaced by
projected audio embeddings.

For each item, the first word piece of each auditory span (two spans → two clips for the
pitch task) gets `projection(audio_embedding)` instead of its word embedding. Position
and token-type embeddings are still added by the encoder (we hand it `inputs_embeds`).
Labels are -100 everywhere except the [MASK] targets, and padding is masked out of
attention (the published code did neither).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import PreTrainedModel

from pipeline.errors import ForgeError
from pipeline.training.config import LoraSettings

IGNORE_INDEX = -100


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    token_type_ids: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T): target ids at [MASK] positions, -100 elsewhere
    audio: torch.Tensor  # (B, S, audio_dim): one embedding per span slot
    audio_positions: torch.Tensor  # (B, S): token index to replace, -1 = no injection

    def to(self, device: torch.device) -> Batch:
        return Batch(**{name: value.to(device) for name, value in vars(self).items()})

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])


def wrap_with_lora(model: PreTrainedModel, settings: LoraSettings) -> PeftModel:
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
    )
    from pipeline.training.backbone import quiet_transformers

    with quiet_transformers():
        return get_peft_model(model, config)


class AudioBert(nn.Module):
    """LoRA masked LM + trainable audio projection (+ the MLM head when the backbone lacked one)."""

    def __init__(self, lm: PeftModel, audio_dim: int, train_head: bool = False) -> None:
        super().__init__()
        self.lm = lm
        hidden = lm.get_input_embeddings().embedding_dim
        self.audio_dim = audio_dim
        self.projection = nn.Linear(audio_dim, hidden)
        self.train_head = train_head
        self._initial_head: dict[str, torch.Tensor] = {}
        if train_head:
            # A head the checkpoint did not have must learn; its decoder stays tied to the
            # (frozen) word embeddings, so only the transform and the output bias train.
            for name, param in self.lm.named_parameters():
                if _is_trainable_head_param(name):
                    param.requires_grad_(True)
                    self._initial_head[name] = param.detach().clone()

    @contextlib.contextmanager
    def backbone_only(self) -> Iterator[None]:
        """The backbone as loaded: LoRA disabled and any added head back at its start."""
        params = dict(self.lm.named_parameters())
        trained = {name: params[name].detach().clone() for name in self._initial_head}
        with torch.no_grad():
            for name, value in self._initial_head.items():
                params[name].copy_(value.to(params[name].device))
        try:
            with self.lm.disable_adapter():
                yield
        finally:
            with torch.no_grad():
                for name, value in trained.items():
                    params[name].copy_(value)

    def input_embeddings(self, batch: Batch, inject: bool = True) -> torch.Tensor:
        embeds = self.lm.get_input_embeddings()(batch.input_ids)
        if not inject:
            return embeds
        rows, slots = torch.nonzero(batch.audio_positions >= 0, as_tuple=True)
        if rows.numel() == 0:
            return embeds
        positions = batch.audio_positions[rows, slots]
        projected = self.projection(batch.audio[rows, slots].to(self.projection.weight.dtype))
        embeds = embeds.clone()  # never write into the embedding table's output in place
        embeds[rows, positions] = projected.to(embeds.dtype)
        return embeds

    def forward(self, batch: Batch, inject: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss over the [MASK] targets, logits (n_targets, vocab)).

        Logits rows are the positions where `batch.labels != -100`, in row-major order.
        The vocabulary head runs on those positions only: on a MiniLM-sized model the
        head over every position costs about as much as the whole encoder.
        """
        encoder, head = _encoder_and_head(self.lm.get_base_model())
        hidden = encoder(
            inputs_embeds=self.input_embeddings(batch, inject),
            attention_mask=batch.attention_mask,
            token_type_ids=batch.token_type_ids,
        ).last_hidden_state
        targets = batch.labels != IGNORE_INDEX
        logits = head(hidden[targets])
        loss = nn.functional.cross_entropy(logits.float(), batch.labels[targets])
        return loss, logits


def _encoder_and_head(model: PreTrainedModel) -> tuple[nn.Module, nn.Module]:
    """The encoder and the vocabulary head of a BERT-family (`cls`) or RoBERTa-family
    (`lm_head`) masked LM."""
    encoder = getattr(model, model.base_model_prefix)
    for name in ("cls", "lm_head"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return encoder, head
    raise ForgeError(
        f"unsupported masked-LM head on {type(model).__name__}: BERT-family (cls) and "
        "RoBERTa-family (lm_head) backbones are supported"
    )


def _is_trainable_head_param(name: str) -> bool:
    """The added head's transform and output bias (BERT `cls.predictions`, RoBERTa
    `lm_head`); the decoder weight is the tied word embedding and stays frozen."""
    return (
        "cls.predictions.transform." in name
        or name.endswith("cls.predictions.bias")
        or ".lm_head.dense." in name
        or ".lm_head.layer_norm." in name
        or name.endswith(".lm_head.bias")
    )
