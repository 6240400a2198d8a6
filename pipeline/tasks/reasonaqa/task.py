"""ReasonAQA (Mellow): audio question answering built from AudioCaps and Clotho captions.

Item families (`items.subtask`):

* `mcq` - one clip, a question with four options `a) … d)`, one correct; the correct
  letter is assigned by us, rotating over the valid items of each split (finalize hook),
  so every letter is correct within ±1 as often as any other.
* `detail` - one clip, an open question with an answer grounded in its captions.
* `difference-short` / `difference-sentence` / `difference-detailed` - a pair of clips of
  the same source and split, the difference explained in three tiers; the input is the
  release's exact instruction for the tier (`release.DIFFERENCE_INSTRUCTION`).
* `entailment` - one clip, a hypothesis labelled entailment / neutral / contradiction,
  asked as the release's four-option question (answer `a) …`, the label in
  `facts.label`); AudioCaps clips only in `audiocaps_entailment_splits` (the release: test).
* `caption` - one item per reference caption, input "caption first audio" (no LLM,
  model `template`), as the release's captioning files.
* `binary` - Clotho-AQA yes/no questions with the annotators' majority answer (ties are
  recorded in `rejects` with reason `majority_tie`; no LLM involved, model `template`).

`focus` (events, sources, scene, signal, semantics, emotion) is spread round-robin over
each split's clips in a seeded order, separately for `mcq` and `detail`. Every item keeps
the captions it was built from in `facts.clips`, which is also what the `mellow-json`
export reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline.tasks.common import validators as v
from pipeline.tasks.common.base import (
    MODEL_TEMPLATE,
    ExportOptions,
    ItemDraft,
    Task,
    TaskContext,
    draft_lineage,
    llm_outcome_reasons,
    stable_hash,
)
from pipeline.tasks.common.dedup import normalize_text
from pipeline.tasks.common.records import ItemRecord
from pipeline.tasks.reasonaqa import rules
from pipeline.tasks.reasonaqa.aqa_votes import YES_NO, vote_questions
from pipeline.tasks.reasonaqa.lexicon import events_in_text
from pipeline.tasks.reasonaqa.rejects import RejectLog
from pipeline.tasks.reasonaqa.release import (
    AUDIOCAPS_ENTAILMENT_SPLITS,
    CAPTION_INSTRUCTION,
    DIFFERENCE_INSTRUCTION,
    DIFFERENCE_TIERS,
    ENTAILMENT_ANSWER,
    ENTAILMENT_LABELS,
    ENTAILMENT_OPTIONS,
    entailment_input,
)

if TYPE_CHECKING:
    from pipeline.llm import LLMRequest, LLMResult

TASK_ID = "reasonaqa"
PROMPT_MCQ = "reasonaqa/mcq"
PROMPT_DETAIL = "reasonaqa/detail"
PROMPT_DIFFERENCE = "reasonaqa/difference"
PROMPT_ENTAILMENT = "reasonaqa/entailment"
CAPTION_SOURCES = ("audiocaps", "clotho")
LETTERS = ("a", "b", "c", "d")
POOL_SIZE = 8

# Reason codes this task adds to the common ones (pipeline.tasks.common.validators).
DISTRACTOR_IN_CAPTIONS = "distractor_in_captions"  # a wrong option is supported by the captions
ANSWER_NOT_GROUNDED = "answer_not_grounded"  # the answer shares no content word with the captions
NOT_ONE_SENTENCE = "not_one_sentence"  # the one-sentence tier has several sentences
COPIES_CAPTION = "copies_caption"  # a hypothesis is a caption copied verbatim (normalised)
MAJORITY_TIE = "majority_tie"  # rejects: the annotators' answers have no majority
NOT_YES_NO = "not_yes_no"  # rejects: the majority answer of an AQA question is not yes/no
AUDIO_SPLIT_CONFLICT = (
    "audio_split_conflict"  # rejects: AQA clip's audio is in another Clotho split
)

_SENTENCE_END_RE = re.compile(r"[.!?](?:\s+|$)")
_CONTENT_WORD_RE = re.compile(r"[a-z]{4,}")


class ReasonAQATask(Task):
    task_id: ClassVar[str] = TASK_ID
    prompt_names: ClassVar[tuple[str, ...]] = (
        PROMPT_MCQ,
        PROMPT_DETAIL,
        PROMPT_DIFFERENCE,
        PROMPT_ENTAILMENT,
    )
    export_formats: ClassVar[tuple[str, ...]] = ("mellow-json",)
    # Balance is per family: the MCQ letter, the binary and entailment labels; free-text
    # families only count their items.
    label_field: ClassVar[str | None] = (
        "CASE WHEN subtask = 'mcq' THEN 'mcq ' || left(answer, 1) "
        "WHEN subtask IN ('binary', 'entailment') THEN subtask || ' ' || answer ELSE subtask END"
    )
    # Audio QA: the same question about different clips is a different item, so clip ids
    # are part of the duplicate key (clips never cross splits, so neither can a duplicate).
    # Captioning items share one instruction, so their caption is part of the key.
    dedup_sql: ClassVar[str] = (
        "array_to_string(clip_ids, '|') || '|' || input"
        " || CASE WHEN subtask = 'caption' THEN '|' || coalesce(answer, '') ELSE '' END"
    )

    def __init__(
        self, audiocaps_entailment_splits: tuple[str, ...] = AUDIOCAPS_ENTAILMENT_SPLITS
    ) -> None:
        self.audiocaps_entailment_splits = tuple(audiocaps_entailment_splits)

    def config(self) -> dict[str, Any]:
        return {
            "pool_size": POOL_SIZE,
            "lexicon": rules_lexicon_version(),
            "audiocaps_entailment_splits": list(self.audiocaps_entailment_splits),
        }

    def dedup_text(self, record: ItemRecord) -> str | None:
        if record.input is None:
            return None
        key = "|".join(record.clip_ids) + "|" + record.input
        return key + "|" + (record.answer or "") if record.subtask == "caption" else key

    def wants_entailment(self, clip: dict[str, Any], split: str) -> bool:
        return clip["source"] != "audiocaps" or split in self.audiocaps_entailment_splits

    # ---- generation -------------------------------------------------------------

    def build_items(self, ctx: TaskContext) -> list[ItemDraft]:
        rejects = RejectLog(TASK_ID)
        # Distractor and neutral candidates come from every caption clip, whatever split:
        # they are text only, never audio, so they cannot leak a clip into another split.
        all_caption_clips = ctx.clips("source IN ('audiocaps', 'clotho') AND len(captions) > 0")
        clips = [c for c in all_caption_clips if ctx.wants(ctx.splits.clip_split(c["clip_id"]))]
        drafts: list[ItemDraft] = []
        drafts += self._single_clip_items(ctx, clips, all_caption_clips)
        drafts += self._difference_items(ctx, clips)
        drafts += caption_items(ctx, clips)
        aqa = [
            clip
            for clip in ctx.clips("source = 'clotho-aqa'")
            if ctx.wants(ctx.splits.clip_split(clip["clip_id"]))
        ]
        clotho_splits = {
            PurePosixPath(clip["audio_path"]).name: ctx.splits.clip_split(clip["clip_id"])
            for clip in ctx.clips("source = 'clotho'")
        }
        drafts += binary_items(ctx, aqa, rejects, clotho_splits)
        rejects.write(ctx.warehouse, ctx.run_id)
        ctx.notes["rejects"] = rejects.counts()
        return drafts

    def _single_clip_items(
        self, ctx: TaskContext, clips: list[dict[str, Any]], pool_clips: list[dict[str, Any]]
    ) -> list[ItemDraft]:
        by_split = clips_by_split(ctx, clips)
        focus_of: dict[tuple[str, str], str] = {}
        for split_clips in by_split.values():
            ordered = sorted(split_clips, key=lambda c: stable_hash(c["clip_id"], ctx.seed))
            for rank, clip in enumerate(ordered):
                focus_of[(clip["clip_id"], "mcq")] = rules.FOCUSES[rank % len(rules.FOCUSES)]
                focus_of[(clip["clip_id"], "detail")] = rules.FOCUSES[
                    (rank + len(rules.FOCUSES) // 2) % len(rules.FOCUSES)
                ]
        from pipeline.llm import LLMRequest

        pool = PoolIndex(pool_clips, ctx.seed)
        requests: list[LLMRequest] = []
        for clip in clips:
            captions = list(clip["captions"])
            mcq_focus = focus_of[(clip["clip_id"], "mcq")]
            detail_focus = focus_of[(clip["clip_id"], "detail")]
            requests.append(
                LLMRequest(
                    item_key=f"{clip['clip_id']}|mcq",
                    prompt=PROMPT_MCQ,
                    variables={
                        "captions": captions,
                        "focus": mcq_focus,
                        "focus_hint": rules.FOCUS_HINTS[mcq_focus],
                        "distractor_pool": pool.distractor_pool(mcq_focus, clip),
                    },
                    seed=ctx.seed,
                )
            )
            requests.append(
                LLMRequest(
                    item_key=f"{clip['clip_id']}|detail",
                    prompt=PROMPT_DETAIL,
                    variables={
                        "captions": captions,
                        "focus": detail_focus,
                        "focus_hint": rules.FOCUS_HINTS[detail_focus],
                    },
                    seed=ctx.seed,
                )
            )
            if self.wants_entailment(clip, ctx.splits.clip_split(clip["clip_id"])):
                requests.append(
                    LLMRequest(
                        item_key=f"{clip['clip_id']}|entailment",
                        prompt=PROMPT_ENTAILMENT,
                        variables={
                            "captions": captions,
                            "other_events": pool.other_events(clip),
                        },
                        seed=ctx.seed,
                    )
                )
        results = iter(ctx.run_llm(requests))
        drafts: list[ItemDraft] = []
        for clip in clips:
            split = ctx.splits.clip_split(clip["clip_id"])
            mcq, detail = next(results), next(results)
            drafts.append(mcq_draft(clip, split, focus_of[(clip["clip_id"], "mcq")], mcq))
            drafts.append(detail_draft(clip, split, focus_of[(clip["clip_id"], "detail")], detail))
            if self.wants_entailment(clip, split):
                drafts += entailment_drafts(clip, split, next(results))
        return drafts

    def _difference_items(self, ctx: TaskContext, clips: list[dict[str, Any]]) -> list[ItemDraft]:
        from pipeline.llm import LLMRequest

        pairs = difference_pairs(ctx, clips)
        requests = [
            LLMRequest(
                item_key=f"{first['clip_id']}|{second['clip_id']}|difference",
                prompt=PROMPT_DIFFERENCE,
                variables={
                    "captions1": list(first["captions"]),
                    "captions2": list(second["captions"]),
                },
                seed=ctx.seed,
            )
            for first, second in pairs
        ]
        results = ctx.run_llm(requests)
        drafts: list[ItemDraft] = []
        for (first, second), result in zip(pairs, results, strict=True):
            split = ctx.splits.pair_split(first["clip_id"], second["clip_id"])
            assert split is not None  # difference_pairs only forms same-split pairs
            drafts += difference_drafts(first, second, split, result)
        return drafts

    # ---- after dedup: balance the correct letter ------------------------------------

    def finalize(self, records: list[ItemRecord]) -> dict[str, int]:
        """Lay out every valid MCQ so the correct letter rotates a, b, c, d per split."""
        by_split: dict[str, list[ItemRecord]] = {}
        for record in records:
            if record.subtask == "mcq" and record.validation_status == "valid":
                by_split.setdefault(record.split, []).append(record)
        counts: dict[str, int] = {}
        for split, split_records in by_split.items():
            for rank, record in enumerate(sorted(split_records, key=lambda r: r.item_id)):
                facts = record.facts_dict()
                question, options, answer = lay_out_mcq(
                    facts["question"], facts["correct"], facts["distractors"], rank % len(LETTERS)
                )
                facts["letter"] = answer[0]
                record.input, record.options, record.answer = question, options, answer
                record.facts = _dump(facts)
                counts[f"mcq_letter_{answer[0]}_{split}"] = (
                    counts.get(f"mcq_letter_{answer[0]}_{split}", 0) + 1
                )
        return {"mcq_letters": counts} if counts else {}

    # ---- export -----------------------------------------------------------------

    def export(
        self, fmt: str, rows: list[dict[str, Any]], out_dir: Path, options: ExportOptions
    ) -> list[Path]:
        from pipeline.tasks.reasonaqa.export import write_mellow_json

        if fmt != "mellow-json":
            return super().export(fmt, rows, out_dir, options)
        return write_mellow_json(rows, out_dir)

    def report_sections(self, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
        subtasks: dict[str, int] = {}
        focus: dict[str, int] = {}
        letters: dict[str, dict[str, int]] = {}
        for row in rows:
            subtasks[row["subtask"]] = subtasks.get(row["subtask"], 0) + 1
            if row["subtask"] in ("mcq", "detail") and row["focus"]:
                focus[row["focus"]] = focus.get(row["focus"], 0) + 1
            if row["subtask"] == "mcq" and row["answer"]:
                split_letters = letters.setdefault(row["split"], {})
                split_letters[row["answer"][0]] = split_letters.get(row["answer"][0], 0) + 1
        lines = [
            f"- subtasks: {_counts(subtasks)}",
            f"- focus of mcq + detail items (assigned round-robin): {_counts(focus)}",
        ]
        lines += [f"- MCQ correct letters, {split}: {_counts(c)}" for split, c in letters.items()]
        return [("ReasonAQA families", "\n".join(lines))]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "none"


def _dump(facts: dict[str, Any]) -> str:
    return json.dumps(facts, sort_keys=True)


def rules_lexicon_version() -> str:
    from pipeline.tasks.reasonaqa.lexicon import LEXICON_PATH

    return stable_hash(LEXICON_PATH.read_text(encoding="utf-8"), length=12)


# ---- clip selection ------------------------------------------------------------------


def clips_by_split(
    ctx: TaskContext, clips: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for clip in clips:
        grouped.setdefault(ctx.splits.clip_split(clip["clip_id"]), []).append(clip)
    return grouped


def difference_pairs(
    ctx: TaskContext, clips: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each clip paired with its neighbour in a seeded order, within one (source, split).

    n clips give n pairs (a ring) when n > 2, one pair when n == 2; every clip appears
    in at most two pairs, so the pair count grows linearly with the corpus.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for clip in clips:
        groups.setdefault((clip["source"], ctx.splits.clip_split(clip["clip_id"])), []).append(clip)
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for key in sorted(groups):
        ordered = sorted(groups[key], key=lambda c: stable_hash(c["clip_id"], ctx.seed, "pair"))
        count = len(ordered)
        if count < 2:
            continue
        for index in range(count if count > 2 else 1):
            first, second = ordered[index], ordered[(index + 1) % count]
            if ctx.splits.pair_split(first["clip_id"], second["clip_id"]) is not None:
                pairs.append((first, second))
    return pairs


@dataclass(frozen=True)
class ClipProfile:
    """What the distractor pools need from one clip's captions, computed once per clip."""

    clip_id: str
    events: frozenset[str]
    sources: frozenset[str]
    scenes: frozenset[str]  # the scene the captions name or imply, plus event scenes
    temporal: str | None
    moods: frozenset[str]
    main_mood: str | None
    summary: str


