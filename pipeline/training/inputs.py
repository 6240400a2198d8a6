"""Injection plans (which token gets which audio embedding) and AudioBERT batches.

Three ways to plan an example:
* published — as the published code does (github HJ-Ok/AudioBERT, `model/clap_retrieval`
  and `model/AudioBERT/*/dataloader.py`), for training, dev selection and the
  `published_protocol` evaluation row: the audio is the top-1 clip retrieved with
  `"{span} sound"` for the span the *detector* found (slot 1: the first detected span;
  slot 2: the second, else the first; no span detected: the query `" sound"`), and it is
  injected at the first word piece of the *gold* span (`description`; `span1`, `span2`).
  Where the gold span is not in the sentence the reference injects at the first / last
  token; we inject nothing there and count it (`span_not_found_in_sentence`).
* pipeline — detected span position and detected-span retrieval (`end_to_end` row,
  `forge predict`): what a user without gold spans gets.
* own clip — the item's own spans and source clips (optional training source, and the
  `own_clip_oracle` row).
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


def detected_spans(encoded: Encoded, labels: Sequence[int]) -> list[tuple[int, int]]:
    """Runs of span tokens the detector marked, in sentence order; a mask is never a span
    (injecting there would overwrite the question)."""
    from pipeline.training.span_detector import label_runs

    masks = set(encoded.mask_positions)
    return label_runs([0 if i in masks else label for i, label in enumerate(labels)])


def published_queries(task: str, detected: list[str]) -> list[str]:
    """The span text each slot's retrieval query uses, with the reference's fallbacks."""
    slots = 1 if task == "auditorybench-animal" else MAX_SLOTS
    queries: list[str] = []
    for slot in range(slots):
        if slot < len(detected):
            queries.append(detected[slot])
        elif detected:
            queries.append(detected[0])
        else:
            queries.append("")  # span_query("") is " sound", the reference's fallback query
    return queries


def published_plans(
    encoded: Sequence[Encoded],
    token_labels: Sequence[Sequence[int]],
    index: RetrievalIndex,
    scorer: TextEmbedder,
    skipped: SkipCounter | None = None,
) -> list[Prepared]:
    """Gold span positions, audio retrieved by the detected spans (the published protocol)."""
    skipped = skipped if skipped is not None else SkipCounter()
    plans: list[Prepared] = []
    queries: list[tuple[int, str]] = []
    for row, (example, labels) in enumerate(zip(encoded, token_labels, strict=True)):
        detected = runs_to_text(example, detected_spans(example, labels))
        plan = Prepared(example)
        wanted = published_queries(example.example.task, detected)
        for slot, query in enumerate(wanted):
            position = example.span_positions[slot] if slot < len(example.span_positions) else -1
            if position < 0:
                skipped["span_not_found_in_sentence"] += 1
                continue
            plan.positions.append(position)
            plan.spans.append(query)
            queries.append((row, query))
        plans.append(plan)
    _attach_retrieved(plans, queries, index, scorer)
    return plans


def _attach_retrieved(
    plans: list[Prepared],
    queries: list[tuple[int, str]],
    index: RetrievalIndex,
    scorer: TextEmbedder,
) -> None:
    """Top-1 clip for every (plan row, span) query, in one CLAP text batch."""
    if queries:
        results = index.retrieve(scorer, [span for _, span in queries], k=1)
        for (row, _), hits in zip(queries, results, strict=True):
            clip_id, score = hits[0]
            plans[row].clip_ids.append(clip_id)
            plans[row].scores.append(score)
    for plan in plans:
        if plan.clip_ids:
            plan.audio = np.stack([index.embedding(c) for c in plan.clip_ids])  # type: ignore[misc]


def pipeline_plans(
    encoded: Sequence[Encoded],
    token_labels: Sequence[Sequence[int]],
    index: RetrievalIndex,
    scorer: TextEmbedder,
) -> list[Prepared]:
    """Detected spans → top-1 retrieved clip each → inject at the span's first token."""
    plans: list[Prepared] = []
    queries: list[tuple[int, str]] = []
    for row, (example, labels) in enumerate(zip(encoded, token_labels, strict=True)):
        runs = select_spans(example.example.task, detected_spans(example, labels))
        plan = Prepared(example, positions=[a for a, _ in runs], spans=runs_to_text(example, runs))
        plans.append(plan)
        queries.extend((row, span) for span in plan.spans)
    _attach_retrieved(plans, queries, index, scorer)
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
