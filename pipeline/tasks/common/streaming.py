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

DuckDB's own memory is bounded too: exports and reports query a database of their own
(`scan_connection`, settings `ScanSettings`) with a fixed `memory_limit` (256 MB, or
$FORGE_SCAN_MEMORY_LIMIT), one thread and a `temp_directory` under the warehouse
(`<root>/.spill/<pid>`), so sorts, joins and aggregates spill to disk instead of growing
with the number of items. Scratch tables of an export pass live in a database file there
too (`scratch_database`). Facts this relies on, measured with DuckDB 2.0.1 on
bench/scale.py's `synthetic_items` (ReasonAQA-shaped items, one clip per two items):

* `memory_limit`, `threads` and `temp_directory` are database-wide settings, hence a
  database of their own (`Warehouse.connect(settings)`) rather than SETs on the shared
  one. DuckDB makes only the last folder of `temp_directory` and removes it when that
  database closes (at exit); what a killed process leaves, the next scan connection
  removes (`remove_dead_spill_files`);
* below its limit DuckDB keeps the pages it read and wrote, so an export's peak RSS grows
  with the items (about 1.5 KB per item) until DuckDB reaches the limit, then stays flat;
* hash joins, grouped aggregates (count(DISTINCT ...) included) and ORDER BY spill, but
  not at any limit: sorting whole item rows needed more memory the more rows there were
  (items with 8 KB of facts: 24,000 sorted within 256 MB, 48,000 did not), and a join
  that feeds a sort in the same query keeps its hash table while the sort fills (300 MB
  failed at 1,397,586 items). `ExportRows` therefore sorts only narrow keys, then whole
  rows range by range (pipeline.tasks.common.export);
* a window, even `row_number() OVER ()`, and a grouped `list(... ORDER BY ...)` hold all
  their rows: under a limit they fail with "Out of Memory Error"; the old export query
  (a window and a list aggregate) held ~3 KB per item. Nothing read here uses them;
* the view `items_current` is estimated at a few dozen rows after its filters, so a join
  of it with `clips` hashes the whole item rows; a table's row count is exact, so the same
  join from a scratch table hashes `clips` (narrow);
* with all of the above, `export_task(..., 'mellow-json')` of 1,397,586 items ran within
  a 64 MB limit (peak RSS 305 MB); at the default 256 MB its peak RSS was 272 MB at
  46,586 items, 381 MB at 465,862 and 485 MB at 1,397,586 (the old query: 4.4 GB).
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import ForgeError
from pipeline.storage.warehouse import pid_alive
from pipeline.tasks.common.records import SPLIT_ORDER

if TYPE_CHECKING:
    from pipeline.storage import Warehouse

SPLIT_RANK_SQL = (
    "CASE split "
    + " ".join(f"WHEN '{split}' THEN {rank}" for rank, split in enumerate(SPLIT_ORDER))
    + f" ELSE {len(SPLIT_ORDER)} END"
)  # ORDER BY term: splits in SPLIT_ORDER, then any other split
CHUNK_ROWS = 2_000  # rows per Arrow record batch: a few MB of item text at most
SPILL_FOLDER = ".spill"  # under the warehouse root: <pid>/ (DuckDB's), <pid>-<token>.duckdb
MEMORY_LIMIT_ENV = "FORGE_SCAN_MEMORY_LIMIT"
MEMORY_SIZE_PATTERN = r"^\d+(\.\d+)?\s*([KMGT]i?B|B)$"  # DuckDB's memory_limit syntax
SORT_KEY = "sort_key"  # the column of a scratch table that `read_sorted` orders by
# Whole rows DuckDB sorts at once: at most this many rows, and about this many bytes
# (items with 8 KB of facts: 20,000 of them failed to sort within 128 MB). More rows cost
# more ranges, each a scan of the narrow key column.
SORT_RANGE_ROWS = 20_000
SORT_RANGE_BYTES = 16 * 2**20
KEY_BATCH_ROWS = 65_536  # sort keys per Arrow batch while the ranges are cut
# Row groups of scratch databases: a large insert writes each one to the file, compressed,
# as soon as it is full, so an insert holds at most a few of them in memory.
SCRATCH_ROW_GROUP_ROWS = 8_192


def split_rank(split: str) -> int:
    """Python's SPLIT_RANK_SQL."""
    return SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER)


