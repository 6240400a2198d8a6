"""NLAR (natural language audio reasoning, APT paper): questions that need two clips.

Steps, all inside `build_items`:

1. Clotho-AQA clips → per-event annotations (`events.annotate_clip`); issues (ties,
   unusable questions, contradictions) go to `rejects` (stage generate, source nlar).
2. One `nlar/describe_event` request per distinct event name (not per clip), so the
   engine's cache answers every later clip and run; stored with the annotations in
   `nlar_events`.
3. Pairs of clips within one split (test pairs only ever from test clips), ranked by
   shared events and capped per split; per pair up to five slots (`labels.plan_slots`)
   and one `nlar/qa` request that phrases a question per slot and answers it.
4. Each answer is checked against the label computed from the annotations
   (`answer_mismatch` otherwise), then the swapped pair is emitted with the answer
   transformed (first <-> second for order-dependent kinds) and checked
   (`swap_inconsistent` otherwise).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from pipeline.storage.warehouse import utc_now
from pipeline.tasks.common import validators as v
from pipeline.tasks.common.base import (
    ExportOptions,
    ItemDraft,
    Task,
    TaskContext,
    draft_lineage,
    llm_outcome_reasons,
    stable_hash,
)
from pipeline.tasks.common.records import ItemRecord
from pipeline.tasks.nlar import labels
from pipeline.tasks.nlar.events import EventAnnotation, annotate_clip
from pipeline.tasks.reasonaqa.lexicon import event_by_name
from pipeline.tasks.reasonaqa.rejects import RejectLog

if TYPE_CHECKING:
    from pipeline.llm import LLMResult

TASK_ID = "nlar"
PROMPT_DESCRIBE = "nlar/describe_event"
PROMPT_QA = "nlar/qa"
QA_PER_PAIR = 5
MAX_PAIRS_PER_SPLIT = 200
EVENTS_TABLE = "nlar_events"

# Reason codes this task adds (items.validation_reasons).
SLOT_MISSING = "slot_missing"  # the reply has no question for a planned slot
ANSWER_NOT_IN_SET = "answer_not_in_set"  # answer outside the slot's closed answer set
ANSWER_MISMATCH = "answer_mismatch"  # answer differs from the label the annotations give
EVENT_NOT_NAMED = "event_not_named"  # the question does not name its sound event
ORDER_REFERENCE = "order_reference"  # the question refers to one clip by position only
SWAP_INCONSISTENT = "swap_inconsistent"  # swapped answer differs from the recomputed label

_ORDER_WORD_RE = re.compile(r"\b(first|second|former|latter)\b", re.IGNORECASE)
_CONTENT_WORD_RE = re.compile(r"[a-z]{4,}")


class NLAREventRecord(BaseModel):
    """One row of `nlar_events` (warehouse/tables/nlar_events.sql)."""

    model_config = ConfigDict(extra="forbid")

    clip_id: str
    split: str
    event: str
    present: bool | None = None
    count: int | None = None
    position: str | None = None
    not_positions: list[str]
    evidence: str
    description: str | None = None
    description_status: str
    description_call_key: str | None = None
    description_model: str | None = None
    description_prompt_version: str | None = None
    run_id: str
    created_at: datetime


class NLARTask(Task):
    task_id: ClassVar[str] = TASK_ID
    prompt_names: ClassVar[tuple[str, ...]] = (PROMPT_DESCRIBE, PROMPT_QA)
    export_formats: ClassVar[tuple[str, ...]] = ("nlar-json",)
    label_field: ClassVar[str | None] = "subtask || ' ' || answer"
    # The same question about another (ordered) pair is another item.
    dedup_sql: ClassVar[str] = "array_to_string(clip_ids, '|') || '|' || input"

    def config(self) -> dict[str, Any]:
        from pipeline.tasks.reasonaqa.task import rules_lexicon_version

        return {
            "qa_per_pair": QA_PER_PAIR,
            "max_pairs_per_split": MAX_PAIRS_PER_SPLIT,
            "lexicon": rules_lexicon_version(),
        }

    def dedup_text(self, record: ItemRecord) -> str | None:
        if record.input is None:
            return None
        return "|".join(record.clip_ids) + "|" + record.input

    def build_items(self, ctx: TaskContext) -> list[ItemDraft]:
        rejects = RejectLog(TASK_ID)
        clips = [
            clip
            for clip in ctx.clips("source = 'clotho-aqa'")
            if ctx.wants(ctx.splits.clip_split(clip["clip_id"]))
        ]
        annotations: dict[str, dict[str, EventAnnotation]] = {}
        split_of: dict[str, str] = {}
        for clip in clips:
            split = ctx.splits.clip_split(clip["clip_id"])
            split_of[clip["clip_id"]] = split
            rejects.touch(split)
            events, issues = annotate_clip(clip["qa"] or [])
            annotations[clip["clip_id"]] = {event.event: event for event in events}
            for issue in issues:
                rejects.add(
                    clip,
                    issue.reason,
                    issue.detail,
                    f"{issue.question} -> {list(issue.answers)}",
                    split,
                    field="QuestionText",
                )
        descriptions = describe_events(ctx, annotations)
        write_event_rows(ctx, annotations, split_of, descriptions)
        pairs = select_pairs(ctx, clips, annotations)
        drafts = qa_items(ctx, pairs, annotations, descriptions, split_of)
        rejects.write(ctx.warehouse, ctx.run_id)
        ctx.notes["rejects"] = rejects.counts()
        ctx.notes["pairs"] = len(pairs)
        ctx.notes["events_described"] = sum(1 for d in descriptions.values() if d["status"] == "ok")
        return drafts

    def export(
        self, fmt: str, rows: list[dict[str, Any]], out_dir: Path, options: ExportOptions
    ) -> list[Path]:
        from pipeline.tasks.nlar.export import write_nlar_json

        if fmt != "nlar-json":
            return super().export(fmt, rows, out_dir, options)
        return write_nlar_json(rows, out_dir)

    def report_sections(self, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
        by_kind: dict[str, dict[str, int]] = {}
        swapped = 0
        for row in rows:
            kind_answers = by_kind.setdefault(row["subtask"], {})
            kind_answers[row["answer"]] = kind_answers.get(row["answer"], 0) + 1
            swapped += bool(json.loads(row["facts"] or "{}").get("swapped"))
        lines = [
            f"- {kind}: " + ", ".join(f"{a} {n}" for a, n in sorted(answers.items()))
            for kind, answers in sorted(by_kind.items())
        ]
        lines.append(f"- swapped-order items: {swapped} of {len(rows)}")
        return [("NLAR answers by question kind (valid items)", "\n".join(lines))]


# ---- event descriptions ---------------------------------------------------------------


def describe_events(
    ctx: TaskContext, annotations: dict[str, dict[str, EventAnnotation]]
) -> dict[str, dict[str, Any]]:
    """One request per distinct event name; returns name -> description + lineage."""
    from pipeline.llm import LLMRequest

    names = sorted({name for events in annotations.values() for name in events})
    requests = [
        LLMRequest(
            item_key=f"event:{name}",
            prompt=PROMPT_DESCRIBE,
            variables={"event": name},
            seed=ctx.seed,
        )
        for name in names
    ]
    results = ctx.run_llm(requests)
    described: dict[str, dict[str, Any]] = {}
    for name, result in zip(names, results, strict=True):
        outcome = llm_outcome_reasons(result)
        text = " ".join(str((result.parsed or {}).get("description") or "").split())
        status = (
            "ok"
            if not outcome and text
            else ("declined" if outcome == [v.LLM_DECLINED] else "failed")
        )
        described[name] = {
            "description": text if status == "ok" else None,
            "status": status,
            "call_key": result.call_key,
            "model": result.model,
            "prompt_version": result.prompt_version,
        }
    return described


def write_event_rows(
    ctx: TaskContext,
    annotations: dict[str, dict[str, EventAnnotation]],
    split_of: dict[str, str],
    descriptions: dict[str, dict[str, Any]],
) -> None:
    now = utc_now()
    by_split: dict[str, list[dict[str, Any]]] = {split: [] for split in split_of.values()}
    for clip_id, events in sorted(annotations.items()):
        for name, annotation in events.items():
            described = descriptions[name]
            record = NLAREventRecord(
                clip_id=clip_id,
                split=split_of[clip_id],
                event=name,
                present=annotation.present,
                count=annotation.count,
                position=annotation.position,
                not_positions=list(annotation.not_positions),
                evidence=json.dumps(annotation.evidence, sort_keys=True),
                description=described["description"],
                description_status=described["status"],
                description_call_key=described["call_key"],
                description_model=described["model"],
                description_prompt_version=described["prompt_version"],
                run_id=ctx.run_id,
                created_at=now,
            )
            by_split[split_of[clip_id]].append(record.model_dump())
    for split, rows in sorted(by_split.items()):
        ctx.warehouse.write_partition(EVENTS_TABLE, f"split={split}", rows)


# ---- pairs and questions ----------------------------------------------------------------


def select_pairs(
    ctx: TaskContext,
    clips: list[dict[str, Any]],
    annotations: dict[str, dict[str, EventAnnotation]],
) -> list[tuple[str, str]]:
    """Unordered pairs (first id < second id) of clips in the same split, capped per split.

    Pairs sharing more annotated events rank first (their questions compare something),
    then a seeded hash; `pair_split` refuses pairs across splits.
    """
    by_split: dict[str, list[str]] = {}
    for clip in clips:
        by_split.setdefault(ctx.splits.clip_split(clip["clip_id"]), []).append(clip["clip_id"])
    chosen: list[tuple[str, str]] = []
    for _split, clip_ids in sorted(by_split.items()):
        ordered = sorted(clip_ids)
        candidates = [
            (a, b)
            for i, a in enumerate(ordered)
            for b in ordered[i + 1 :]
            if ctx.splits.pair_split(a, b) is not None
        ]
        candidates.sort(
            key=lambda pair: (
                -len(set(annotations[pair[0]]) & set(annotations[pair[1]])),
                stable_hash(pair, ctx.seed),
            )
        )
        chosen += sorted(candidates[:MAX_PAIRS_PER_SPLIT])
    return chosen


def event_lines(
    events: dict[str, EventAnnotation], descriptions: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    return [
        {
            "event": name,
            "summary": annotation.summary(),
            "description": descriptions[name]["description"] or "",
            # The structured facts behind `summary` (the offline rule reads these).
            "present": annotation.present,
            "count": annotation.count,
            "position": annotation.position,
            "not_positions": list(annotation.not_positions),
        }
        for name, annotation in events.items()
    ]


def qa_items(
    ctx: TaskContext,
    pairs: list[tuple[str, str]],
    annotations: dict[str, dict[str, EventAnnotation]],
    descriptions: dict[str, dict[str, Any]],
    split_of: dict[str, str],
) -> list[ItemDraft]:
    from pipeline.llm import LLMRequest

    planned = [
        (first, second, labels.plan_slots(annotations[first], annotations[second], QA_PER_PAIR))
        for first, second in pairs
    ]
    planned = [(a, b, slots) for a, b, slots in planned if slots]
    ctx.notes["pairs_without_slots"] = len(pairs) - len(planned)
    requests = [
        LLMRequest(
            item_key=f"pair:{first}|{second}",
            prompt=PROMPT_QA,
            variables={
                "events1": event_lines(annotations[first], descriptions),
                "events2": event_lines(annotations[second], descriptions),
                "slots": [
                    {
                        "slot": index,
                        "kind": slot.kind,
                        "kind_hint": labels.KIND_HINTS[slot.kind],
                        "event": slot.event,
                        "answer_set": ", ".join(labels.ANSWER_SETS[slot.kind]),
                    }
                    for index, slot in enumerate(slots)
                ],
            },
            seed=ctx.seed,
        )
        for first, second, slots in planned
    ]
    results = ctx.run_llm(requests)
    clip_paths = {row["clip_id"]: row["audio_path"] for row in ctx.clips("source = 'clotho-aqa'")}
    drafts: list[ItemDraft] = []
    for (first, second, slots), result in zip(planned, results, strict=True):
        split = split_of[first]
        for index, slot in enumerate(slots):
            original = slot_draft(
                slot, index, first, second, split, result, annotations, descriptions, clip_paths
            )
            drafts.append(original)
            if not original.reasons:
                drafts.append(swapped_draft(original, slot, annotations))
    return drafts


def names_event(question: str, event: str) -> bool:
    """The question names the event: its lexicon words, or one of its own content words."""
    known = event_by_name(event)
    if known is not None and known.regex.search(question):
        return True
    words = set(_CONTENT_WORD_RE.findall(event.lower()))
    return bool(words & set(_CONTENT_WORD_RE.findall(question.lower())))


def refers_by_position(question: str) -> bool:
    """'in the first recording ...' makes the question order-bound; 'first or second' does not."""
    found = {word.lower() for word in _ORDER_WORD_RE.findall(question)}
    return bool(found) and not ({"first", "second"} <= found or {"former", "latter"} <= found)


def _facts(
    slot: labels.Slot,
    first: str,
    second: str,
    annotations: dict[str, dict[str, EventAnnotation]],
    descriptions: dict[str, dict[str, Any]],
    clip_paths: dict[str, str],
    swapped: bool,
) -> dict[str, Any]:
    a, b = annotations[first].get(slot.event), annotations[second].get(slot.event)
    return {
        "kind": slot.kind,
        "event": slot.event,
        "answer_type": labels.ANSWER_TYPES[slot.kind],
        "order_dependent": slot.kind in labels.ORDER_DEPENDENT,
        "swapped": swapped,
        "audio_paths": [clip_paths.get(first), clip_paths.get(second)],
        "evidence": {
            "first": a.as_fact() if a else None,
            "second": b.as_fact() if b else None,
        },
        "description": (descriptions.get(slot.event) or {}).get("description"),
    }


def slot_draft(
    slot: labels.Slot,
    index: int,
    first: str,
    second: str,
    split: str,
    result: LLMResult,
    annotations: dict[str, dict[str, EventAnnotation]],
    descriptions: dict[str, dict[str, Any]],
    clip_paths: dict[str, str],
) -> ItemDraft:
    expected = labels.label(
        slot.kind, annotations[first].get(slot.event), annotations[second].get(slot.event)
    )
    facts = _facts(slot, first, second, annotations, descriptions, clip_paths, swapped=False)
    facts["expected_answer"] = expected
    facts["slot"] = index
    draft = ItemDraft(
        split=split,  # type: ignore[arg-type]
        generation_key=f"qa:{slot.kind}:{slot.event}",
        subtask=slot.kind,
        clip_ids=[first, second],
        options=[] if slot.kind == "total_count" else list(labels.ANSWER_SETS[slot.kind]),
        facts=facts,
        **draft_lineage(result),
    )
    outcome = llm_outcome_reasons(result)
    if outcome:
        draft.reasons = outcome
        return draft
    entry = next((e for e in (result.parsed or {}).get("qa") or [] if e.get("slot") == index), None)
    if entry is None:
        draft.reasons = [SLOT_MISSING]
        return draft
    question = " ".join(str(entry.get("question") or "").split())
    answer = " ".join(str(entry.get("answer") or "").lower().split()).rstrip(".")
    draft.input, draft.answer = question, answer
    reasons = v.check_nonempty(question, answer)
    if question:
        reasons += v.check_length(question, 4, 45) + v.check_language(question)
        if not names_event(question, slot.event):
            reasons.append(EVENT_NOT_NAMED)
        if refers_by_position(question):
            reasons.append(ORDER_REFERENCE)
    if answer and not labels.answer_in_set(slot.kind, answer):
        reasons.append(ANSWER_NOT_IN_SET)
    elif answer and answer != expected:
        reasons.append(ANSWER_MISMATCH)
    draft.reasons = list(dict.fromkeys(reasons))
    return draft


def swapped_draft(
    original: ItemDraft, slot: labels.Slot, annotations: dict[str, dict[str, EventAnnotation]]
) -> ItemDraft:
    """The same question with the clips in the other order and the answer transformed."""
    first, second = original.clip_ids
    answer = labels.swap_answer(slot.kind, original.answer or "")
    facts = {
        **original.facts,
        "swapped": True,
        "audio_paths": list(reversed(original.facts["audio_paths"])),
        "evidence": {
            "first": original.facts["evidence"]["second"],
            "second": original.facts["evidence"]["first"],
        },
        "expected_answer": labels.label(
            slot.kind, annotations[second].get(slot.event), annotations[first].get(slot.event)
        ),
    }
    consistent = labels.check_swap(
        slot.kind,
        original.answer or "",
        annotations[first].get(slot.event),
        annotations[second].get(slot.event),
    )
    return original.model_copy(
        update={
            "generation_key": f"{original.generation_key}:swapped",
            "clip_ids": [second, first],
            "answer": answer,
            "facts": facts,
            "reasons": [] if consistent else [SWAP_INCONSISTENT],
        }
    )
