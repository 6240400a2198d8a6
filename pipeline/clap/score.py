"""Raw CLAP scores of every current valid item of a task (`clap_scores`).

Which texts are scored against which clip, per task (roles marked * are the item's own
generated text, `is_primary`, which the generic policies judge):

| task                 | roles                                                                 |
|----------------------|-----------------------------------------------------------------------|
| auditorybench-animal | span* (the sound description) and vocab:<animal> for every animal of  |
|                      | the shipped vocabulary (zero-shot prompt), on the item's clip         |
| auditorybench-pitch  | span1* on clip 1, span2* on clip 2, span1_other on clip 2,            |
|                      | span2_other on clip 1                                                 |
| reasonaqa            | mcq: option_a..option_d (letter stripped; the correct one is primary);|
|                      | detail: answer*; other subtasks have no CLAP-checkable text           |
| nlar                 | event_first / event_second: the event (zero-shot prompt) on each clip;|
|                      | primary where the annotations say the event is present                |

Every clip also gets `caption` (its first caption, else title, description or tags),
the reference for the relative policy. Items without clips (wiki templates) get one row
with `unscored_reason`. The score is the cosine of the stored (normalised) embeddings,
so rescoring after a new generation recomputes no audio embedding.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipeline.clap.embeddings import (
    clip_failure_reasons,
    embed_texts_cached,
    ensure_clip_embeddings,
    load_clip_embeddings,
    model_key,
)
from pipeline.clap.scorer import ClapScorer
from pipeline.storage import Warehouse
from pipeline.storage.warehouse import utc_now

ZERO_SHOT_TEMPLATE = "This is a sound of {label}."  # LAION-CLAP's zero-shot prompt
NO_AUDIO = "item has no clip to score against (template item)"
NO_TEXT = "no CLAP-checkable text for this subtask"
NO_CAPTION = "clip has no caption, title, description or tags"
_OPTION_PREFIX_RE = re.compile(r"^\s*\(?([a-z])\)\s*", re.IGNORECASE)


class ClapScoreRecord(BaseModel):
    """A row of `clap_scores` (warehouse/tables/clap_scores.sql)."""

    model_config = ConfigDict(extra="forbid")

    item_id: str
    task: str
    clip_id: str | None
    text: str | None
    text_role: str
    is_primary: bool
    backend: str | None
    checkpoint: str | None
    crop_policy: str | None
    score: float | None
    unscored_reason: str | None
    run_id: str
    scored_at: datetime


class ScoreSummary(BaseModel):
    task: str
    backend: str
    checkpoint: str
    crop_policy: str
    run_id: str
    items: int = 0
    items_scored: int = 0
    items_unscored: int = 0
    pairs: int = 0
    pairs_scored: int = 0
    texts_computed: int = 0
    clips_requested: int = 0
    clips_cached: int = 0
    clips_computed: int = 0
    clips_failed: int = 0
    clips_decoded: int = 0
    unscored_by_reason: dict[str, int] = Field(default_factory=dict)


@dataclass(frozen=True)
class ScorePair:
    """One text to score against one clip (clip_id None: nothing to score)."""

    role: str
    clip_id: str | None
    text: str | None
    primary: bool = False
    reason: str | None = None


def zero_shot(label: str) -> str:
    return ZERO_SHOT_TEMPLATE.format(label=label)


def option_letter(option: str) -> str | None:
    match = _OPTION_PREFIX_RE.match(option or "")
    return match.group(1).lower() if match else None


def option_text(option: str) -> str:
    return _OPTION_PREFIX_RE.sub("", option or "").strip()


def reference_text(clip: dict[str, Any] | None) -> str | None:
    """The clip's own label text: first caption, else title, description, tags."""
    if not clip:
        return None
    for caption in clip.get("captions") or []:
        if caption and caption.strip():
            return caption.strip()
    for field in ("title", "description"):
        if clip.get(field) and str(clip[field]).strip():
            return str(clip[field]).strip()
    tags = [t for t in clip.get("tags") or [] if t]
    return ", ".join(tags) if tags else None


def animal_vocabulary_names() -> list[str]:
    """The broad animals AuditoryBench ships (pipeline/tasks/auditorybench/data/animals.csv)."""
    from pipeline.tasks.auditorybench.knowledge import animal_vocabulary

    return sorted(animal_vocabulary().animals)