class ScanSettings(BaseModel):
    """DuckDB settings of the database exports and reports read through."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Peak RSS of an export is about this plus ~230 MB of Python and libraries. Exports of
    # 1,397,586 ReasonAQA items ran within 64 MB, items with 8 KB of facts within 128 MB;
    # a larger limit bought no speed (same CPU time at 64, 128, 256 and 512 MB).
    memory_limit: str = Field(default="256MB", pattern=MEMORY_SIZE_PATTERN)
    # One thread: each thread holds its own buffers (two threads held ~1.7x the memory of
    # one below the limit), and an export's time goes to Python (dicts, JSON), not DuckDB.
    threads: int = 1
    # Every streamed query has an ORDER BY; without one, order is not needed either.
    preserve_insertion_order: bool = False

    def duckdb_config(self, spill_dir: Path) -> dict[str, str]:
        return {
            "memory_limit": self.memory_limit,
            "threads": str(self.threads),
            "preserve_insertion_order": str(self.preserve_insertion_order).lower(),
            "temp_directory": str(spill_dir),
        }


def scan_settings() -> ScanSettings:
    """The settings, with `memory_limit` from $FORGE_SCAN_MEMORY_LIMIT when it is set."""
    limit = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    try:
        return ScanSettings(memory_limit=limit) if limit else ScanSettings()
    except ValidationError:
        raise ForgeError(
            f"{MEMORY_LIMIT_ENV}={limit!r} is not a memory size; write e.g. 512MB or 2GB"
        ) from None


def spill_dir(warehouse: Warehouse) -> Path:
    """This process's spill folder: one per process, so two exports never share files."""
    return warehouse.root / SPILL_FOLDER / str(os.getpid())


def remove_dead_spill_files(warehouse: Warehouse) -> None:
    """Spill folders and scratch files of processes that died before removing them."""
    base = warehouse.root / SPILL_FOLDER
    if not base.is_dir():
        return
    for path in base.iterdir():
        owner = path.name.split("-", 1)[0].split(".", 1)[0]
        pid = int(owner) if owner.isdigit() else None
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def scan_connection(warehouse: Warehouse) -> duckdb.DuckDBPyConnection:
    """A cursor of the memory-bounded database (`scan_settings()`) over the warehouse."""
    remove_dead_spill_files(warehouse)
    folder = spill_dir(warehouse)
    folder.parent.mkdir(parents=True, exist_ok=True)  # DuckDB makes only the last level
    return warehouse.connect(scan_settings().duckdb_config(folder))


@contextmanager
def scratch_database(con: duckdb.DuckDBPyConnection, warehouse: Warehouse) -> Iterator[str]:
    """The name of a database file attached to `con` for scratch tables, detached and
    deleted when the block ends.

    A file rather than memory: DuckDB writes a large insert's full row groups to the file,
    compressed, while the insert runs, where an in-memory table keeps every row
    uncompressed until the statement commits (peak RSS of one export pass over 80,000
    items: 297-306 MB with in-memory scratch tables, 251 MB with this file)."""
    token = secrets.token_hex(6)
    name = f"scratch_{token}"
    path = warehouse.root / SPILL_FOLDER / f"{os.getpid()}-{token}.duckdb"
    literal = "'" + str(path).replace("'", "''") + "'"
    con.execute(f"ATTACH {literal} AS {name} (ROW_GROUP_SIZE {SCRATCH_ROW_GROUP_ROWS})")
    try:
        yield name
    finally:
        con.execute(f"DETACH {name}")
        for file in (path, path.with_name(path.name + ".wal")):
            file.unlink(missing_ok=True)


