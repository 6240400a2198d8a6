"""NLAR (natural language audio reasoning, APT paper): questions that need two clips.

Steps, all inside `build_items`:

1. Clotho-AQA clips → per-event annotations (`events.annotate_clip`); issues (ties,
   unusable questions, contradictions) go to `rejects` (stage generate, source nlar).
2. One `nlar/describe_event` request per distinct event name (not per clip), so the
   engine's cache answers every later clip and run; stored with the annotations in
   `nlar_events`.
   APT asked for descriptions under 10 words: a longer one is kept in `nlar_events` with
   status `too_long` and left out of the prompts.
3. Pairs of clips within one split (test pairs only ever from test clips), ranked by
   shared events and capped per split (`select_pairs`).
4. `questions.qa_items`: per pair, five question slots over APT's three families
   (presence, frequency, acoustic features; `planning`), asked in one `nlar/qa` request,
   checked, and re-asked up to `max_asks_per_pair` times until five pass; each passing
   item gets its swapped twin, marked as not independent.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from pipeline.storage.warehouse import utc_now
from pipeline.tasks.common import validators as v
from pipeline.tasks.common.base import (
    ExportOptions,
    ItemDraft,
    Task,
    TaskContext,
    llm_outcome_reasons,
)
from pipeline.tasks.common.records import ItemRecord
from pipeline.tasks.nlar.events import EventAnnotation, annotate_clip
from pipeline.tasks.nlar.pairing import MAX_PAIRS_PER_SPLIT, select_pairs
from pipeline.tasks.nlar.questions import (
    DEFAULT_MAX_ASKS_PER_PAIR,
    PROMPT_QA,
    QA_PER_PAIR,
    TASK_ID,
    qa_items,
)
from pipeline.tasks.reasonaqa.rejects import RejectLog

PROMPT_DESCRIBE = "nlar/describe_event"
MAX_DESCRIPTION_WORDS = 9  # APT: "under 10 words"
EVENTS_TABLE = "nlar_events"


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

    def __init__(self, max_asks_per_pair: int = DEFAULT_MAX_ASKS_PER_PAIR) -> None:
        if max_asks_per_pair < 1:
            raise ValueError(f"max_asks_per_pair must be at least 1, not {max_asks_per_pair}")
        self.max_asks_per_pair = max_asks_per_pair

    def config(self) -> dict[str, Any]:
        from pipeline.tasks.reasonaqa.task import rules_lexicon_version

        return {
            "qa_per_pair": QA_PER_PAIR,
            "max_asks_per_pair": self.max_asks_per_pair,
            "max_description_words": MAX_DESCRIPTION_WORDS,
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
        drafts = qa_items(ctx, pairs, annotations, descriptions, split_of, self.max_asks_per_pair)
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
        by_family: dict[str, int] = {}
        pairs: set[tuple[str, ...]] = set()
        independent = 0
        for row in rows:
            facts = json.loads(row["facts"] or "{}")
            if not facts.get("independent", not facts.get("swapped")):
                continue  # twins repeat their original's answer with the clips swapped
            independent += 1
            pairs.add(tuple(row["clip_ids"]))
            family = facts.get("family", "?")
            by_family[family] = by_family.get(family, 0) + 1
            kind_answers = by_kind.setdefault(row["subtask"], {})
            kind_answers[row["answer"]] = kind_answers.get(row["answer"], 0) + 1
        lines = [
            f"- {kind}: " + ", ".join(f"{a} {n}" for a, n in sorted(answers.items()))
            for kind, answers in sorted(by_kind.items())
        ]
        lines.append("- families: " + ", ".join(f"{f} {n}" for f, n in sorted(by_family.items())))
        lines.append(
            f"- independent items: {independent} of {len(rows)} (the rest are swapped twins);"
            f" {independent / len(pairs) if pairs else 0:.2f} per clip pair that has any"
        )
        return [("NLAR answers by question kind (independent valid items)", "\n".join(lines))]


# ---- event descriptions ---------------------------------------------------------------


def describe_events(
    ctx: TaskContext, annotations: dict[str, dict[str, EventAnnotation]]
) -> dict[str, dict[str, Any]]:
    """One request per distinct event name; returns name -> description + lineage.

    `description` is set only for usable ones (status `ok`); `text` keeps what came back,
    so a description over `MAX_DESCRIPTION_WORDS` words (status `too_long`) is stored in
    `nlar_events` for inspection but never reaches a prompt or a check.
    """
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
        if outcome or not text:
            status = "declined" if outcome == [v.LLM_DECLINED] else "failed"
        else:
            status = "too_long" if len(text.split()) > MAX_DESCRIPTION_WORDS else "ok"
        described[name] = {
            "description": text if status == "ok" else None,
            "text": text or None,
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
                description=described["text"],
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