def _facts(item: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(item.get("facts") or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _animal_pairs(item: dict[str, Any], vocabulary: Sequence[str]) -> list[ScorePair]:
    clip = item["clip_ids"][0]
    spans = item.get("spans") or []
    pairs = [ScorePair("span", clip, spans[0], primary=True)] if spans else []
    pairs += [ScorePair(f"vocab:{animal}", clip, zero_shot(animal)) for animal in vocabulary]
    return pairs


def _pitch_pairs(item: dict[str, Any]) -> list[ScorePair]:
    clips, spans = item["clip_ids"], item.get("spans") or []
    if len(clips) < 2 or len(spans) < 2:
        return [ScorePair("none", None, None, reason="pitch item needs two clips and two spans")]
    return [
        ScorePair("span1", clips[0], spans[0], primary=True),
        ScorePair("span2", clips[1], spans[1], primary=True),
        ScorePair("span1_other", clips[1], spans[0]),
        ScorePair("span2_other", clips[0], spans[1]),
    ]


def _reasonaqa_pairs(item: dict[str, Any]) -> list[ScorePair]:
    clip = item["clip_ids"][0]
    if item.get("subtask") == "mcq" and item.get("options"):
        correct = option_letter(item.get("answer") or "")
        return [
            ScorePair(
                f"option_{option_letter(o) or i}",
                clip,
                option_text(o),
                primary=option_letter(o) == correct,
            )
            for i, o in enumerate(item["options"])
        ]
    if item.get("subtask") == "detail" and item.get("answer"):
        return [ScorePair("answer", clip, item["answer"], primary=True)]
    return [ScorePair("none", None, None, reason=f"{NO_TEXT} ({item.get('subtask')})")]


def _nlar_pairs(item: dict[str, Any]) -> list[ScorePair]:
    facts = _facts(item)
    event = facts.get("event")
    clips = item["clip_ids"]
    if not event or len(clips) < 2:
        return [ScorePair("none", None, None, reason="nlar item without an event and two clips")]
    evidence = facts.get("evidence") or {}
    pairs = []
    for position, clip in zip(("first", "second"), clips, strict=False):
        present = (evidence.get(position) or {}).get("present")
        pairs.append(
            ScorePair(f"event_{position}", clip, zero_shot(event), primary=present is True)
        )
    return pairs


def item_pairs(
    item: dict[str, Any], vocabulary: Callable[[], Sequence[str]] = animal_vocabulary_names
) -> list[ScorePair]:
    """The (role, clip, text) pairs an item is scored on; see the module table."""
    if not item.get("clip_ids"):
        return [ScorePair("none", None, None, reason=NO_AUDIO)]
    task = item["task"]
    if task == "auditorybench-animal":
        return _animal_pairs(item, vocabulary())
    if task == "auditorybench-pitch":
        return _pitch_pairs(item)
    if task == "reasonaqa":
        return _reasonaqa_pairs(item)
    if task == "nlar":
        return _nlar_pairs(item)
    return [ScorePair("none", None, None, reason=f"no CLAP scoring defined for task {task!r}")]


def current_items(warehouse: Warehouse, task: str) -> list[dict[str, Any]]:
    return warehouse.rows(
        "SELECT item_id, task, subtask, split, clip_ids, input, answer, options, spans, facts "
        "FROM items_current WHERE task = ? AND validation_status = 'valid' ORDER BY item_id",
        [task],
    )


def score_task(
    warehouse: Warehouse,
    task: str,
    scorer: ClapScorer,
    run_id: str,
    *,
    vocabulary: Callable[[], Sequence[str]] = animal_vocabulary_names,
) -> ScoreSummary:
    """Score every current valid item of `task`; replaces the task's scores for this model."""
    summary = ScoreSummary(
        task=task,
        backend=scorer.backend,
        checkpoint=scorer.checkpoint_id,
        crop_policy=scorer.crop_policy,
        run_id=run_id,
    )
    items = current_items(warehouse, task)
    summary.items = len(items)
    pairs_by_item = {item["item_id"]: item_pairs(item, vocabulary) for item in items}
    clip_ids = sorted({p.clip_id for ps in pairs_by_item.values() for p in ps if p.clip_id})
    clips = {
        row["clip_id"]: row
        for row in warehouse.rows(
            "SELECT clip_id, any_value(captions) AS captions, any_value(title) AS title, "
            "any_value(description) AS description, any_value(tags) AS tags FROM clips "
            "WHERE clip_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY clip_id",
            [clip_ids],
        )
    }
    for item_id, pairs in pairs_by_item.items():
        item_clips = list(dict.fromkeys(p.clip_id for p in pairs if p.clip_id))
        for index, clip_id in enumerate(item_clips, start=1):
            role = "caption" if len(item_clips) == 1 else f"caption{index}"
            text = reference_text(clips.get(clip_id))
            pairs.append(ScorePair(role, clip_id, text, reason=None if text else NO_CAPTION))
        pairs_by_item[item_id] = pairs

    embedded = ensure_clip_embeddings(warehouse, scorer, clip_ids, run_id)
    summary.clips_requested = embedded.requested
    summary.clips_cached = embedded.cached
    summary.clips_computed = embedded.computed
    summary.clips_failed = embedded.failed + embedded.known_failures
    summary.clips_decoded = embedded.decoded
    ids, matrix = load_clip_embeddings(
        warehouse, scorer.backend, scorer.checkpoint_id, clip_ids, scorer.crop_policy
    )
    audio = dict(zip(ids, matrix, strict=True))
    failed = clip_failure_reasons(warehouse, [c for c in clip_ids if c not in audio])
    texts, summary.texts_computed = embed_texts_cached(
        warehouse,
        scorer,
        [p.text for ps in pairs_by_item.values() for p in ps if p.text and p.clip_id in audio],
        run_id,
    )

    now = utc_now()
    rows: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    item_task = {item["item_id"]: item["task"] for item in items}
    for item_id, pairs in pairs_by_item.items():
        item_unscored = None
        for pair in pairs:
            score, reason = None, pair.reason
            if reason is None and pair.clip_id not in audio:
                reason = f"audio {failed.get(pair.clip_id, 'not embedded')}"
            if reason is None and pair.text:
                score = float(np.dot(audio[pair.clip_id], texts[pair.text]))
            summary.pairs += 1
            summary.pairs_scored += score is not None
            if score is None and (pair.primary or pair.clip_id is None) and item_unscored is None:
                item_unscored = reason
            rows.append(
                ClapScoreRecord(
                    item_id=item_id,
                    task=item_task[item_id],
                    clip_id=pair.clip_id,
                    text=pair.text,
                    text_role=pair.role,
                    is_primary=pair.primary,
                    backend=scorer.backend,
                    checkpoint=scorer.checkpoint_id,
                    crop_policy=scorer.crop_policy,
                    score=score,
                    unscored_reason=reason,
                    run_id=run_id,
                    scored_at=now,
                ).model_dump()
            )
        if item_unscored:
            summary.items_unscored += 1
            reasons[reason_code(item_unscored)] += 1
        else:
            summary.items_scored += 1
    summary.unscored_by_reason = dict(reasons)
    _write_scores(warehouse, task, scorer, rows, set(pairs_by_item))
    return summary


def reason_code(reason: str) -> str:
    """A reason's stable head (before details such as paths and numbers) for counting."""
    head = reason.split(":", 1)[0].strip()
    return re.sub(r"\s*\(.*\)$", "", head)


def scores_partition(task: str, backend: str, checkpoint: str, crop_policy: str) -> str:
    return f"task={task}/model={model_key(backend, checkpoint, crop_policy)}"


def _write_scores(
    warehouse: Warehouse,
    task: str,
    scorer: ClapScorer,
    rows: list[dict[str, Any]],
    item_ids: set[str],
) -> None:
    """Replace this model's partition for the task, carrying over rows of other items
    (earlier generations), so old versions' scores stay queryable."""
    partition = scores_partition(task, scorer.backend, scorer.checkpoint_id, scorer.crop_policy)
    path = warehouse.partition_path("clap_scores", partition)
    kept: pa.Table | None = None
    if path.exists():
        import pyarrow.parquet as pq

        previous = pq.read_table(path)
        mask = pa.array([i not in item_ids for i in previous.column("item_id").to_pylist()])
        kept = previous.filter(mask)
    with warehouse.writer("clap_scores", partition) as writer:
        if kept is not None and kept.num_rows:
            writer.write(kept)
        writer.write(rows)