def scan_rows(
    warehouse: Warehouse, sql: str, params: list[Any] | None = None
) -> list[dict[str, Any]]:
    """`warehouse.rows` through the memory-bounded database (for aggregates: few rows)."""
    with scan_connection(warehouse) as con:
        return con.sql(sql, params=params or None).to_arrow_table().to_pylist()


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
        with scan_connection(self.warehouse) as con:
            reader = con.sql(self.sql, params=self.params or None).to_arrow_reader(self.chunk_rows)
            for batch in reader:
                yield self.convert(batch.to_pylist())

    def convert(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Hook for subclasses: adjust one chunk of rows before they are handed out."""
        return rows

    def __len__(self) -> int:
        if self._count is None:
            counted = scan_rows(
                self.warehouse, f"SELECT count(*) AS n FROM ({self.sql})", self.params
            )
            self._count = int(counted[0]["n"])
        return self._count

    def __bool__(self) -> bool:
        return len(self) > 0


def sort_key_sql(terms: Sequence[str]) -> str:
    """`ORDER BY <terms>` (ascending, NULLs last: DuckDB's default) as one BLOB whose byte
    order is that order (DuckDB's `create_sort_key`)."""
    return "create_sort_key(" + ", ".join(f"{term}, 'ASC NULLS LAST'" for term in terms) + ")"


def row_bytes_sql(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """SQL of an estimate of a row's bytes in a sort of `table` (without its sort key): its
    strings' and nested values' text lengths, plus 16 bytes per column."""
    columns = con.sql(f"SELECT * EXCLUDE ({SORT_KEY}) FROM {table} LIMIT 0")
    terms = [str(16 * len(columns.columns))]
    for name, dtype in zip(columns.columns, columns.types, strict=True):
        column = '"' + name.replace('"', '""') + '"'
        kind = str(dtype)
        if kind == "VARCHAR":
            terms.append(f"coalesce(strlen({column}), 0)")
        elif kind == "BLOB":
            terms.append(f"coalesce(octet_length({column}), 0)")
        elif "[" in kind or kind.startswith(("STRUCT", "MAP", "UNION")):
            terms.append(f"coalesce(strlen(CAST({column} AS VARCHAR)), 0)")
    return " + ".join(terms)


def read_sorted(
    con: duckdb.DuckDBPyConnection, table: str, chunk_rows: int
) -> Iterator[pa.RecordBatch]:
    """The rows of `table` by its SORT_KEY column, without it, `chunk_rows` at a time.

    Only the keys (and each row's size, `row_bytes_sql`) are sorted whole; they cut the
    order into ranges of at most SORT_RANGE_ROWS rows and about SORT_RANGE_BYTES, and
    each range is then selected (`sort_key` between its bounds: a scan of the narrow key
    column) and sorted on its own, so DuckDB never sorts more whole rows than one range."""
    bounds: list[bytes] = []  # the first key of every range but the first
    filled = 0.0  # ranges filled so far, counted in fractions of a range
    keys = con.sql(
        f"SELECT {SORT_KEY}, {row_bytes_sql(con, table)} FROM {table} ORDER BY {SORT_KEY}"
    )
    for batch in keys.to_arrow_reader(KEY_BATCH_ROWS):
        if not batch.num_rows:
            continue
        # Each row takes its share of a range by bytes or by rows, whichever is larger;
        # a row whose share crosses a whole number starts a range.
        sizes = batch.column(1).to_numpy(zero_copy_only=False).astype(np.float64)
        share = np.maximum(sizes / SORT_RANGE_BYTES, 1 / SORT_RANGE_ROWS)
        after = filled + np.cumsum(share)
        starts = np.flatnonzero(np.floor(after) > np.floor(after - share))
        bounds += batch.column(0).take(pa.array(starts, pa.int64())).to_pylist()
        filled = float(after[-1])
    edges: list[bytes | None] = [None, *bounds, None]
    for low, high in itertools.pairwise(edges):
        where = [(f"{SORT_KEY} >= ?", low), (f"{SORT_KEY} < ?", high)]
        clause = " AND ".join(sql for sql, value in where if value is not None) or "TRUE"
        params = [value for _, value in where if value is not None]
        in_range = con.sql(
            f"SELECT * EXCLUDE ({SORT_KEY}) FROM {table} WHERE {clause} ORDER BY {SORT_KEY}",
            params=params or None,
        )
        # Closed even when the rows' reader stops early, so the scratch database can go.
        with closing(in_range.to_arrow_reader(chunk_rows)) as reader:
            yield from reader


class SortedRows(StreamedRows):
    """The rows of `sql` (with `params`) in the order of `order_terms` (SQL over its
    columns, ascending, NULLs last), sorted as `read_sorted` does: the rows are written
    with their sort key into a scratch table first. Ties keep no particular order."""

    def __init__(
        self,
        warehouse: Warehouse,
        sql: str,
        params: list[Any] | None,
        order_terms: Sequence[str],
        chunk_rows: int | None = None,
    ) -> None:
        if not order_terms:
            raise ValueError("SortedRows needs at least one ORDER BY term")
        super().__init__(warehouse, sql, params, chunk_rows)
        self.order_terms = tuple(order_terms)

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        with (
            scan_connection(self.warehouse) as con,
            scratch_database(con, self.warehouse) as scratch,
        ):
            table = f"{scratch}.sorted"
            con.execute(
                f"CREATE TABLE {table} AS SELECT *, {sort_key_sql(self.order_terms)} "
                f"AS {SORT_KEY} FROM ({self.sql})",
                self.params or None,
            )
            for batch in read_sorted(con, table, self.chunk_rows):
                yield self.convert(batch.to_pylist())


def split_groups(
    rows: Iterable[dict[str, Any]],
) -> Iterator[tuple[str, Iterator[dict[str, Any]]]]:
    """(split, its rows) for rows that arrive grouped by split; each group is consumed
    lazily and must be read before the next one is asked for (as `itertools.groupby`)."""
    yield from itertools.groupby(rows, key=lambda row: row["split"])
