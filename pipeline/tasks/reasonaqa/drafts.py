"""ReasonAQA item drafts from LLM replies: MCQ, detail, difference tiers, entailment; each
with its validators (reason codes below and in pipeline.tasks.common.validators)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipeline.tasks.common import validators as v
from pipeline.tasks.common.base import (
    ItemDraft,
    draft_lineage,
    llm_outcome_reasons,
    stable_hash,
)
from pipeline.tasks.common.dedup import normalize_text
from pipeline.tasks.reasonaqa import rules
from pipeline.tasks.reasonaqa.lexicon import events_in_text
from pipeline.tasks.reasonaqa.release import (
    DIFFERENCE_INSTRUCTION,
    DIFFERENCE_TIERS,
    ENTAILMENT_ANSWER,
    ENTAILMENT_LABELS,
    ENTAILMENT_OPTIONS,
    entailment_input,
)

if TYPE_CHECKING:
    from pipeline.llm import LLMResult

LETTERS = ("a", "b", "c", "d")

# Reason codes the ReasonAQA drafts add to the common ones (pipeline.tasks.common.validators).
DISTRACTOR_IN_CAPTIONS = "distractor_in_captions"  # a wrong option is supported by the captions
ANSWER_NOT_GROUNDED = "answer_not_grounded"  # the answer shares no content word with the captions
NOT_ONE_SENTENCE = "not_one_sentence"  # the one-sentence tier has several sentences
COPIES_CAPTION = "copies_caption"  # a hypothesis is a caption copied verbatim (normalised)

_SENTENCE_END_RE = re.compile(r"[.!?](?:\s+|$)")
_CONTENT_WORD_RE = re.compile(r"[a-z]{4,}")


def clip_info(clip: dict[str, Any]) -> dict[str, Any]:
    """What an item keeps about its clip (facts.clips): enough for the Mellow export."""
    return {
        "clip_id": clip["clip_id"],
        "source": clip["source"],
        "source_split": clip.get("source_split"),
        "audio_path": clip["audio_path"],
        "captions": list(clip.get("captions") or []),
    }


# ---- item drafts ---------------------------------------------------------------------


def lay_out_mcq(
    question: str, correct: str, distractors: Sequence[str], correct_index: int
) -> tuple[str, list[str], str]:
    """(input, lettered options, answer) with the correct option at `correct_index`, or
    last when a malformed reply has too few distractors (the draft is then rejected for
    its option count, not crashed on)."""
    texts = list(distractors)
    index = min(correct_index, len(texts))
    texts.insert(index, correct)
    options = [f"{letter}) {text}" for letter, text in zip(LETTERS, texts, strict=False)]
    return f"{question} {' '.join(options)}", options, options[index]


def mcq_draft(clip: dict[str, Any], split: str, focus: str, result: LLMResult) -> ItemDraft:
    captions = list(clip["captions"])
    draft = ItemDraft(
        split=split,  # type: ignore[arg-type]
        generation_key=f"mcq:{focus}",
        subtask="mcq",
        clip_ids=[clip["clip_id"]],
        focus=focus,
        **draft_lineage(result),
    )
    draft.reasons = llm_outcome_reasons(result)
    if draft.reasons:
        draft.facts = {"clips": [clip_info(clip)]}
        return draft
    parsed = result.parsed or {}
    question = " ".join(str(parsed.get("question") or "").split())
    correct = " ".join(str(parsed.get("correct") or "").split())
    distractors = [" ".join(str(d).split()) for d in parsed.get("distractors") or []]
    reasons = v.check_nonempty(question, correct)
    if len(distractors) != 3 or len({normalize_text(t) for t in [correct, *distractors]}) != 4:
        reasons.append(v.OPTION_COUNT)
    if any(rules.mentioned_in_captions(d, captions) for d in distractors):
        reasons.append(DISTRACTOR_IN_CAPTIONS)
    if question:
        reasons += v.check_length(question, 3, 40) + v.check_language(question)
        if correct:
            reasons += v.check_answer_not_leaked(question, correct)
    if correct and len(correct.split()) > 15:
        reasons.append(v.TOO_LONG)
    index = int(stable_hash(clip["clip_id"], "letter", length=8), 16) % len(LETTERS)
    text, options, answer = lay_out_mcq(question, correct, distractors[:3], index)
    draft.input, draft.options, draft.answer = text, options, answer
    reasons += v.check_option_count(options, len(LETTERS)) + v.check_answer_in_options(
        answer, options
    )
    draft.reasons = list(dict.fromkeys(reasons))
    draft.facts = {
        "clips": [clip_info(clip)],
        "question": question,
        "correct": correct,
        "distractors": distractors,
        "letter": answer[:1],
    }
    return draft


def _stems(text: str) -> set[str]:
    # A 4-letter prefix folds inflections (barks / barking, bells / bell) well enough here.
    return {word[:4] for word in _CONTENT_WORD_RE.findall(text.lower())}


def grounded(answer: str, captions: Sequence[str]) -> bool:
    """The answer names a sound event or shares a content word (stem) with the captions."""
    caption_events = {event.event for event, _ in rules.clip_events(list(captions))}
    if caption_events & {event.event for event in events_in_text(answer)}:
        return True
    return bool(_stems(" ".join(captions)) & _stems(answer))


def detail_draft(clip: dict[str, Any], split: str, focus: str, result: LLMResult) -> ItemDraft:
    draft = ItemDraft(
        split=split,  # type: ignore[arg-type]
        generation_key=f"detail:{focus}",
        subtask="detail",
        clip_ids=[clip["clip_id"]],
        focus=focus,
        facts={"clips": [clip_info(clip)]},
        **draft_lineage(result),
    )
    draft.reasons = llm_outcome_reasons(result)
    if draft.reasons:
        return draft
    parsed = result.parsed or {}
    draft.input = " ".join(str(parsed.get("question") or "").split())
    draft.answer = " ".join(str(parsed.get("answer") or "").split())
    reasons = v.check_nonempty(draft.input, draft.answer)
    if not reasons:
        reasons += v.check_length(draft.input, 3, 40) + v.check_language(draft.input)
        reasons += v.check_length(draft.answer, 8, 250) + v.check_language(draft.answer)
        if not grounded(draft.answer, clip["captions"]):
            reasons.append(ANSWER_NOT_GROUNDED)
    draft.reasons = list(dict.fromkeys(reasons))
    return draft


def difference_drafts(
    first: dict[str, Any], second: dict[str, Any], split: str, result: LLMResult
) -> list[ItemDraft]:
    outcome = llm_outcome_reasons(result)
    parsed = result.parsed or {}
    drafts = []
    for tier in DIFFERENCE_TIERS:
        question = DIFFERENCE_INSTRUCTION[tier]
        draft = ItemDraft(
            split=split,  # type: ignore[arg-type]
            generation_key=f"difference-{tier}",
            subtask=f"difference-{tier}",
            clip_ids=[first["clip_id"], second["clip_id"]],
            input=question,
            focus="events",
            facts={"clips": [clip_info(first), clip_info(second)], "tier": tier},
            reasons=list(outcome),
            **draft_lineage(result),
        )
        if not outcome:
            answer = " ".join(str(parsed.get(tier) or "").split())
            draft.answer = answer
            reasons = v.check_nonempty(answer)
            if answer:
                words = len(answer.split())
                if tier == "short" and words > 8:
                    reasons.append(v.TOO_LONG)
                if tier == "sentence":
                    reasons += v.check_length(answer, 4, 45) + v.check_language(answer)
                    if len(_SENTENCE_END_RE.findall(answer.strip())) > 1:
                        reasons.append(NOT_ONE_SENTENCE)
                if tier == "detailed":
                    reasons += v.check_length(answer, 15, 250) + v.check_language(answer)
                if not grounded(answer, [*first["captions"], *second["captions"]]):
                    reasons.append(ANSWER_NOT_GROUNDED)
            draft.reasons = list(dict.fromkeys(reasons))
        drafts.append(draft)
    return drafts


def entailment_drafts(clip: dict[str, Any], split: str, result: LLMResult) -> list[ItemDraft]:
    captions = list(clip["captions"])
    base: dict[str, Any] = {
        "split": split,
        "subtask": "entailment",
        "clip_ids": [clip["clip_id"]],
        "focus": "events",
        **draft_lineage(result),
    }
    outcome = llm_outcome_reasons(result)
    hypotheses = (result.parsed or {}).get("hypotheses") or []
    if outcome or not hypotheses:
        return [
            ItemDraft(
                generation_key="entailment:0",
                facts={"clips": [clip_info(clip)]},
                reasons=outcome or [v.EMPTY_FIELD],
                **base,
            )
        ]
    caption_keys = {normalize_text(caption) for caption in captions}
    drafts = []
    for index, entry in enumerate(hypotheses):
        hypothesis = " ".join(str(entry.get("hypothesis") or "").split())
        label = entry.get("label")
        reasons = v.check_nonempty(hypothesis)
        if hypothesis:
            reasons += v.check_length(hypothesis, 3, 40) + v.check_language(hypothesis)
            if normalize_text(hypothesis) in caption_keys:
                reasons.append(COPIES_CAPTION)
        if label not in ENTAILMENT_LABELS:
            reasons.append(v.SCHEMA_INVALID)
        drafts.append(
            ItemDraft(
                generation_key=f"entailment:{index}",
                input=entailment_input(hypothesis),
                answer=ENTAILMENT_ANSWER.get(label, ""),
                options=list(ENTAILMENT_OPTIONS),
                facts={"clips": [clip_info(clip)], "hypothesis": hypothesis, "label": label},
                reasons=list(dict.fromkeys(reasons)),
                **base,
            )
        )
    return drafts
