"""AuditoryBench items as model inputs: reading, mask expansion, span alignment, encoding.

Items come from the warehouse view `items_current` (valid, kept-or-unscored items of the
two AuditoryBench tasks) or from an AuditoryBench-format CSV (`pipeline.training.published`).

The sentence holds one literal `[MASK]`; encoding writes the backbone's own mask token
(`[MASK]` for BERT, `<mask>` for RoBERTa). For the animal task it is expanded to one mask
per word piece of the answer (published evaluation); pitch answers are one piece each.
Answer pieces are tokenised in the sentence (a BPE backbone sees `Ġcat`, not `cat`).
Span positions are found through the fast tokenizer's offset mapping.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedTokenizerBase

from pipeline.storage import Warehouse
from pipeline.training.config import TaskName

MASK = "[MASK]"
PITCH_ANSWERS = ("higher", "lower")
_MASK_RE = re.compile(re.escape(MASK))


@dataclass
class Example:
    """One masked sentence with its gold answer, gold spans and (if known) source clips."""

    item_id: str
    task: TaskName
    split: str
    sentence: str  # one [MASK] as stored; see `expanded_sentence`
    answer: str
    spans: list[str]
    clip_ids: list[str] = field(default_factory=list)


@dataclass
class Encoded:
    """An example tokenised: everything a batch needs, plus the alignment facts."""

    example: Example
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int]]
    special: list[bool]
    text: str  # the expanded sentence the offsets refer to
    mask_positions: list[int]
    target_ids: list[int]
    span_ranges: list[tuple[int, int] | None]  # char ranges of the gold spans in `text`
    span_positions: list[int]  # first token of each gold span (-1: not found / truncated)


class SkipCounter(Counter[str]):
    """Examples left out of a stage, by reason code (reported, never silent)."""


def mask_token(tokenizer: PreTrainedTokenizerBase) -> str:
    """The backbone's own mask token: `[MASK]` for BERT, `<mask>` for RoBERTa."""
    token = tokenizer.mask_token
    if not token:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has no mask token")
    return str(token)


def answer_pieces(tokenizer: PreTrainedTokenizerBase, sentence: str, answer: str) -> list[int]:
    """Word pieces of `answer` as the backbone sees it in place of the sentence's [MASK].

    The answer is tokenised inside the filled sentence, not alone: a byte-level BPE
    (RoBERTa) gives `Ġcat` after a space but `cat` alone, and only the former is what the
    model predicts at a mask that follows a space. WordPiece gives the same pieces both ways.
    """
    answer = answer.strip()
    at = sentence.find(MASK)
    if at < 0 or not answer:
        return list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    filled = sentence[:at] + answer + sentence[at + len(MASK) :]
    encoding = tokenizer(filled, add_special_tokens=False, return_offsets_mapping=True)
    end = at + len(answer)
    return [
        token
        for token, (start, stop) in zip(
            encoding["input_ids"], encoding["offset_mapping"], strict=True
        )
        if stop > start and start < end and stop > at
    ]


def word_in_context(tokenizer: PreTrainedTokenizerBase, word: str) -> list[int]:
    """Pieces of `word` after a space mid-sentence (e.g. the pitch answers at their mask)."""
    return answer_pieces(tokenizer, f"a {MASK}", word)


def expanded_sentence(tokenizer: PreTrainedTokenizerBase, example: Example) -> str:
    """The sentence in the backbone's mask token, one mask per answer piece (animal, as
    published) or kept at one (pitch)."""
    token = mask_token(tokenizer)
    count = 1
    if example.task == "auditorybench-animal":
        count = max(1, len(answer_pieces(tokenizer, example.sentence, example.answer)))
    return _MASK_RE.sub(lambda _: " ".join([token] * count), example.sentence, count=1)


def find_span_ranges(text: str, spans: list[str]) -> list[tuple[int, int] | None]:
    """Char range of each span in `text` (case-insensitive, in order, later spans after earlier)."""
    lowered = text.lower()
    ranges: list[tuple[int, int] | None] = []
    cursor = 0
    for span in spans:
        needle = span.strip().lower()
        if not needle:
            ranges.append(None)
            continue
        start = lowered.find(needle, cursor)
        if start < 0:
            start = lowered.find(needle)  # spans may be mentioned out of order
        if start < 0:
            ranges.append(None)
            continue
        ranges.append((start, start + len(needle)))
        cursor = start + len(needle)
    return ranges


def token_span_labels(
    offsets: list[tuple[int, int]], special: list[bool], ranges: list[tuple[int, int] | None]
) -> list[int]:
    """1 on every word piece overlapping a span, 0 elsewhere, -100 on special tokens."""
    labels: list[int] = []
    for (start, end), is_special in zip(offsets, special, strict=True):
        if is_special or end <= start:
            labels.append(-100)
            continue
        inside = any(r is not None and start < r[1] and end > r[0] for r in ranges)
        labels.append(1 if inside else 0)
    return labels


