"""AuditoryBench sound pitch comparison (`auditorybench-pitch`).

Clips: LAION/Freesound clips categorised `music/*`, `object/*` or `environment/*`
(step a) whose pitch `pipeline.audio.pitch` could measure (enough voiced audio).
Pairs: formed within a split only (`pair_split`). `pairing="published"` (the default) is
the released dataset's scheme: clips of one broad category (music with music, object with
object, environment with environment) paired in a seeded order, each clip used once.
`pairing="ring"` pairs each clip with up to `pairs_per_clip` partners across the three
categories: up to `pairs_per_clip` times more items from a small corpus, and cross-category
contrasts (a flute against traffic), at the price of reusing each clip. Label logic (measured, never guessed):
`higher` iff median f0 of clip 1 > clip 2. A pair is used only if its
difference_percentage = |p2 − p1| / p1 is at least `min_gap` in either order, i.e.
(high − low) / high ≥ min_gap; smaller gaps are stored as rejected rows
(`pitch_gap_too_small`, no LLM call). Pair order is chosen to alternate labels, and after
validation and dedup a surplus of one label is rejected (`label_balance`) so each split is
within 2 % of 50/50. The LLM (`auditorybench/pitch`) only phrases the sentence, first
clip's source first; validators: one `[MASK]`, spans verbatim and in order, no
'higher'/'lower' in the sentence, 5–50 words, English.
Wiki split: pairs of the shipped `data/pitch_sources.csv` whose Hz ranges do not overlap
(and whose nearest edges differ by ≥ min_gap), `The sound of {A} is [MASK] than the
sound of {B}` with bare source names and no final period, as the published wiki file
(model `template`).
Export `auditorybench-csv`: `sound_pitch_comparsion_{split}.csv` with `sentence,answer,span1,span2`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pipeline.audio.pitch import PitchConfig, load_pitches, measure_clips
from pipeline.tasks.auditorybench import export as csv_export
from pipeline.tasks.auditorybench.categorize import (
    CATEGORIZE_PROMPT,
    RELEASE_COLUMNS,
    ClipVariableTable,
    broad_of,
    categorize_clips,
)
from pipeline.tasks.auditorybench.knowledge import pitch_sources, tables_fingerprint
from pipeline.tasks.common import validators as v
from pipeline.tasks.common.base import (
    MODEL_TEMPLATE,
    ExportOptions,
    ItemDraft,
    Task,
    TaskContext,
    draft_lineage,
    llm_outcome_reasons,
)
from pipeline.tasks.common.records import ItemRecord
from pipeline.tasks.common.splits import seeded_fraction

if TYPE_CHECKING:
    from pipeline.tasks.common.ledger import ItemLedger

TASK_ID = "auditorybench-pitch"
PITCH_PROMPT = "auditorybench/pitch"
PITCH_BROAD = ("music", "object", "environment")
LABELS = ("higher", "lower")
WIKI_TEMPLATE = "The sound of {first} is [MASK] than the sound of {second}"
PAIRINGS = ("published", "ring")
PAIR_CHUNK = 2_000  # pairs phrased per engine call
PITCH_GAP_TOO_SMALL = "pitch_gap_too_small"
LABEL_BALANCE = "label_balance"
MIN_WORDS, MAX_WORDS = 5, 50


def difference_percentage(pitch_1: float, pitch_2: float) -> float:
    """|p2 − p1| / p1, the published definition."""
    return abs(pitch_2 - pitch_1) / pitch_1


def order_independent_gap(pitch_a: float, pitch_b: float) -> float:
    """The smaller of the two orders' difference_percentage: (high − low) / high."""
    high, low = max(pitch_a, pitch_b), min(pitch_a, pitch_b)
    return (high - low) / high


def label(pitch_1: float, pitch_2: float) -> str:
    return "higher" if pitch_1 > pitch_2 else "lower"


