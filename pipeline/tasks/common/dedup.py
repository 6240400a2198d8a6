"""Exact and normalised-text duplicate detection, within and across splits.

The first occurrence wins deterministically: items are visited in split precedence
(test, dev, train, wiki — see `records.SPLIT_ORDER`) and then by item_id. Later copies stay
in the table as rejected rows with reason `duplicate_exact` or `duplicate_normalized`, so
no text is ever valid in two splits and the counts are visible in SQL.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable

from pipeline.tasks.common.records import SPLIT_ORDER, ItemRecord
from pipeline.tasks.common.validators import DUPLICATE_EXACT, DUPLICATE_NORMALIZED

_NOT_ALNUM_RE = re.compile(r"[^a-z0-9]+")


def normalize_text(text: str) -> str:
    """Lowercase, fold accents, drop everything but a-z0-9 (the SQL twin is in report.py)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return _NOT_ALNUM_RE.sub("", "".join(ch for ch in decomposed if not unicodedata.combining(ch)))


def precedence(record: ItemRecord) -> tuple[int, str]:
    return (SPLIT_ORDER.index(record.split), record.item_id)


def mark_duplicates(
    records: Iterable[ItemRecord], key: Callable[[ItemRecord], str | None]
) -> dict[str, int]:
    """Reject later copies among the valid records (in place); returns counts by reason.

    `key(record)` is the text compared (None: never a duplicate). Rejected records are
    not compared, so a rejected first copy does not knock out a valid later one.
    """
    seen_exact: set[str] = set()
    seen_normalized: set[str] = set()
    counts = {DUPLICATE_EXACT: 0, DUPLICATE_NORMALIZED: 0}
    for record in sorted(records, key=precedence):
        if record.validation_status != "valid":
            continue
        text = key(record)
        if text is None:
            continue
        normalized = normalize_text(text)
        reason = None
        if text in seen_exact:
            reason = DUPLICATE_EXACT
        elif normalized and normalized in seen_normalized:
            reason = DUPLICATE_NORMALIZED
        if reason:
            record.validation_status = "rejected"
            record.validation_reasons = [*record.validation_reasons, reason]
            counts[reason] += 1
            continue
        seen_exact.add(text)
        seen_normalized.add(normalized)
    return counts
