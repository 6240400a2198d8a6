"""Rows streamed from DuckDB in bounded chunks, for exports and reports at corpus scale.

`StreamedRows` runs one query and hands out its rows as dicts, one Arrow record batch
(`to_arrow_reader`, `CHUNK_ROWS` rows) at a time, so Python never holds more than a
chunk however many items a task has. It can be iterated more than once (each pass runs
the query again) and knows its length by a `count(*)` query, so code written for a list
of rows (`for row in rows`, `len(rows)`) reads it unchanged.

Values are what `Warehouse.rows` returns (Arrow's `to_pylist`), so a streamed row equals
the row a whole-table read gives.

`split_groups` turns rows ordered by split into (split, rows of that split) groups
without collecting a split.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from pipeline.tasks.common.records import SPLIT_ORDER

if TYPE_CHECKING:
    from pipeline.storage import Warehouse

SPLIT_RANK_SQL = (
    "CASE split "
    + " ".join(f"WHEN '{split}' THEN {rank}" for rank, split in enumerate(SPLIT_ORDER))
    + f" ELSE {len(SPLIT_ORDER)} END"
)  # ORDER BY term: splits in SPLIT_ORDER, then any other split
CHUNK_ROWS = 2_000  # rows per Arrow record batch: a few MB of item text at most


class StreamedRows:
    """The rows of `sql` (with `params`), streamed in record batches of `chunk_rows`
    (default: the module's CHUNK_ROWS when the object is made)."""

    def __init__(
        self,
        warehouse: Warehouse,
        sql: str,
        params: list[Any] | None = None,
        chunk_rows: int | None = None,
    ) -> None:
        self.warehouse = warehouse
        self.sql = sql
        self.params = list(params or [])
        self.chunk_rows = chunk_rows or CHUNK_ROWS
        self._count: int | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        """The rows, one list per Arrow record batch."""
        with self.warehouse.connect() as con:
            reader = con.sql(self.sql, params=self.params or None).to_arrow_reader(self.chunk_rows)
            for batch in reader:
                yield self.convert(batch.to_pylist())

    def convert(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Hook for subclasses: adjust one chunk of rows before they are handed out."""
        return rows

    def __len__(self) -> int:
        if self._count is None:
            counted = self.warehouse.rows(f"SELECT count(*) AS n FROM ({self.sql})", self.params)
            self._count = int(counted[0]["n"])
        return self._count

    def __bool__(self) -> bool:
        return len(self) > 0


def split_groups(
    rows: Iterable[dict[str, Any]],
) -> Iterator[tuple[str, Iterator[dict[str, Any]]]]:
    """(split, its rows) for rows that arrive grouped by split; each group is consumed
    lazily and must be read before the next one is asked for (as `itertools.groupby`)."""
    yield from itertools.groupby(rows, key=lambda row: row["split"])