def validate_pitch_sentence(sentence: str, span1: str, span2: str, answer: str) -> list[str]:
    return v.check_masked_sentence(
        sentence,
        [span1, span2],
        answer,
        ordered_spans=True,
        answer_forms=LABELS,
        min_words=MIN_WORDS,
        max_words=MAX_WORDS,
    )


def one_use_pairs(clip_ids: list[str], seed: int) -> list[tuple[str, str]]:
    """Consecutive clips of a seeded order paired, each clip once (an odd one out is left)."""
    ring = sorted(clip_ids, key=lambda c: (seeded_fraction(c, seed), c))
    pairs = [(ring[i], ring[i + 1]) for i in range(0, len(ring) - 1, 2)]
    return sorted((a, b) if a < b else (b, a) for a, b in pairs)


def seeded_pairs(clip_ids: list[str], pairs_per_clip: int, seed: int) -> list[tuple[str, str]]:
    """Unordered pairs: each clip with its next `pairs_per_clip` neighbours in a seeded ring."""
    ring = sorted(clip_ids, key=lambda c: (seeded_fraction(c, seed), c))
    count = len(ring)
    pairs: set[tuple[str, str]] = set()
    for index, clip in enumerate(ring):
        for offset in range(1, min(pairs_per_clip, count - 1) + 1):
            other = ring[(index + offset) % count]
            pairs.add((clip, other) if clip < other else (other, clip))
    return sorted(pairs)