def first_token_positions(
    offsets: list[tuple[int, int]], special: list[bool], ranges: list[tuple[int, int] | None]
) -> list[int]:
    positions: list[int] = []
    for span_range in ranges:
        position = -1
        if span_range is not None:
            for index, ((start, end), is_special) in enumerate(zip(offsets, special, strict=True)):
                if not is_special and end > start and start < span_range[1] and end > span_range[0]:
                    position = index
                    break
        positions.append(position)
    return positions


def encode_examples(
    tokenizer: PreTrainedTokenizerBase,
    examples: list[Example],
    max_length: int,
    skipped: SkipCounter | None = None,
    expand_masks: bool = True,
) -> list[Encoded]:
    """Tokenise examples; ones whose [MASK] is missing or truncated are counted and left out.

    `expand_masks=False` keeps the sentence's own [MASK]s (prediction, answer unknown).
    The literal `[MASK]` of the data becomes the backbone's own mask token.
    """
    skipped = skipped if skipped is not None else SkipCounter()
    token = mask_token(tokenizer)
    texts = [
        expanded_sentence(tokenizer, ex)
        if expand_masks
        else _MASK_RE.sub(lambda _: token, ex.sentence)
        for ex in examples
    ]
    if not texts:
        return []
    batch = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_token_type_ids=True,
    )
    mask_id = tokenizer.mask_token_id
    encoded: list[Encoded] = []
    for index, (example, text) in enumerate(zip(examples, texts, strict=True)):
        input_ids = list(batch["input_ids"][index])
        offsets = [tuple(o) for o in batch["offset_mapping"][index]]
        special = [bool(s) for s in batch["special_tokens_mask"][index]]
        # [MASK] is a special token for the tokenizer but a real position for us.
        special = [s and tok != mask_id for s, tok in zip(special, input_ids, strict=True)]
        mask_positions = [i for i, tok in enumerate(input_ids) if tok == mask_id]
        # Without expansion the answer is unknown (prediction): the masks are the targets'
        # slots and are never scored.
        targets = (
            answer_pieces(tokenizer, example.sentence, example.answer)
            if expand_masks
            else [mask_id] * len(mask_positions)
        )
        if not mask_positions:
            skipped["mask_missing_or_truncated"] += 1
            continue
        if len(mask_positions) != len(targets):
            skipped["mask_count_differs_from_answer_pieces"] += 1
            continue
        ranges = find_span_ranges(text, example.spans)
        encoded.append(
            Encoded(
                example=example,
                input_ids=input_ids,
                token_type_ids=list(batch["token_type_ids"][index]),
                offsets=offsets,  # type: ignore[arg-type]
                special=special,
                text=text,
                mask_positions=mask_positions,
                target_ids=targets,
                span_ranges=ranges,
                span_positions=first_token_positions(offsets, special, ranges),  # type: ignore[arg-type]
            )
        )
    return encoded


# ---- sources ---------------------------------------------------------------------------

_ITEMS_SQL = """
SELECT item_id, task, split, input, answer, spans, clip_ids
FROM items_current
WHERE task = ? AND split = ? AND validation_status = 'valid'
  AND filter_status IN ('kept', 'unscored')
ORDER BY item_id
"""


def load_items(
    warehouse: Warehouse,
    tasks: list[TaskName],
    splits: tuple[str, ...] = ("train", "dev", "test", "wiki"),
    max_per_split: int | None = None,
) -> dict[tuple[str, str], list[Example]]:
    """Current, valid, kept-or-unscored items per (task, split), ordered by item_id."""
    out: dict[tuple[str, str], list[Example]] = {}
    for task in tasks:
        for split in splits:
            rows = warehouse.rows(_ITEMS_SQL, [task, split])
            if max_per_split is not None:
                rows = rows[:max_per_split]
            out[(task, split)] = [
                Example(
                    item_id=row["item_id"],
                    task=task,
                    split=split,
                    sentence=row["input"] or "",
                    answer=(row["answer"] or "").strip(),
                    spans=list(row["spans"] or []),
                    clip_ids=list(row["clip_ids"] or []),
                )
                for row in rows
            ]
    return out


def item_data_version(warehouse: Warehouse, tasks: list[TaskName]) -> list[dict[str, Any]]:
    """Generation versions, prompt versions, models and item counts behind a training run."""
    marks = ",".join("?" for _ in tasks)
    return warehouse.rows(
        f"""
        SELECT task, split, generation_version,
               list_sort(list(DISTINCT prompt_name || '@' || prompt_version)
                   FILTER (WHERE prompt_name IS NOT NULL)) AS prompt_versions,
               list_sort(list(DISTINCT model) FILTER (WHERE model IS NOT NULL)) AS models,
               count(*) FILTER (WHERE validation_status = 'valid'
                                AND filter_status IN ('kept', 'unscored')) AS usable_items,
               count(*) AS items
        FROM items_current WHERE task IN ({marks})
        GROUP BY ALL ORDER BY task, split
        """,
        list(tasks),
    )
