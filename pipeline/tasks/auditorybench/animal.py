"""AuditoryBench animal sound recognition (`auditorybench-animal`).

Clips: LAION/Freesound clips categorised `animal/*` (step a). Prompt
`auditorybench/animal` writes a sentence with one `[MASK]` for the animal, the sound span
and the answer, or declines. Label logic: the answer is normalised against the shipped
animal vocabulary (`Pomeranian` → dog, plurals folded); an answer outside it is rejected
(`unknown_animal`), as is one that disagrees with the clip's category (`answer_category_mismatch`).
Validators: one `[MASK]`, span verbatim, answer (or its plural/aliases) not in the
sentence, 4–40 words, English. Wiki split: `{sound} is the sound a [MASK] makes.` for
every (animal, sound) of `data/animals.csv` (model `template`); a sound shared by several
animals is rejected as `ambiguous_sound`.
Export `auditorybench-csv`: `animal_sound_recognition_{split}.csv` with `animal,description,sentence`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pipeline.tasks.auditorybench import export as csv_export
from pipeline.tasks.auditorybench.categorize import (
    CATEGORIZE_PROMPT,
    CLIP_VARIABLE_COLUMNS,
    RELEASE_COLUMNS,
    broad_of,
    categorize_clips,
    clip_variables,
)
from pipeline.tasks.auditorybench.knowledge import (
    GENERIC_ANIMALS,
    animal_vocabulary,
    tables_fingerprint,
)
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

TASK_ID = "auditorybench-animal"
ANIMAL_PROMPT = "auditorybench/animal"
WIKI_TEMPLATE = "{sound} is the sound a [MASK] makes."
UNKNOWN_ANIMAL = "unknown_animal"
AMBIGUOUS_SOUND = "ambiguous_sound"  # wiki: the sound belongs to several animals in the table
ANSWER_CATEGORY_MISMATCH = "answer_category_mismatch"
MIN_WORDS, MAX_WORDS = 4, 40
ANIMAL_CLIP_COLUMNS = f"{CLIP_VARIABLE_COLUMNS}, {RELEASE_COLUMNS}"


def validate_animal_sentence(sentence: str, span: str, animal: str) -> list[str]:
    forms = animal_vocabulary().get(animal).forms()
    return v.check_masked_sentence(
        sentence,
        [span],
        animal,
        answer_forms=forms,
        min_words=MIN_WORDS,
        max_words=MAX_WORDS,
    )


class AnimalTask(Task):
    task_id: ClassVar[str] = TASK_ID
    prompt_names: ClassVar[tuple[str, ...]] = (CATEGORIZE_PROMPT, ANIMAL_PROMPT)
    export_formats: ClassVar[tuple[str, ...]] = (csv_export.FORMAT,)

    def config(self) -> dict[str, Any]:
        return {"tables": tables_fingerprint()}

    def build_items(self, ctx: TaskContext) -> Iterator[ItemDraft]:
        yield from self.clip_items(ctx)
        if ctx.wants("wiki"):
            yield from wiki_items()

    def clip_items(self, ctx: TaskContext) -> Iterator[ItemDraft]:
        """One item per `animal/*` clip, LAION streamed in batches (one engine call each)."""
        from pipeline.llm import LLMRequest

        categories = categorize_clips(ctx)
        for batch in ctx.clip_batches("source = 'laion630k'", columns=ANIMAL_CLIP_COLUMNS):
            animal_clips = [
                clip
                for clip in batch
                if broad_of(categories.get(clip["clip_id"]) or "") == "animal"
            ]
            requests = [
                LLMRequest(
                    item_key=f"animal:{clip['clip_id']}",
                    prompt=ANIMAL_PROMPT,
                    variables={
                        "category": categories[clip["clip_id"]],
                        **clip_variables(clip),
                    },
                    seed=ctx.seed,
                )
                for clip in animal_clips
            ]
            for clip, result in zip(animal_clips, ctx.run_llm(requests), strict=True):
                category = categories[clip["clip_id"]]
                draft = ItemDraft(
                    split=ctx.splits.clip_split(clip["clip_id"]),
                    generation_key="clip",
                    subtask="clip",
                    clip_ids=[clip["clip_id"]],
                    facts={
                        "category": category,
                        "audio_filename": csv_export.release_clip_fields(clip)["audio_filename"],
                    },
                    reasons=llm_outcome_reasons(result),
                    **draft_lineage(result),
                )
                if not draft.reasons:
                    fill_from_reply(draft, result.parsed or {}, category)
                yield draft

    def export(
        self, fmt: str, rows: list[dict[str, Any]], out_dir: Path, options: ExportOptions
    ) -> list[Path]:
        return csv_export.write_animal_csv(rows, out_dir, options)


def fill_from_reply(draft: ItemDraft, reply: dict[str, Any], category: str) -> None:
    """Sentence, span and normalised answer from a usable reply; reasons when invalid."""
    sentence, span, raw_answer = reply["sentence"], reply["span"], reply["answer"]
    draft.input, draft.spans = sentence, [span]
    draft.facts["answer_raw"] = raw_answer
    animal = animal_vocabulary().normalise(raw_answer)
    if animal is None:
        draft.answer = raw_answer
        draft.reasons.append(UNKNOWN_ANIMAL)
        draft.reasons += v.check_mask_count(sentence) + v.check_spans_verbatim(sentence, [span])
        return
    draft.answer = animal
    draft.reasons += validate_animal_sentence(sentence, span, animal)
    category_animal = category.split("/")[1] if category.count("/") >= 1 else None
    category_name = animal_vocabulary().normalise(category_animal) if category_animal else None
    if category_name not in (None, animal, *GENERIC_ANIMALS):
        draft.reasons.append(ANSWER_CATEGORY_MISMATCH)


def wiki_items() -> list[ItemDraft]:
    """Template items from the shipped animal table: the wiki split, one per (animal, sound).

    A sound listed for several animals ('growl', 'hiss') has no single answer: its items
    are kept as rejected rows (`ambiguous_sound`) rather than letting dedup pick one.
    """
    animals = list(animal_vocabulary().animals.values())
    owners: dict[str, int] = {}
    for animal in animals:
        for sound in set(animal.sounds):
            owners[sound] = owners.get(sound, 0) + 1
    drafts = []
    for animal in animals:
        for sound in animal.sounds:
            span = sound  # the published wiki keeps the sound word as is, lower case first
            sentence = WIKI_TEMPLATE.format(sound=span)
            drafts.append(
                ItemDraft(
                    split="wiki",
                    generation_key=f"wiki:{animal.name}:{sound}",
                    subtask="wiki",
                    input=sentence,
                    answer=animal.name,
                    spans=[span],
                    facts={"source": "data/animals.csv"},
                    model=MODEL_TEMPLATE,
                    reasons=validate_animal_sentence(sentence, span, animal.name)
                    + ([AMBIGUOUS_SOUND] if owners[sound] > 1 else []),
                )
            )
    return drafts