class PitchTask(Task):
    task_id: ClassVar[str] = TASK_ID
    prompt_names: ClassVar[tuple[str, ...]] = (CATEGORIZE_PROMPT, PITCH_PROMPT)
    export_formats: ClassVar[tuple[str, ...]] = (csv_export.FORMAT,)

    def __init__(
        self,
        min_gap: float = 0.10,
        pairs_per_clip: int = 8,
        max_label_imbalance: float = 0.02,
        pitch_config: PitchConfig | None = None,
        pairing: str = "published",
    ) -> None:
        if pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {', '.join(PAIRINGS)}, not {pairing!r}")
        self.pairing = pairing
        self.min_gap = min_gap
        self.pairs_per_clip = pairs_per_clip
        self.max_label_imbalance = max_label_imbalance
        self.pitch_config = pitch_config or PitchConfig()

    def config(self) -> dict[str, Any]:
        return {
            "min_gap": self.min_gap,
            "pairs_per_clip": self.pairs_per_clip,
            "pairing": self.pairing,
            "max_label_imbalance": self.max_label_imbalance,
            "pitch": self.pitch_config.key(),
            "tables": tables_fingerprint(),
        }

    def build_items(self, ctx: TaskContext) -> Iterator[ItemDraft]:
        yield from self.clip_items(ctx)
        if ctx.wants("wiki"):
            yield from self.wiki_items(ctx.seed)

    # ---- clip pairs ---------------------------------------------------------------

    def clip_items(self, ctx: TaskContext) -> Iterator[ItemDraft]:
        """Pairs of measured clips per split, phrased by the LLM in chunks of pairs.

        Per usable clip only its release fields (~0.2 KB), pitch and prompt metadata (as
        Arrow, ~0.25 KB) are held; the drafts are made one chunk of pairs at a time."""
        categories = categorize_clips(ctx)
        release: dict[str, tuple[int | None, str]] = {}
        for batch in ctx.clip_batches(
            "source = 'laion630k'", columns=f"clip_id, {RELEASE_COLUMNS}"
        ):
            for clip in batch:
                category = categories.get(clip["clip_id"])
                if category and broad_of(category) in PITCH_BROAD:
                    fields = csv_export.release_clip_fields(clip)
                    release[clip["clip_id"]] = (fields["id"], fields["audio_filename"])
        summary = measure_clips(ctx.warehouse, release, ctx.run_id, self.pitch_config)
        pitches = load_pitches(ctx.warehouse, release, self.pitch_config)
        ctx.notes["pitch"] = summary.model_dump()
        usable = sorted(c for c, p in pitches.items() if p["status"] == "ok")
        ctx.notes["pitch_unusable_clips"] = len(release) - len(usable)
        by_split: dict[str, list[str]] = {}
        groups: dict[tuple[str, str], list[str]] = {}
        for clip_id in usable:
            split = ctx.splits.clip_split(clip_id)
            by_split.setdefault(split, []).append(clip_id)
            groups.setdefault((split, broad_of(categories[clip_id])), []).append(clip_id)
        del categories
        variables = ClipVariableTable(ctx, usable)
        for split, clip_ids in sorted(by_split.items()):
            if self.pairing == "published":
                pairs = sorted(
                    pair
                    for (group_split, _), members in sorted(groups.items())
                    if group_split == split
                    for pair in one_use_pairs(members, ctx.seed)
                )
            else:
                pairs = seeded_pairs(clip_ids, self.pairs_per_clip, ctx.seed)
            ordered = self.order_pairs(pairs, pitches, ctx.seed)
            for start in range(0, len(ordered), PAIR_CHUNK):
                chunk = ordered[start : start + PAIR_CHUNK]
                yield from self.pair_items(ctx, split, chunk, release, pitches, variables)

    def pair_items(
        self,
        ctx: TaskContext,
        split: str,
        pairs: list[tuple[str, str]],
        release: dict[str, tuple[int | None, str]],
        pitches: dict[str, dict[str, Any]],
        variables: ClipVariableTable,
    ) -> list[ItemDraft]:
        drafts: list[ItemDraft] = []
        pending: list[ItemDraft] = []
        for first, second in pairs:
            (id_1, filename_1), (id_2, filename_2) = release[first], release[second]
            p1, p2 = pitches[first]["median_f0_hz"], pitches[second]["median_f0_hz"]
            draft = ItemDraft(
                split=split,  # type: ignore[arg-type]
                generation_key="pair",
                subtask="clip",
                clip_ids=[first, second],
                answer=label(p1, p2),
                facts={
                    "id_1": id_1,
                    "id_2": id_2,
                    "audio_filename_1": filename_1,
                    "audio_filename_2": filename_2,
                    "avg_pitch_1": p1,
                    "avg_pitch_2": p2,
                    "difference_percentage": difference_percentage(p1, p2),
                    "voiced_fraction_1": pitches[first]["voiced_fraction"],
                    "voiced_fraction_2": pitches[second]["voiced_fraction"],
                    "pitch_params": self.pitch_config.key(),
                },
            )
            drafts.append(draft)
            if order_independent_gap(p1, p2) < self.min_gap:
                draft.reasons.append(PITCH_GAP_TOO_SMALL)
            else:
                pending.append(draft)
        self.phrase(ctx, pending, variables)
        return drafts

    def order_pairs(
        self, pairs: list[tuple[str, str]], pitches: dict[str, dict[str, Any]], seed: int
    ) -> list[tuple[str, str]]:
        """Order each pair so labels alternate (usable pairs only): balanced before the LLM."""
        usable = [
            (a, b)
            for a, b in pairs
            if order_independent_gap(pitches[a]["median_f0_hz"], pitches[b]["median_f0_hz"])
            >= self.min_gap
        ]
        usable.sort(key=lambda pair: (seeded_fraction("|".join(pair), seed), pair))
        ordered = []
        for index, (a, b) in enumerate(usable):
            want = LABELS[index % 2]
            if label(pitches[a]["median_f0_hz"], pitches[b]["median_f0_hz"]) != want:
                a, b = b, a
            ordered.append((a, b))
        used = set(usable)
        return ordered + [pair for pair in pairs if pair not in used]

    def phrase(
        self, ctx: TaskContext, pending: list[ItemDraft], variables: ClipVariableTable
    ) -> None:
        from pipeline.llm import LLMRequest

        clips = variables.variables(clip_id for draft in pending for clip_id in draft.clip_ids)
        requests = [
            LLMRequest(
                item_key=f"pitch:{draft.clip_ids[0]}|{draft.clip_ids[1]}",
                prompt=PITCH_PROMPT,
                variables={"first": clips[draft.clip_ids[0]], "second": clips[draft.clip_ids[1]]},
                seed=ctx.seed,
            )
            for draft in pending
        ]
        for draft, result in zip(pending, ctx.run_llm(requests), strict=True):
            for key, value in draft_lineage(result).items():
                setattr(draft, key, value)
            draft.reasons += llm_outcome_reasons(result)
            if draft.reasons:
                continue
            reply = result.parsed or {}
            sentence, span1, span2 = reply["sentence"], reply["span1"], reply["span2"]
            draft.input, draft.spans = sentence, [span1, span2]
            draft.reasons += validate_pitch_sentence(sentence, span1, span2, draft.answer or "")

    # ---- wiki -----------------------------------------------------------------------

    def wiki_items(self, seed: int) -> list[ItemDraft]:
        sources = pitch_sources()
        pairs = []
        for i, a in enumerate(sources):
            for b in sources[i + 1 :]:
                high, low = (a, b) if a.low_hz > b.high_hz else (b, a)
                if high.low_hz <= low.high_hz:
                    continue  # overlapping ranges: no reliable label
                if order_independent_gap(high.low_hz, low.high_hz) < self.min_gap:
                    continue
                pairs.append((high, low))
        pairs.sort(
            key=lambda p: (seeded_fraction(f"{p[0].source}|{p[1].source}", seed), p[0].source)
        )
        drafts = []
        for index, (high, low) in enumerate(pairs):
            first, second = (high, low) if index % 2 == 0 else (low, high)
            answer = "higher" if first is high else "lower"
            sentence = WIKI_TEMPLATE.format(first=first.source, second=second.source)
            edge_1 = first.low_hz if first is high else first.high_hz
            edge_2 = second.low_hz if second is high else second.high_hz
            drafts.append(
                ItemDraft(
                    split="wiki",
                    generation_key=f"wiki:{first.source}|{second.source}",
                    subtask="wiki",
                    input=sentence,
                    answer=answer,
                    spans=[first.source, second.source],
                    facts={
                        "range_1_hz": [first.low_hz, first.high_hz],
                        "range_2_hz": [second.low_hz, second.high_hz],
                        "difference_percentage": difference_percentage(edge_1, edge_2),
                        "source": "data/pitch_sources.csv",
                    },
                    model=MODEL_TEMPLATE,
                    reasons=validate_pitch_sentence(sentence, first.source, second.source, answer),
                )
            )
        return drafts

    # ---- after dedup ------------------------------------------------------------------

    def finalize_label(self, record: ItemRecord) -> str | None:
        return record.answer if record.answer in LABELS else None

    def finalize(self, ledger: ItemLedger) -> dict[str, int]:
        """Reject the surplus of the majority label per split until within the tolerance
        (the surplus with the highest item ids goes first)."""
        rejected = 0
        for split in sorted(ledger.splits()):
            groups = {
                name: list(ledger.in_split(split, ledger.valid & ledger.labelled(name)))
                for name in LABELS
            }
            major, minor = sorted(LABELS, key=lambda name: -len(groups[name]))
            surplus: list[int] = []
            while groups[major] and (
                len(groups[major]) - len(groups[minor])
                > 2 * self.max_label_imbalance * (len(groups[major]) + len(groups[minor]))
            ):
                surplus.append(groups[major].pop())
            if surplus:
                ledger.reject(surplus, LABEL_BALANCE)
            rejected += len(surplus)
        return {LABEL_BALANCE: rejected}

    def export(
        self, fmt: str, rows: list[dict[str, Any]], out_dir: Path, options: ExportOptions
    ) -> list[Path]:
        return csv_export.write_pitch_csv(rows, out_dir, options)