def clip_profile(clip: dict[str, Any]) -> ClipProfile:
    captions = list(clip["captions"])
    events = rules.clip_events(captions)
    scene = rules.scene_of(captions, events)
    return ClipProfile(
        clip_id=clip["clip_id"],
        events=frozenset(e.event for e, _ in events),
        sources=frozenset(e.source for e, _ in events),
        scenes=frozenset({scene} if scene else set()) | {e.scene for e, _ in events},
        temporal=rules.temporal_of(captions, events),
        moods=frozenset(e.mood for e, _ in events),
        main_mood=events[0][0].mood if events else None,
        summary=rules.semantic_summary(captions),
    )


class PoolIndex:
    """Phrases heard across the caption corpus, to draw distractors and neutral events from.

    Built once per run (linear in the number of clips); per clip, pools are the corpus
    phrases of a kind minus the clip's own, so the cost per clip does not grow with the
    corpus (semantic summaries are drawn from a bounded, seeded window of other clips).
    """

    SUMMARY_WINDOW = 64

    def __init__(self, clips: list[dict[str, Any]], seed: int) -> None:
        self.seed = seed
        self.profiles = {clip["clip_id"]: clip_profile(clip) for clip in clips}
        self.order = sorted(self.profiles, key=lambda cid: stable_hash(cid, seed, "pool"))
        self.position = {cid: index for index, cid in enumerate(self.order)}
        profiles = list(self.profiles.values())
        self.events = frozenset().union(*(p.events for p in profiles))
        self.sources = frozenset().union(*(p.sources for p in profiles))
        self.scenes = frozenset().union(*(p.scenes for p in profiles))
        self.temporal = frozenset(p.temporal for p in profiles if p.temporal)
        self.main_moods = frozenset(p.main_mood for p in profiles if p.main_mood)

    def _ranked(self, clip_id: str, phrases: set[str] | frozenset[str]) -> list[str]:
        ranked = sorted(phrases, key=lambda phrase: stable_hash(clip_id, phrase, self.seed))
        return ranked[:POOL_SIZE]

    def distractor_pool(self, focus: str, clip: dict[str, Any]) -> list[str]:
        """Phrases of the focus's kind heard in other clips and never named by this clip.

        The offline rule takes its distractors from here; a real LLM is asked to prefer them.
        """
        own = self.profiles.get(clip["clip_id"]) or clip_profile(clip)
        if focus == "events":
            return self._ranked(own.clip_id, self.events - own.events)
        if focus == "sources":
            return self._ranked(own.clip_id, self.sources - own.sources)
        if focus == "scene":
            return self._ranked(own.clip_id, self.scenes - own.scenes)
        if focus == "signal":
            return self._ranked(
                own.clip_id,
                {rules.TEMPORAL_PHRASES[p] for p in self.temporal if p != own.temporal},
            )
        if focus == "emotion":
            return self._ranked(
                own.clip_id,
                {
                    rules.MOOD_PHRASES[m]
                    for m in self.main_moods - own.moods
                    if m in rules.MOOD_PHRASES
                },
            )
        if focus == "semantics":
            return self._summaries(own)
        raise ValueError(f"unknown focus {focus!r}")

    def _summaries(self, own: ClipProfile) -> list[str]:
        """Summaries of clips sharing no event with this one, from a seeded window."""
        start = self.position.get(own.clip_id, 0)
        found: list[str] = []
        for step in range(1, min(len(self.order), self.SUMMARY_WINDOW + 1)):
            other = self.profiles[self.order[(start + step) % len(self.order)]]
            if other.clip_id == own.clip_id or own.events & other.events:
                continue
            if other.summary not in found:
                found.append(other.summary)
            if len(found) == POOL_SIZE:
                break
        return found

    def other_events(self, clip: dict[str, Any]) -> list[str]:
        """Events named by other clips' captions and not by this clip's (neutral candidates)."""
        own = self.profiles.get(clip["clip_id"]) or clip_profile(clip)
        return self._ranked(own.clip_id, self.events - own.events)


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
    """(input, lettered options, answer) with the correct option at `correct_index`."""
    texts = list(distractors)
    texts.insert(correct_index, correct)
    options = [f"{letter}) {text}" for letter, text in zip(LETTERS, texts, strict=False)]
    return f"{question} {' '.join(options)}", options, options[correct_index]


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


