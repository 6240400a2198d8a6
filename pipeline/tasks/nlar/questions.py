"""NLAR question-answer pairs for clip pairs: ask, check, re-ask, and the swapped twins.

Per pair the first `QA_PER_PAIR` slots of `planning.slot_queue` go into one `nlar/qa`
request. Every reply entry is checked (below); while fewer than `QA_PER_PAIR` passed and
fewer than `max_asks_per_pair` asks were made, the pair is asked again with its failed
slots first, then the next slots of its queue, until five pass (APT asks until five
question-answer pairs pass its check). Each ask renders the `attempt` number into the
prompt, so it is its own cached call: a rerun replays the same asks from the cache. A
reply that declines, is refused or fails at the endpoint ends the pair's asks; a reply
that breaks the schema is asked again.

Checks of one entry (reason codes in `items.validation_reasons`): non-empty, 4-45 words,
English, not a question the pair already has (`duplicate_exact` / `duplicate_normalized`,
as the run's dedup would reject it later); annotation kinds must name their event (`event_not_named`), acoustic ones are
checked by `acoustic.check`; every order word must map to clip 1 / clip 2
(`order_reference`, see `ordinals`); the answer must be in the kind's answer set and
equal the label from the annotations (and descriptions, for acoustic questions).

Every passing item gets its swapped twin: the clips in the other order, clip references
in the question swapped ("the first recording" <-> "the second recording"), the answer
transformed (first <-> second for order-dependent kinds) and checked against the label
recomputed on the swapped clips (`swap_inconsistent`). Originals carry
`facts.independent = true`; twins `independent = false` and `twin_of` (the original's
item id), so accuracy can be reported on independent items only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.tasks.common import validators as v
from pipeline.tasks.common.base import (
    ItemDraft,
    TaskContext,
    draft_lineage,
    item_id,
    llm_outcome_reasons,
)
from pipeline.tasks.common.dedup import normalize_text
from pipeline.tasks.nlar import acoustic, labels, ordinals
from pipeline.tasks.nlar.events import EventAnnotation
from pipeline.tasks.nlar.planning import AnswerTally, slot_queue
from pipeline.tasks.reasonaqa.lexicon import event_by_name

if TYPE_CHECKING:
    from pipeline.llm import LLMResult

TASK_ID = "nlar"
PROMPT_QA = "nlar/qa"
QA_PER_PAIR = 5
DEFAULT_MAX_ASKS_PER_PAIR = 3

# Reason codes this module adds (items.validation_reasons).
SLOT_MISSING = "slot_missing"  # the reply has no question for a planned slot
ANSWER_NOT_IN_SET = "answer_not_in_set"  # answer outside the slot's closed answer set
ANSWER_MISMATCH = "answer_mismatch"  # answer differs from the label the annotations give
EVENT_NOT_NAMED = "event_not_named"  # the question does not name its sound event
ORDER_REFERENCE = "order_reference"  # an order word that does not map to clip 1 / clip 2
SWAP_INCONSISTENT = "swap_inconsistent"  # swapped answer differs from the recomputed label

Annotations = Mapping[str, Mapping[str, EventAnnotation]]
# Pair-level outcomes after which asking again would not help.
_FINAL_OUTCOMES = frozenset({v.LLM_DECLINED, v.LLM_REFUSED, v.LLM_ERROR, v.PROMPT_TOO_LARGE})
_CONTENT_WORD_RE = re.compile(r"[a-z]{4,}")


@dataclass
class PairState:
    first: str
    second: str
    queue: list[labels.Slot]
    asked: int = 0  # queue entries handed out so far
    passed: int = 0
    pending: list[labels.Slot] = field(default_factory=list)  # slots of the next ask
    questions: dict[str, str] = field(default_factory=dict)  # normalised -> passed question


def event_lines(
    events: Mapping[str, EventAnnotation], descriptions: Mapping[str, Mapping[str, Any]]
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


def usable_descriptions(descriptions: Mapping[str, Mapping[str, Any]]) -> dict[str, str | None]:
    return {name: d["description"] for name, d in descriptions.items()}


def qa_request_variables(
    state: PairState,
    attempt: int,
    annotations: Annotations,
    descriptions: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    return {
        "events1": event_lines(annotations[state.first], descriptions),
        "events2": event_lines(annotations[state.second], descriptions),
        "slots": [
            {
                "slot": index,
                "kind": slot.kind,
                "kind_hint": labels.KIND_HINTS[slot.kind],
                "event": slot.event,
                "answer_set": ", ".join(labels.ANSWER_SETS[slot.kind]),
            }
            for index, slot in enumerate(state.pending)
        ],
        "attempt": attempt,
    }


def qa_items(
    ctx: TaskContext,
    pairs: list[tuple[str, str]],
    annotations: Annotations,
    descriptions: Mapping[str, Mapping[str, Any]],
    split_of: Mapping[str, str],
    max_asks_per_pair: int = DEFAULT_MAX_ASKS_PER_PAIR,
) -> list[ItemDraft]:
    from pipeline.llm import LLMRequest

    described = {name for name, d in descriptions.items() if d["description"]}
    tally = AnswerTally()
    states: list[PairState] = []
    for first, second in pairs:
        queue = slot_queue(annotations[first], annotations[second], described, tally)
        state = PairState(first, second, queue, asked=min(QA_PER_PAIR, len(queue)))
        state.pending = queue[: state.asked]
        tally.add(state.pending, annotations[first], annotations[second])
        states.append(state)
    ctx.notes["pairs_without_slots"] = sum(not s.queue for s in states)
    clip_paths = {row["clip_id"]: row["audio_path"] for row in ctx.clips("source = 'clotho-aqa'")}
    text_of = usable_descriptions(descriptions)
    drafts: list[ItemDraft] = []
    asks_by_attempt: list[int] = []
    for attempt in range(max_asks_per_pair):
        active = [s for s in states if s.pending]
        if not active:
            break
        asks_by_attempt.append(len(active))
        requests = [
            LLMRequest(
                item_key=f"pair:{s.first}|{s.second}:ask{attempt}",
                prompt=PROMPT_QA,
                variables=qa_request_variables(s, attempt, annotations, descriptions),
                seed=ctx.seed,
            )
            for s in active
        ]
        for state, result in zip(active, ctx.run_llm(requests), strict=True):
            failed = []
            for index, slot in enumerate(state.pending):
                draft = slot_draft(
                    slot,
                    index,
                    attempt,
                    state,
                    split_of[state.first],
                    result,
                    annotations,
                    text_of,
                    clip_paths,
                )
                if not draft.reasons:
                    # A question the pair already has would be a duplicate item: ask again.
                    repeated = state.questions.get(normalize_text(draft.input or ""))
                    if repeated is not None:
                        exact = repeated == draft.input
                        draft.reasons = [v.DUPLICATE_EXACT if exact else v.DUPLICATE_NORMALIZED]
                drafts.append(draft)
                if draft.reasons:
                    failed.append(slot)
                else:
                    state.passed += 1
                    state.questions[normalize_text(draft.input or "")] = draft.input or ""
                    drafts.append(swapped_draft(draft, slot, annotations))
            state.pending = []
            need = QA_PER_PAIR - state.passed
            if need <= 0 or set(llm_outcome_reasons(result)) & _FINAL_OUTCOMES:
                continue
            state.pending = failed[:need]
            fresh = state.queue[state.asked : state.asked + need - len(state.pending)]
            state.asked += len(fresh)
            state.pending += fresh
    ctx.notes["qa_asks_by_attempt"] = asks_by_attempt
    return drafts


def names_event(question: str, event: str) -> bool:
    """The question names the event: its lexicon words, or one of its own content words."""
    known = event_by_name(event)
    if known is not None and known.regex.search(question):
        return True
    words = set(_CONTENT_WORD_RE.findall(event.lower()))
    return bool(words & set(_CONTENT_WORD_RE.findall(question.lower())))


def _facts(
    slot: labels.Slot,
    first: str,
    second: str,
    annotations: Annotations,
    descriptions: Mapping[str, str | None],
    clip_paths: Mapping[str, str],
) -> dict[str, Any]:
    a, b = annotations[first].get(slot.event), annotations[second].get(slot.event)
    return {
        "kind": slot.kind,
        "family": labels.FAMILY_OF[slot.kind],
        "event": slot.event,
        "answer_type": labels.ANSWER_TYPES[slot.kind],
        "order_dependent": slot.kind in labels.ORDER_DEPENDENT,
        "swapped": False,
        "independent": True,
        "twin_of": None,
        "audio_paths": [clip_paths.get(first), clip_paths.get(second)],
        "evidence": {
            "first": a.as_fact() if a else None,
            "second": b.as_fact() if b else None,
        },
        "description": descriptions.get(slot.event),
    }


def slot_draft(
    slot: labels.Slot,
    index: int,
    attempt: int,
    state: PairState,
    split: str,
    result: LLMResult,
    annotations: Annotations,
    descriptions: Mapping[str, str | None],
    clip_paths: Mapping[str, str],
) -> ItemDraft:
    """One reply entry as an item, with every check's reason code."""
    first, second = state.first, state.second
    facts = _facts(slot, first, second, annotations, descriptions, clip_paths)
    facts.update(slot=index, attempt=attempt)
    expected: str | None = None
    if slot.kind != acoustic.KIND:
        expected = labels.label(
            slot.kind, annotations[first].get(slot.event), annotations[second].get(slot.event)
        )
    facts["expected_answer"] = expected
    draft = ItemDraft(
        split=split,  # type: ignore[arg-type]
        generation_key=f"qa:{slot.kind}:{slot.event}:ask{attempt}",
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
        if slot.kind == acoustic.KIND:
            feature = " ".join(str(entry.get("feature") or "").split())
            feature_reasons, expected, feature_facts = acoustic.check(
                question, feature, annotations[first], annotations[second], descriptions
            )
            reasons += feature_reasons
            # The draft holds its own copy of the facts (pydantic copies on validation).
            draft.facts.update(feature_facts, expected_answer=expected)
        elif not names_event(question, slot.event):
            reasons.append(EVENT_NOT_NAMED)
        if ordinals.unmapped_order_words(question):
            reasons.append(ORDER_REFERENCE)
    if answer and not labels.answer_in_set(slot.kind, answer):
        reasons.append(ANSWER_NOT_IN_SET)
    elif answer and expected is not None and answer != expected:
        reasons.append(ANSWER_MISMATCH)
    draft.reasons = list(dict.fromkeys(reasons))
    return draft


def _swapped_expected(
    original: ItemDraft, slot: labels.Slot, annotations: Annotations
) -> str | None:
    """The label recomputed with the clips in the other order."""
    first, second = original.clip_ids
    if slot.kind == acoustic.KIND:
        support = original.facts.get("feature_support")
        if not support:
            return None
        return acoustic.label(support["second"]["support"], support["first"]["support"])
    return labels.label(
        slot.kind, annotations[second].get(slot.event), annotations[first].get(slot.event)
    )


def swapped_draft(
    original: ItemDraft,
    slot: labels.Slot,
    annotations: Annotations,
) -> ItemDraft:
    """The same question with the clips in the other order and the answer transformed."""
    first, second = original.clip_ids
    answer = labels.swap_answer(slot.kind, original.answer or "")
    expected = _swapped_expected(original, slot, annotations)
    facts = {
        **original.facts,
        "swapped": True,
        "independent": False,
        "twin_of": item_id(
            TASK_ID, original.clip_ids, original.prompt_version, original.generation_key
        ),
        "audio_paths": list(reversed(original.facts["audio_paths"])),
        "evidence": {
            "first": original.facts["evidence"]["second"],
            "second": original.facts["evidence"]["first"],
        },
        "expected_answer": expected,
    }
    if "feature_support" in original.facts:
        support = original.facts["feature_support"]
        facts["feature_support"] = {"first": support["second"], "second": support["first"]}
    return original.model_copy(
        update={
            "generation_key": f"{original.generation_key}:swapped",
            "clip_ids": [second, first],
            "input": ordinals.swap_clip_references(original.input or ""),
            "answer": answer,
            "facts": facts,
            "reasons": [] if answer == expected else [SWAP_INCONSISTENT],
        }
    )
