"""The warehouse: Parquet partitions on disk plus a DuckDB catalog of views over them.

Layout under the warehouse root (default `./warehouse`)::

    data/<table>/<partition>.parquet   one file per partition, replaced atomically
    data/<table>/_schema.parquet        zero rows; keeps the view valid before any write
    forge.duckdb                        catalog: one view per table + `warehouse/views/*.sql`

A partition is the unit a stage reruns (e.g. `source=clotho` for ingest): writing it
streams batches into a temporary file that is renamed over the old one only when the
write completed, so a killed write leaves the previous version readable.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import resolve_warehouse, sql_dir
from pipeline.errors import ForgeError, ReadOnlyQueryError, SchemaError
from pipeline.storage import schema as schemas

_PARTITION_RE = re.compile(r"^[A-Za-z0-9_.=+\-]+(/[A-Za-z0-9_.=+\-]+)*$")
_EMPTY_FILE = "_schema.parquet"
_PARTIAL_SUFFIX = ".partial"
_READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN"}

Rows = Iterable[Mapping[str, Any]] | pa.Table | pa.RecordBatch


def new_run_id() -> str:
    """A sortable, unique id for runs that do not come from Prefect."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class PartitionWriter:
    """Streams batches into one partition; the partition becomes visible on `commit()`."""

    def __init__(self, table: schemas.TableSchema, final_path: Path) -> None:
        self.table = table
        self.final_path = final_path
        self.rows_written = 0
        final_path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp_path = final_path.with_name(
            f".{final_path.name}.{os.getpid()}.{secrets.token_hex(4)}{_PARTIAL_SUFFIX}"
        )
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            self._tmp_path, table.arrow, compression="zstd"
        )

    def write(self, rows: Rows) -> int:
        """Append rows (dicts, an Arrow table or a record batch); returns how many."""
        batch = to_arrow(self.table, rows)
        if self._writer is None:
            raise ForgeError(f"partition {self.final_path} is already closed")
        if batch.num_rows:
            self._writer.write_table(batch)
            self.rows_written += batch.num_rows
        return batch.num_rows

    def commit(self) -> Path:
        if self._writer is None:
            raise ForgeError(f"partition {self.final_path} is already closed")
        self._writer.close()
        self._writer = None
        with open(self._tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self._tmp_path, self.final_path)
        _fsync_dir(self.final_path.parent)
        return self.final_path

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        self._tmp_path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def to_arrow(table: schemas.TableSchema, rows: Rows) -> pa.Table:
    """Rows → an Arrow table with exactly the table's declared schema (or SchemaError)."""
    if isinstance(rows, pa.RecordBatch):
        rows = pa.Table.from_batches([rows])
    if isinstance(rows, pa.Table):
        unknown = set(rows.column_names) - set(table.columns)
        if unknown:
            raise SchemaError(f"table '{table.name}': unknown columns {sorted(unknown)}")
        columns = [
            rows.column(name) if name in rows.column_names else pa.nulls(rows.num_rows, field.type)
            for name, field in zip(table.arrow.names, table.arrow, strict=True)
        ]
        try:
            return pa.Table.from_arrays(columns, schema=table.arrow)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return pa.Table.from_arrays(
                [c.cast(f.type) for c, f in zip(columns, table.arrow, strict=True)],
                schema=table.arrow,
            )
    rows = list(rows)
    allowed = set(table.columns)
    for index, row in enumerate(rows):
        unknown = set(row) - allowed
        if unknown:
            raise SchemaError(
                f"table '{table.name}', row {index}: unknown columns {sorted(unknown)}"
            )
    try:
        return pa.Table.from_pylist(rows, schema=table.arrow)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SchemaError(f"table '{table.name}': rows do not match the schema: {exc}") from exc