def caption_items(ctx: TaskContext, clips: list[dict[str, Any]]) -> list[ItemDraft]:
    """One captioning item per reference caption, as the release's captioning files."""
    drafts = []
    for clip in clips:
        split = ctx.splits.clip_split(clip["clip_id"])
        for index, caption in enumerate(clip["captions"]):
            text = " ".join(str(caption).split())
            drafts.append(
                ItemDraft(
                    split=split,  # type: ignore[arg-type]
                    generation_key=f"caption:{index}",
                    subtask="caption",
                    clip_ids=[clip["clip_id"]],
                    input=CAPTION_INSTRUCTION,
                    answer=text,
                    focus="events",
                    facts={"clips": [clip_info(clip)], "caption_index": index},
                    model=MODEL_TEMPLATE,
                    reasons=v.check_nonempty(text),
                )
            )
    return drafts


def binary_items(
    ctx: TaskContext,
    clips: list[dict[str, Any]],
    rejects: RejectLog,
    clotho_splits: dict[str, str] | None = None,
) -> list[ItemDraft]:
    """Clotho-AQA yes/no questions with the annotators' majority answer.

    Clotho-AQA audio files are Clotho files, but its splits are its own: a file that
    the ingested Clotho corpus puts in another split would carry the same audio into two
    splits of this dataset, so its questions are refused (`audio_split_conflict`).
    """
    drafts = []
    for clip in clips:
        split = ctx.splits.clip_split(clip["clip_id"])
        rejects.touch(split)
        file_name = PurePosixPath(clip["audio_path"]).name
        other = (clotho_splits or {}).get(file_name)
        if other is not None and other != split:
            rejects.add(
                clip,
                AUDIO_SPLIT_CONFLICT,
                f"{file_name} is in split '{split}' of Clotho-AQA but '{other}' of Clotho",
                file_name,
                split,
                field="file_name",
            )
            continue
        for voted in vote_questions(clip["qa"] or []):
            raw = f"{voted.question} -> {list(voted.answers)}"
            if voted.is_tie:
                rejects.add(
                    clip,
                    MAJORITY_TIE,
                    f"answers {list(voted.answers)} have no majority",
                    raw,
                    split,
                )
                continue
            if voted.majority not in YES_NO:
                rejects.add(
                    clip,
                    NOT_YES_NO,
                    f"majority answer {voted.majority!r} is not yes/no",
                    raw,
                    split,
                )
                continue
            drafts.append(
                ItemDraft(
                    split=split,  # type: ignore[arg-type]
                    generation_key=f"binary:{normalize_text(voted.question)}",
                    subtask="binary",
                    clip_ids=[clip["clip_id"]],
                    input=voted.question,
                    answer=voted.majority,
                    options=list(YES_NO),
                    focus="events",
                    facts={
                        "clips": [clip_info(clip)],
                        "answers": list(voted.answers),
                        "agreement": round(voted.agreement, 3),
                    },
                    model=MODEL_TEMPLATE,
                    reasons=v.check_nonempty(voted.question),
                )
            )
    return drafts
