"""`ItemLedger`: the few columns of every generated item that whole-task decisions need.

Generation streams: items are built, validated and staged in chunks, so no list of all
items is ever held. Two decisions still look at every item of a task at once:

* duplicates (`dedup`): the first copy of a text wins, in split precedence and then
  item_id order;
* the task's `finalize` hook: e.g. ReasonAQA rotates the correct MCQ letter over the
  valid MCQs of a split in item_id order, the pitch task rejects a label surplus.

The ledger keeps, per item and in staging order, only what those decisions read, as
numpy columns (52 bytes an item, 73 MB for 1.4 M items): the split's precedence
rank, the item id, validity, 64-bit hashes of the duplicate texts, the LLM call key's
hash, and one short task-chosen label (`Task.finalize_label`, e.g. 'mcq' or the pitch
answer). Decisions are written back as a reason code or a rank per item and applied when
the staged rows are copied into their partitions (`generate`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.tasks.common.records import SPLIT_ORDER, ItemRecord
from pipeline.tasks.common.validators import DUPLICATE_EXACT, DUPLICATE_NORMALIZED

RankApplier = Callable[[dict[str, Any], int], None]
NO_HASH = np.uint64(0)  # "no text": never a duplicate
ITEM_ID_BYTES = 24  # item_id() gives 24 hex characters; longer ids are refused


def text_hash(text: str) -> int:
    """64-bit hash of a text, never 0 (0 means "no text"); collisions: 1 in 1.8e19 a pair."""
    value = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    return value or 1


@dataclass
class _Chunk:
    split: list[int] = field(default_factory=list)
    item_id: list[bytes] = field(default_factory=list)
    valid: list[bool] = field(default_factory=list)
    exact: list[int] = field(default_factory=list)
    normalized: list[int] = field(default_factory=list)
    call: list[int] = field(default_factory=list)
    label: list[int] = field(default_factory=list)


class ItemLedger:
    """Per-item decision columns of one generation, in staging order (index = row)."""

    CHUNK = 50_000  # Python lists are folded into numpy arrays this often

    def __init__(
        self,
        dedup_text: Callable[[ItemRecord], str | None],
        label_of: Callable[[ItemRecord], str | None],
        normalize: Callable[[str], str],
    ) -> None:
        self._dedup_text = dedup_text
        self._label_of = label_of
        self._normalize = normalize
        self._labels: dict[str, int] = {}
        self._pending = _Chunk()
        self._arrays: list[dict[str, np.ndarray]] = []
        self.columns: dict[str, np.ndarray] = {}
        self.reason: np.ndarray = np.zeros(0, np.uint8)  # 0 = none, else REASONS[code - 1]
        self.rank: np.ndarray = np.zeros(0, np.int32)  # -1 = none
        self.reasons: list[str] = []

    # ---- building ----------------------------------------------------------------------

    def add(self, record: ItemRecord) -> None:
        if len(record.item_id) > ITEM_ID_BYTES:
            raise ValueError(f"item_id {record.item_id!r} is longer than {ITEM_ID_BYTES}")
        chunk = self._pending
        chunk.split.append(SPLIT_ORDER.index(record.split))
        chunk.item_id.append(record.item_id.encode("ascii"))
        chunk.valid.append(record.validation_status == "valid")
        text = self._dedup_text(record)
        if text is None:
            chunk.exact.append(0)
            chunk.normalized.append(0)
        else:
            normalized = self._normalize(text)
            chunk.exact.append(text_hash(text))
            chunk.normalized.append(text_hash(normalized) if normalized else 0)
        chunk.call.append(text_hash(record.llm_call_key) if record.llm_call_key else 0)
        label = self._label_of(record)
        chunk.label.append(0 if label is None else self._label_code(label))
        if len(chunk.split) >= self.CHUNK:
            self._fold()

    def _label_code(self, label: str) -> int:
        code = self._labels.get(label)
        if code is None:
            code = self._labels[label] = len(self._labels) + 1
            if code > np.iinfo(np.uint16).max:
                raise ValueError("finalize labels must be few (a category, not free text)")
        return code

    def _fold(self) -> None:
        chunk = self._pending
        if chunk.split:
            self._arrays.append(
                {
                    "split": np.array(chunk.split, np.uint8),
                    "item_id": np.array(chunk.item_id, f"S{ITEM_ID_BYTES}"),
                    "valid": np.array(chunk.valid, np.bool_),
                    "exact": np.array(chunk.exact, np.uint64),
                    "normalized": np.array(chunk.normalized, np.uint64),
                    "call": np.array(chunk.call, np.uint64),
                    "label": np.array(chunk.label, np.uint16),
                }
            )
        self._pending = _Chunk()

    def close(self) -> ItemLedger:
        """Fold what is pending into the columns; decisions may be taken from now on."""
        self._fold()
        names = ("split", "item_id", "valid", "exact", "normalized", "call", "label")
        self.columns = {
            name: np.concatenate([a[name] for a in self._arrays])
            if self._arrays
            else np.zeros(0, np.dtype(f"S{ITEM_ID_BYTES}") if name == "item_id" else np.uint64)
            for name in names
        }
        self._arrays = []
        self.reason = np.zeros(len(self), np.uint8)
        self.rank = np.full(len(self), -1, np.int32)
        return self

    @classmethod
    def of(
        cls,
        records: Iterable[ItemRecord],
        dedup_text: Callable[[ItemRecord], str | None],
        label_of: Callable[[ItemRecord], str | None],
        normalize: Callable[[str], str],
    ) -> ItemLedger:
        ledger = cls(dedup_text, label_of, normalize)
        for record in records:
            ledger.add(record)
        return ledger.close()

    # ---- reading -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.columns.get("split", ()))

    @property
    def valid(self) -> np.ndarray:
        return self.columns["valid"]

    def distinct_calls(self) -> int:
        """How many distinct LLM calls the items come from."""
        calls = self.columns["call"]
        return int(np.unique(calls[calls != NO_HASH]).size)

    def labelled(self, label: str) -> np.ndarray:
        """Mask of the items whose `Task.finalize_label` is `label`."""
        code = self._labels.get(label)
        if code is None:
            return np.zeros(len(self), np.bool_)
        return self.columns["label"] == code

    def splits(self) -> list[str]:
        """The splits present, in precedence order."""
        return [SPLIT_ORDER[code] for code in np.unique(self.columns["split"])]

    def in_split(self, split: str, mask: np.ndarray | None = None) -> np.ndarray:
        """Indices of items of `split` (and `mask`), sorted by item_id."""
        selected = self.columns["split"] == SPLIT_ORDER.index(split)
        if mask is not None:
            selected &= mask
        indices = np.flatnonzero(selected)
        return indices[np.argsort(self.columns["item_id"][indices], kind="stable")]

    def precedence_order(self) -> np.ndarray:
        """All indices in split precedence, then item_id order."""
        return np.lexsort((self.columns["item_id"], self.columns["split"]))

    def repeated_item_ids(self) -> np.ndarray:
        """Indices of items whose item_id an earlier item already has."""
        order = np.argsort(self.columns["item_id"], kind="stable")
        ids = self.columns["item_id"][order]
        repeated = np.flatnonzero(ids[1:] == ids[:-1]) + 1
        return np.sort(order[repeated])

    # ---- deciding ----------------------------------------------------------------------

    def reject(self, indices: Sequence[int] | np.ndarray, reason: str) -> None:
        """Reject valid items at `indices` with `reason` (applied when the rows are copied)."""
        if reason not in self.reasons:
            self.reasons.append(reason)
        indices = np.asarray(indices, dtype=np.int64)
        self.reason[indices] = self.reasons.index(reason) + 1
        self.columns["valid"][indices] = False

    def reason_of(self, index: int) -> str | None:
        code = int(self.reason[index])
        return self.reasons[code - 1] if code else None

    def changed(self, start: int, stop: int) -> np.ndarray:
        """Offsets (from `start`) of the items in [start, stop) that a decision changes."""
        return np.flatnonzero((self.reason[start:stop] != 0) | (self.rank[start:stop] >= 0))

    def apply(self, row: dict[str, Any], index: int, apply_rank: RankApplier) -> None:
        """Apply the decisions about item `index` to its row (a dict of `item_records`)."""
        reason = self.reason_of(index)
        if reason is not None:
            row["validation_status"] = "rejected"
            row["validation_reasons"] = [*row["validation_reasons"], reason]
        rank = int(self.rank[index])
        if rank >= 0 and row["validation_status"] == "valid":
            apply_rank(row, rank)

    def apply_to_records(self, records: Sequence[ItemRecord], apply_rank: RankApplier) -> None:
        """Apply every decision to the records the ledger was built `of`, in place."""
        for index in self.changed(0, len(self)).tolist():
            record = records[index]
            row = record.model_dump()
            self.apply(row, index, apply_rank)
            for name, value in row.items():
                setattr(record, name, value)

    def mark_duplicates(self) -> dict[str, int]:
        """Reject later copies among the valid items; returns counts by reason.

        The same rule as visiting the valid items in precedence order with a set of the
        texts (exact) and of their normalised forms kept so far: an item is a copy when
        its text, else its non-empty normalised text, was kept before. Rejected items are
        not compared, so a rejected first copy does not knock out a valid later one.
        """
        counts = {DUPLICATE_EXACT: 0, DUPLICATE_NORMALIZED: 0}
        if not len(self):
            return counts
        # Vectorised form of that walk (no set of every text): among items with a
        # normalised text, only the first of each normalised text is kept, and a later
        # one is an exact copy when its text equals that first one's (equal texts have
        # equal normalised forms, so no other kept text can match); items without one
        # are copies when their exact text came before.
        exact, normalized = self.columns["exact"], self.columns["normalized"]
        order = self.precedence_order()
        candidates = order[self.valid[order] & (exact[order] != NO_HASH)]
        texts, norms = exact[candidates], normalized[candidates]
        grouped = np.flatnonzero(norms != NO_HASH)
        _, first, inverse = np.unique(norms[grouped], return_index=True, return_inverse=True)
        first_of = grouped[first][inverse.reshape(-1)]
        copy = first_of != grouped
        same_text = texts[grouped] == texts[first_of]
        alone = np.flatnonzero(norms == NO_HASH)
        _, first_alone = np.unique(texts[alone], return_index=True)
        alone_copy = np.ones(len(alone), np.bool_)
        alone_copy[first_alone] = False
        exact_copies = np.concatenate(
            [candidates[grouped[copy & same_text]], candidates[alone[alone_copy]]]
        )
        normalized_copies = candidates[grouped[copy & ~same_text]]
        if len(exact_copies):
            self.reject(exact_copies, DUPLICATE_EXACT)
        if len(normalized_copies):
            self.reject(normalized_copies, DUPLICATE_NORMALIZED)
        counts[DUPLICATE_EXACT] = len(exact_copies)
        counts[DUPLICATE_NORMALIZED] = len(normalized_copies)
        return counts
