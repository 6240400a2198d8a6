"""Evaluation as published: exact match at the [MASK] positions.

* animal — argmax over the whole vocabulary at each [MASK] (one per answer word piece);
  correct iff every piece matches.
* pitch — argmax restricted to {higher, lower} at the [MASK].

Every evaluation also scores the same model without audio injection (`text_only`), and
the backbone as loaded, LoRA disabled and no injection (`backbone`), so the gain from
audio is always visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from pipeline.training.data import PITCH_ANSWERS
from pipeline.training.inputs import Prepared, make_batch
from pipeline.training.model import AudioBert


@dataclass
class MaskPrediction:
    item_id: str
    task: str
    answer: str
    predicted: str
    correct: bool


def restricted_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    ids = tokenizer.convert_tokens_to_ids(list(PITCH_ANSWERS))
    if tokenizer.unk_token_id in ids:
        raise ValueError(f"the tokenizer has no single word piece for each of {PITCH_ANSWERS}")
    return ids


@torch.no_grad()
def predict_masks(
    model: AudioBert,
    plans: Sequence[Prepared],
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device,
    inject: bool = True,
    batch_size: int = 64,
) -> list[MaskPrediction]:
    model.eval()
    pitch_ids = None
    out: list[MaskPrediction] = []
    for start in range(0, len(plans), batch_size):
        chunk = plans[start : start + batch_size]
        batch = make_batch(chunk, tokenizer.pad_token_id, model.audio_dim).to(device)
        _, logits = model(batch, inject=inject)
        logits = logits.float().cpu()
        row_start = 0
        for plan in chunk:
            example = plan.encoded
            at_masks = logits[row_start : row_start + len(example.mask_positions)]  # (masks, vocab)
            row_start += len(example.mask_positions)
            if example.example.task == "auditorybench-pitch":
                pitch_ids = pitch_ids or restricted_ids(tokenizer)
                choice = int(at_masks[0, pitch_ids].argmax())
                predicted = PITCH_ANSWERS[choice]
                correct = [pitch_ids[choice]] == example.target_ids
            else:
                predicted_ids = at_masks.argmax(-1).tolist()
                predicted = tokenizer.decode(predicted_ids).strip()
                correct = predicted_ids == example.target_ids
            out.append(
                MaskPrediction(
                    example.example.item_id,
                    example.example.task,
                    example.example.answer,
                    predicted,
                    correct,
                )
            )
    return out


def accuracy(predictions: Sequence[MaskPrediction]) -> dict[str, float]:
    correct = sum(p.correct for p in predictions)
    return {
        "n": float(len(predictions)),
        "correct": float(correct),
        "accuracy": 100.0 * correct / len(predictions) if predictions else 0.0,
    }


def evaluate_variants(
    model: AudioBert,
    plans: dict[str, Sequence[Prepared]],
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device,
    batch_size: int = 64,
) -> dict[str, dict[str, float]]:
    """Accuracy per variant. `plans` maps an injected variant name (e.g. 'audiobert' for
    detector+retrieval, 'audiobert_gold' for own spans+clips) to its plans; the first
    variant's examples are also scored as `text_only` and `backbone`."""
    results: dict[str, dict[str, float]] = {}
    for name, variant_plans in plans.items():
        results[name] = accuracy(
            predict_masks(model, variant_plans, tokenizer, device, True, batch_size)
        )
    base = next(iter(plans.values()))
    results["text_only"] = accuracy(
        predict_masks(model, base, tokenizer, device, False, batch_size)
    )
    with model.backbone_only():
        results["backbone"] = accuracy(
            predict_masks(model, base, tokenizer, device, False, batch_size)
        )
    return results
