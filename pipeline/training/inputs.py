"""Injection plans (which token gets which audio embedding) and AudioBERT batches.

Two ways to plan an example:
* gold — the item's own spans and its own source clips (training, and the oracle score);
* pipeline — spans from the span detector, clips retrieved from the CLAP index by
  `"{span} sound"` (evaluation and `forge predict`, as published).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.training.data import Encoded, SkipCounter
from pipeline.training.model import IGNORE_INDEX, Batch
from pipeline.training.retrieval import RetrievalIndex, TextEmbedder
from pipeline.training.span_detector import runs_to_text, select_spans

MAX_SLOTS = 2  # at most two spans/clips per item (pitch)


@dataclass
class Prepared:
    encoded: Encoded
    positions: list[int] = field(default_factory=list)  # token index per injected clip
    audio: np.ndarray | None = None  # (len(positions), audio_dim)
    spans: list[str] = field(default_factory=list)  # span text per injected clip
    clip_ids: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # retrieval cosine (pipeline plans)


def gold_plans(
    encoded: Sequence[Encoded], index: RetrievalIndex, skipped: SkipCounter | None = None
) -> list[Prepared]:
    """Own spans + own clips. Spans not found or clips without an embedding are counted."""
    skipped = skipped if skipped is not None else SkipCounter()
    plans: list[Prepared] = []
    for example in encoded:
        plan = Prepared(example)
        vectors: list[np.ndarray] = []
        spans = example.example.spans
        for slot, (position, clip_id) in enumerate(
            zip(example.span_positions, example.example.clip_ids, strict=False)
        ):
            if slot >= MAX_SLOTS:
                break
            vector = index.embedding(clip_id)
            if position < 0:
                skipped["span_not_found_in_sentence"] += 1
            elif vector is None:
                skipped["clip_without_embedding"] += 1
            else:
                plan.positions.append(position)
                plan.clip_ids.append(clip_id)
                plan.spans.append(spans[slot] if slot < len(spans) else "")
                vectors.append(vector)
        plan.audio = np.stack(vectors) if vectors else None
        plans.append(plan)
    return plans


def pipeline_plans(
    encoded: Sequence[Encoded],
    token_labels: Sequence[Sequence[int]],
    index: RetrievalIndex,
    scorer: TextEmbedder,
) -> list[Prepared]:
    """Detected spans → top-1 retrieved clip each → inject at the span's first token."""
    from pipeline.training.span_detector import label_runs

    plans: list[Prepared] = []
    queries: list[tuple[int, str]] = []
    for row, (example, labels) in enumerate(zip(encoded, token_labels, strict=True)):
        # A [MASK] is never part of a span: injecting there would overwrite the question.
        masks = set(example.mask_positions)
        labels = [0 if i in masks else label for i, label in enumerate(labels)]
        runs = select_spans(example.example.task, label_runs(labels))
        plan = Prepared(example, positions=[a for a, _ in runs], spans=runs_to_text(example, runs))
        plans.append(plan)
        queries.extend((row, span) for span in plan.spans)
    if queries:
        results = index.retrieve(scorer, [span for _, span in queries], k=1)
        for (row, _), hits in zip(queries, results, strict=True):
            clip_id, score = hits[0]
            plans[row].clip_ids.append(clip_id)
            plans[row].scores.append(score)
    for plan in plans:
        if plan.clip_ids:
            plan.audio = np.stack([index.embedding(c) for c in plan.clip_ids])  # type: ignore[misc]
    return plans


def make_batch(plans: Sequence[Prepared], pad_id: int, audio_dim: int) -> Batch:
    size = len(plans)
    length = max(len(p.encoded.input_ids) for p in plans)
    ids = torch.full((size, length), pad_id, dtype=torch.long)
    types = torch.zeros((size, length), dtype=torch.long)
    attention = torch.zeros((size, length), dtype=torch.long)
    labels = torch.full((size, length), IGNORE_INDEX, dtype=torch.long)
    audio = torch.zeros((size, MAX_SLOTS, audio_dim), dtype=torch.float32)
    positions = torch.full((size, MAX_SLOTS), -1, dtype=torch.long)
    for row, plan in enumerate(plans):
        example = plan.encoded
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        types[row, :n] = torch.tensor(example.token_type_ids)
        attention[row, :n] = 1
        labels[row, example.mask_positions] = torch.tensor(example.target_ids)
        if plan.audio is not None:
            slots = min(len(plan.positions), MAX_SLOTS)
            audio[row, :slots] = torch.from_numpy(np.asarray(plan.audio[:slots], np.float32))
            positions[row, :slots] = torch.tensor(plan.positions[:slots])
    return Batch(ids, attention, types, labels, audio, positions)
