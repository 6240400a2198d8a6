"""Exact and normalised-text duplicate detection, within and across splits.

The first occurrence wins deterministically: items are visited in split precedence
(test, dev, train, wiki — see `records.SPLIT_ORDER`) and then by item_id. Later copies stay
in the table as rejected rows with reason `duplicate_exact` or `duplicate_normalized`, so
no text is ever valid in two splits and the counts are visible in SQL.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

from pipeline.tasks.common.records import ItemRecord

_NOT_ALNUM_RE = re.compile(r"[^a-z0-9]+")


def normalize_text(text: str) -> str:
    """Lowercase, fold accents, drop everything but a-z0-9 (the SQL twin is in report.py)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return _NOT_ALNUM_RE.sub("", "".join(ch for ch in decomposed if not unicodedata.combining(ch)))


def mark_duplicates(
    records: Sequence[ItemRecord], key: Callable[[ItemRecord], str | None]
) -> dict[str, int]:
    """Reject later copies among the valid records (in place); returns counts by reason.

    `key(record)` is the text compared (None: never a duplicate). Rejected records are
    not compared, so a rejected first copy does not knock out a valid later one. The rule
    itself is `ItemLedger.mark_duplicates`, which generation applies to staged items.
    """
    from pipeline.tasks.common.ledger import ItemLedger

    ledger = ItemLedger.of(records, key, lambda record: None, normalize_text)
    counts = ledger.mark_duplicates()
    ledger.apply_to_records(records, _no_ranks)
    return counts


def _no_ranks(row: dict[str, object], rank: int) -> None:
    raise AssertionError("duplicate marking sets no ranks")
