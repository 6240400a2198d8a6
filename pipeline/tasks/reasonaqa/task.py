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
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from pipeline.tasks.common import validators as v
from pipeline.tasks.common.base import (
    MODEL_TEMPLATE,
    ExportOptions,
    ItemDraft,
    Task,
    TaskContext,
    stable_hash,
)
from pipeline.tasks.common.dedup import normalize_text
from pipeline.tasks.common.records import ItemRecord
from pipeline.tasks.reasonaqa import rules
from pipeline.tasks.reasonaqa.aqa_votes import YES_NO, vote_questions
from pipeline.tasks.reasonaqa.drafts import (
    LETTERS,
    clip_info,
    detail_draft,
    difference_drafts,
    entailment_drafts,
    lay_out_mcq,
    mcq_draft,
)
from pipeline.tasks.reasonaqa.rejects import RejectLog
from pipeline.tasks.reasonaqa.release import (
    AUDIOCAPS_ENTAILMENT_SPLITS,
    CAPTION_INSTRUCTION,
)
from pipeline.tasks.reasonaqa.selection import (
    POOL_SIZE,
    PoolIndex,
    clips_by_split,
    difference_pairs,
)

if TYPE_CHECKING:
    from pipeline.llm import LLMRequest
    from pipeline.tasks.common.ledger import ItemLedger

TASK_ID = "reasonaqa"
PROMPT_MCQ = "reasonaqa/mcq"
PROMPT_DETAIL = "reasonaqa/detail"
PROMPT_DIFFERENCE = "reasonaqa/difference"
PROMPT_ENTAILMENT = "reasonaqa/entailment"
CAPTION_SOURCES = ("audiocaps", "clotho")
CLIP_CHUNK = 2_000  # clips (or pairs) whose LLM requests go to the engine at a time
CLIP_COLUMNS = "clip_id, source, source_split, audio_path, captions"  # what items read