class Warehouse:
    """Handle on one warehouse root. Cheap to create; the catalog is built lazily."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = resolve_warehouse(root)
        self.data_dir = self.root / "data"
        self.catalog_path = self.root / "forge.duckdb"
        self._ready = False

    # ---- writing -------------------------------------------------------------------

    def partition_path(self, table: str, partition: str) -> Path:
        if not _PARTITION_RE.match(partition) or ".." in partition.split("/"):
            raise ForgeError(
                f"invalid partition name {partition!r}: use letters, digits and _.=+- "
                "separated by '/'"
            )
        return self.data_dir / table / f"{partition}.parquet"

    @contextlib.contextmanager
    def writer(self, table: str, partition: str) -> Iterator[PartitionWriter]:
        """Context manager: stream batches into a partition, replace it atomically on exit."""
        self.ensure_catalog()
        spec = schemas.table(table)
        final = self.partition_path(table, partition)
        _remove_orphan_partials(final.parent)
        writer = PartitionWriter(spec, final)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.commit()

    def write_partition(self, table: str, partition: str, rows: Rows) -> int:
        """Replace one partition with `rows`; returns the row count written."""
        with self.writer(table, partition) as writer:
            writer.write(rows)
        return writer.rows_written

    def delete_partition(self, table: str, partition: str) -> bool:
        path = self.partition_path(table, partition)
        if path.exists():
            path.unlink()
            return True
        return False

    def partitions(self, table: str) -> list[str]:
        base = self.data_dir / table
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(base).with_suffix(""))
            for p in base.rglob("*.parquet")
            if p.name != _EMPTY_FILE
        )

    # ---- reading -------------------------------------------------------------------

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with every table and view defined.

        Library code reads through this rather than the catalog file, so pipeline
        stages never contend for the catalog's file lock (a user may have it open).
        The views are defined once per process and data folder; each call returns a
        cursor of that connection, which is safe to use from its own thread.
        """
        self.ensure_catalog()
        return _view_connection(self.data_dir, schemas.catalog_fingerprint()).cursor()

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        with self.connect() as con:
            return con.sql(sql, params=params or None).to_arrow_table()

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        return self.query(sql, params).to_pylist()

    def read_only_sql(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a user's SQL against the catalog file, refusing anything but queries."""
        self.ensure_catalog()
        check_read_only(sql)
        con = duckdb.connect(str(self.catalog_path), read_only=True)
        try:
            cursor = con.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            return columns, cursor.fetchall()
        finally:
            con.close()

    # ---- catalog -------------------------------------------------------------------

    def ensure_catalog(self) -> None:
        """Create data folders, empty schema files and the catalog views if out of date."""
        if self._ready:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fingerprint = schemas.catalog_fingerprint()
        marker = self.root / ".catalog.json"
        expected = {"fingerprint": fingerprint, "data_dir": str(self.data_dir)}
        for spec in schemas.all_tables().values():
            _write_schema_file(self.data_dir / spec.name, spec)
        current = json.loads(marker.read_text()) if marker.exists() else None
        if current != expected or not self.catalog_path.exists():
            self._rebuild_catalog()
            tmp = marker.with_suffix(".tmp")
            tmp.write_text(json.dumps(expected))
            os.replace(tmp, marker)
        self._ready = True

    def _rebuild_catalog(self) -> None:
        for attempt in range(20):
            try:
                con = duckdb.connect(str(self.catalog_path))
                break
            except duckdb.IOException as exc:
                if attempt == 19:
                    raise ForgeError(
                        f"cannot update the catalog {self.catalog_path}: {exc}. "
                        "Close other programs that hold it open for writing."
                    ) from exc
                time.sleep(0.25)
        try:
            for name, kind in con.execute(
                "SELECT view_name, 'VIEW' FROM duckdb_views() WHERE NOT internal "
                "UNION ALL SELECT table_name, 'TABLE' FROM duckdb_tables()"
            ).fetchall():
                con.execute(f'DROP {kind} IF EXISTS "{name}" CASCADE')
            _define_views(con, self.data_dir)
        finally:
            con.close()


def _write_schema_file(table_dir: Path, spec: schemas.TableSchema) -> None:
    path = table_dir / _EMPTY_FILE
    if path.exists() and pq.read_schema(path).equals(spec.arrow, check_metadata=False):
        return
    table_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{_EMPTY_FILE}.{os.getpid()}{_PARTIAL_SUFFIX}")
    pq.write_table(spec.arrow.empty_table(), tmp)
    os.replace(tmp, path)


def _remove_orphan_partials(folder: Path) -> None:
    """Temp files of writers that died (their pid is gone) are never read; tidy them."""
    if not folder.is_dir():
        return
    for path in folder.glob(f".*{_PARTIAL_SUFFIX}"):
        parts = path.name.split(".")
        pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
        if pid is not None and pid != os.getpid() and not _pid_alive(pid):
            path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_VIEW_CONNECTIONS: dict[tuple[int, str, str], duckdb.DuckDBPyConnection] = {}
_VIEW_CONNECTIONS_LOCK = threading.Lock()


@atexit.register
def _close_view_connections() -> None:
    with _VIEW_CONNECTIONS_LOCK:
        for con in _VIEW_CONNECTIONS.values():
            with contextlib.suppress(Exception):
                con.close()
        _VIEW_CONNECTIONS.clear()


def _view_connection(data_dir: Path, fingerprint: str) -> duckdb.DuckDBPyConnection:
    # Keyed by pid too: a connection must not cross a fork (Dask/multiprocessing workers).
    key = (os.getpid(), str(data_dir), fingerprint)
    with _VIEW_CONNECTIONS_LOCK:
        con = _VIEW_CONNECTIONS.get(key)
        if con is None:
            con = duckdb.connect()
            _define_views(con, data_dir)
            _VIEW_CONNECTIONS[key] = con
        return con


def _define_views(con: duckdb.DuckDBPyConnection, data_dir: Path) -> None:
    for spec in schemas.all_tables().values():
        pattern = _sql_literal(str(data_dir / spec.name / "**" / "*.parquet"))
        con.execute(
            f'CREATE OR REPLACE VIEW "{spec.name}" AS SELECT * FROM read_parquet('
            f"{pattern}, union_by_name = true)"
        )
    for path in sorted((sql_dir() / "views").glob("*.sql")):
        try:
            con.execute(path.read_text(encoding="utf-8"))
        except duckdb.Error as exc:
            raise SchemaError(f"{path}: invalid view SQL: {exc}") from exc


def check_read_only(sql: str) -> None:
    """Refuse any statement that is not a query (COPY, INSERT, ATTACH, SET, ...)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(f"cannot parse SQL: {exc}") from exc
    if not statements:
        raise ReadOnlyQueryError("no SQL statement given")
    for statement in statements:
        kind = statement.type.name
        if kind not in _READ_ONLY_STATEMENTS:
            raise ReadOnlyQueryError(
                f"`forge sql` is read-only: {kind} statements are refused. Open the catalog "
                "with the duckdb CLI or Python if you need your own tables."
            )
