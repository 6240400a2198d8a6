"""Evaluation as published: exact match at the mask positions.

* animal — argmax over the whole vocabulary at each mask (one per answer word piece);
  correct iff every piece matches.
* pitch — argmax restricted to {higher, lower} at the mask (as pieces the backbone
  predicts there: `Ġhigher` for a BPE backbone).

Rows (names used in metrics.json, the model card, `forge evaluate` and `models`):

* `published_protocol` — gold span position, audio retrieved by the detected span: how the
  published AudioBERT numbers were produced;
* `end_to_end` — detected span position and retrieval: what `forge predict` does;
* `own_clip_oracle` — gold span, the item's own source clip (only where items have clips);
* `text_only` — the same trained model, no audio injected;
* `backbone_zero_shot` — the backbone as loaded, LoRA off, no audio. It is comparable with
  the paper's BERT rows only when the backbone is a pretrained masked LM (not when the
  masked-LM head had to be added, e.g. the offline MiniLM).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from pipeline.training.data import PITCH_ANSWERS, word_in_context
from pipeline.training.inputs import Prepared, make_batch
from pipeline.training.model import AudioBert


@dataclass
class MaskPrediction:
    item_id: str
    task: str
    answer: str
    predicted: str
    correct: bool


PUBLISHED_PROTOCOL = "published_protocol"
END_TO_END = "end_to_end"
OWN_CLIP_ORACLE = "own_clip_oracle"
TEXT_ONLY = "text_only"
BACKBONE_ZERO_SHOT = "backbone_zero_shot"


def restricted_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    pieces = [word_in_context(tokenizer, word) for word in PITCH_ANSWERS]
    if any(len(p) != 1 or p[0] == tokenizer.unk_token_id for p in pieces):
        raise ValueError(f"the tokenizer has no single word piece for each of {PITCH_ANSWERS}")
    return [p[0] for p in pieces]


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
    """Accuracy per row. `plans` maps an injected row name (`published_protocol`,
    `end_to_end`, `own_clip_oracle`) to its plans; the first row's examples are also scored
    as `text_only` and `backbone_zero_shot`."""
    results: dict[str, dict[str, float]] = {}
    for name, variant_plans in plans.items():
        results[name] = accuracy(
            predict_masks(model, variant_plans, tokenizer, device, True, batch_size)
        )
    base = next(iter(plans.values()))
    results[TEXT_ONLY] = accuracy(predict_masks(model, base, tokenizer, device, False, batch_size))
    with model.backbone_only():
        results[BACKBONE_ZERO_SHOT] = accuracy(
            predict_masks(model, base, tokenizer, device, False, batch_size)
        )
    return results