# Reason codes of the existing-data families (rejects).
MAJORITY_TIE = "majority_tie"  # rejects: the annotators' answers have no majority
NOT_YES_NO = "not_yes_no"  # rejects: the majority answer of an AQA question is not yes/no
AUDIO_SPLIT_CONFLICT = (
    "audio_split_conflict"  # rejects: AQA clip's audio is in another Clotho split
)


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

    def build_items(self, ctx: TaskContext) -> Iterator[ItemDraft]:
        rejects = RejectLog(TASK_ID)
        # Distractor and neutral candidates come from every caption clip, whatever split:
        # they are text only, never audio, so they cannot leak a clip into another split.
        all_caption_clips = ctx.clips(
            "source IN ('audiocaps', 'clotho') AND len(captions) > 0", columns=CLIP_COLUMNS
        )
        clips = [c for c in all_caption_clips if ctx.wants(ctx.splits.clip_split(c["clip_id"]))]
        yield from self._single_clip_items(ctx, clips, all_caption_clips)
        yield from self._difference_items(ctx, clips)
        yield from caption_items(ctx, clips)
        aqa = [
            clip
            for clip in ctx.clips(
                "source = 'clotho-aqa'",
                columns=CLIP_COLUMNS + ", qa, split, source_file, source_row",
            )
            if ctx.wants(ctx.splits.clip_split(clip["clip_id"]))
        ]
        clotho_splits = {
            PurePosixPath(clip["audio_path"]).name: ctx.splits.clip_split(clip["clip_id"])
            for clip in ctx.clips("source = 'clotho'", columns="clip_id, audio_path")
        }
        yield from binary_items(ctx, aqa, rejects, clotho_splits)
        rejects.write(ctx.warehouse, ctx.run_id)
        ctx.notes["rejects"] = rejects.counts()

    def _single_clip_items(
        self, ctx: TaskContext, clips: list[dict[str, Any]], pool_clips: list[dict[str, Any]]
    ) -> Iterator[ItemDraft]:
        # Focus rotates over each split's clips in a seeded order, mcq and detail offset.
        focus_rank: dict[str, int] = {}
        for split_clips in clips_by_split(ctx, clips).values():
            ordered = sorted(split_clips, key=lambda c: stable_hash(c["clip_id"], ctx.seed))
            focus_rank.update((clip["clip_id"], rank) for rank, clip in enumerate(ordered))
        focuses = rules.FOCUSES
        pool = PoolIndex(pool_clips, ctx.seed)
        for start in range(0, len(clips), CLIP_CHUNK):
            chunk = clips[start : start + CLIP_CHUNK]
            focus_of = {
                clip["clip_id"]: (
                    focuses[focus_rank[clip["clip_id"]] % len(focuses)],
                    focuses[(focus_rank[clip["clip_id"]] + len(focuses) // 2) % len(focuses)],
                )
                for clip in chunk
            }
            results = iter(ctx.run_llm(self._single_clip_requests(ctx, chunk, focus_of, pool)))
            for clip in chunk:
                split = ctx.splits.clip_split(clip["clip_id"])
                mcq_focus, detail_focus = focus_of[clip["clip_id"]]
                mcq, detail = next(results), next(results)
                yield mcq_draft(clip, split, mcq_focus, mcq)
                yield detail_draft(clip, split, detail_focus, detail)
                if self.wants_entailment(clip, split):
                    yield from entailment_drafts(clip, split, next(results))

    def _single_clip_requests(
        self,
        ctx: TaskContext,
        clips: list[dict[str, Any]],
        focus_of: dict[str, tuple[str, str]],
        pool: PoolIndex,
    ) -> list[LLMRequest]:
        """Per clip: the mcq and detail requests, and the entailment one where wanted."""
        from pipeline.llm import LLMRequest

        requests: list[LLMRequest] = []
        for clip in clips:
            captions = list(clip["captions"])
            mcq_focus, detail_focus = focus_of[clip["clip_id"]]
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
        return requests

    def _difference_items(
        self, ctx: TaskContext, clips: list[dict[str, Any]]
    ) -> Iterator[ItemDraft]:
        from pipeline.llm import LLMRequest

        pairs = difference_pairs(ctx, clips)
        for start in range(0, len(pairs), CLIP_CHUNK):
            chunk = pairs[start : start + CLIP_CHUNK]
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
                for first, second in chunk
            ]
            for (first, second), result in zip(chunk, ctx.run_llm(requests), strict=True):
                split = ctx.splits.pair_split(first["clip_id"], second["clip_id"])
                assert split is not None  # difference_pairs only forms same-split pairs
                yield from difference_drafts(first, second, split, result)

    # ---- after dedup: balance the correct letter ------------------------------------

    def finalize_label(self, record: ItemRecord) -> str | None:
        return "mcq" if record.subtask == "mcq" else None

    def finalize(self, ledger: ItemLedger) -> dict[str, int]:
        """Rank every valid MCQ of a split by item_id; `apply_rank` lays it out with the
        correct option at letter rank mod 4, so the letters rotate a, b, c, d per split."""
        counts: dict[str, int] = {}
        mcq = ledger.valid & ledger.labelled("mcq")
        for split in ledger.splits():
            ranked = ledger.in_split(split, mcq)
            ledger.rank[ranked] = np.arange(len(ranked))
            for rank in range(min(len(LETTERS), len(ranked))):
                letters = len(range(rank, len(ranked), len(LETTERS)))
                counts[f"mcq_letter_{LETTERS[rank]}_{split}"] = letters
        return {"mcq_letters": counts} if counts else {}

    def apply_rank(self, row: dict[str, Any], rank: int) -> None:
        facts = json.loads(row["facts"])
        question, options, answer = lay_out_mcq(
            facts["question"], facts["correct"], facts["distractors"], rank % len(LETTERS)
        )
        facts["letter"] = answer[0]
        row["input"], row["options"], row["answer"] = question, options, answer
        row["facts"] = _dump(facts)

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


def caption_items(ctx: TaskContext, clips: list[dict[str, Any]]) -> Iterator[ItemDraft]:
    """One captioning item per reference caption, as the release's captioning files."""
    for clip in clips:
        split = ctx.splits.clip_split(clip["clip_id"])
        for index, caption in enumerate(clip["captions"]):
            text = " ".join(str(caption).split())
            yield ItemDraft(
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
