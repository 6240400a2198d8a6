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
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import resolve_warehouse, sql_dir
from pipeline.errors import ForgeError, ReadOnlyQueryError, SchemaError
from pipeline.redact import redact_table
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
    """Streams batches into one partition; the partition becomes visible on `commit()`.

    An OS error while writing (disk full, file size limit, permissions) aborts the write,
    removes the temporary file and raises one ForgeError naming the partition file and the
    OS's reason; the previous version of the partition is untouched."""

    def __init__(self, table: schemas.TableSchema, final_path: Path) -> None:
        self.table = table
        self.final_path = final_path
        self.rows_written = 0
        self._tmp_path = final_path.with_name(
            f".{final_path.name}.{os.getpid()}.{secrets.token_hex(4)}{_PARTIAL_SUFFIX}"
        )
        self._writer: pq.ParquetWriter | None = None
        with self._os_errors():
            final_path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._tmp_path, table.arrow, compression="zstd")

    @contextlib.contextmanager
    def _os_errors(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:  # pyarrow raises OSError for the failed write too
            self.abort()
            reason = exc.strerror or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise WriteFailed(f"cannot write {self.final_path}: {reason}") from exc

    def write(self, rows: Rows) -> int:
        """Append rows (dicts, an Arrow table or a record batch); returns how many."""
        batch = redact_table(to_arrow(self.table, rows))  # nothing stored carries a secret
        if self._writer is None:
            raise ForgeError(f"partition {self.final_path} is already closed")
        if batch.num_rows:
            with self._os_errors():
                self._writer.write_table(batch)
            self.rows_written += batch.num_rows
        return batch.num_rows

    def commit(self) -> Path:
        if self._writer is None:
            raise ForgeError(f"partition {self.final_path} is already closed")
        with self._os_errors():
            self._writer.close()
            self._writer = None
            with open(self._tmp_path, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(self._tmp_path, self.final_path)
        fsync_dir(self.final_path.parent)
        return self.final_path

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        self._tmp_path.unlink(missing_ok=True)


class WriteFailed(ForgeError):
    """The OS refused a warehouse write (disk full, size limit, permissions)."""


def fsync_dir(path: Path) -> None:
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

    def connect(self, settings: Mapping[str, str] | None = None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with every table and view defined.

        Library code reads through this rather than the catalog file, so pipeline
        stages never contend for the catalog's file lock (a user may have it open).
        The views are defined once per process and data folder; each call returns a
        cursor of that connection, which is safe to use from its own thread.

        `settings` (DuckDB configuration, e.g. `memory_limit`, `threads`,
        `temp_directory`) gives a database of its own, cached per settings the same way:
        those options are database-wide, so setting them on the shared one would change
        every other query of the process.
        """
        self.ensure_catalog()
        fingerprint = schemas.catalog_fingerprint()
        return _view_connection(self.data_dir, fingerprint, settings).cursor()

    def query(
        self, sql: str, params: list[Any] | None = None, settings: Mapping[str, str] | None = None
    ) -> pa.Table:
        with self.connect(settings) as con:
            return con.sql(sql, params=params or None).to_arrow_table()

    def rows(
        self, sql: str, params: list[Any] | None = None, settings: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        return self.query(sql, params, settings).to_pylist()

    def read_only_sql(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a user's SQL against the catalog file: queries only, and they can read the
        warehouse's data folder and nothing else (see `_sandboxed_catalog`).

        The one entry point for SQL typed by a user (`forge sql`, viewers)."""
        self.ensure_catalog()
        check_read_only(sql)
        con = _sandboxed_catalog(self.catalog_path, self.data_dir)
        try:
            cursor = con.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            return columns, cursor.fetchall()
        except duckdb.PermissionException as exc:
            raise ReadOnlyQueryError(
                f"`forge sql` reads only the warehouse data folder {self.data_dir}: "
                f"{_first_line(exc)}"
            ) from None
        except duckdb.Error as exc:
            raise ForgeError(f"query failed: {_first_line(exc)}") from None
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
        expected = {
            "fingerprint": fingerprint,
            "data_dir": str(self.data_dir),
            "storage_version": catalog_storage_version(),  # older catalogs are rewritten
        }
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
        """Write the catalog to a temporary file, in a storage version the DuckDB CLI from
        PyPI reads (see `catalog_storage_version`), and rename it over the old one: no
        write lock on the live file is needed, and a reader holding it open keeps a
        consistent old copy."""
        tmp = self.catalog_path.with_name(
            f".{self.catalog_path.name}.{os.getpid()}.{secrets.token_hex(4)}{_PARTIAL_SUFFIX}"
        )
        version = catalog_storage_version()
        option = f" (STORAGE_VERSION {_sql_literal(version)})" if version else ""
        con = duckdb.connect()
        try:
            con.execute(f"ATTACH {_sql_literal(str(tmp))} AS forge_catalog{option}")
            con.execute("USE forge_catalog")
            _define_views(con, self.data_dir)
            con.execute("CHECKPOINT")
            con.execute("USE memory")
            con.execute("DETACH forge_catalog")
        except BaseException:
            con.close()
            tmp.unlink(missing_ok=True)
            tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
            raise
        con.close()
        # A write-ahead log left beside the old file would be replayed into the new one.
        self.catalog_path.with_name(self.catalog_path.name + ".wal").unlink(missing_ok=True)
        os.replace(tmp, self.catalog_path)
        fsync_dir(self.catalog_path.parent)


# The catalog must open in the DuckDB CLI as distributed on PyPI (`pip install duckdb-cli`;
# 1.5.6 when checked), which reads storage versions 64-68 ("v1.0.0" to "v1.5.x"), while the
# duckdb 2.0 Python package writes version 69 by default. `ATTACH ... (STORAGE_VERSION
# 'vX.Y.Z')` (DuckDB >= 1.2) writes an older one; views are stored as SQL text, so the
# older format loses nothing here. Older Python packages already write an older version.
CATALOG_STORAGE_VERSION = (1, 5)


def catalog_storage_version() -> str | None:
    """The STORAGE_VERSION the catalog is written with (None: the library's default)."""
    match = re.match(r"(\d+)\.(\d+)", duckdb.__version__)
    installed = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if installed < (1, 2):
        return None
    major, minor = min(installed, CATALOG_STORAGE_VERSION)
    return f"v{major}.{minor}.0"


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
        if pid is not None and pid != os.getpid() and not pid_alive(pid):
            path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_VIEW_CONNECTIONS: dict[
    tuple[int, str, str, tuple[tuple[str, str], ...]], duckdb.DuckDBPyConnection
] = {}
_VIEW_CONNECTIONS_LOCK = threading.Lock()


@atexit.register
def _close_view_connections() -> None:
    with _VIEW_CONNECTIONS_LOCK:
        for con in _VIEW_CONNECTIONS.values():
            with contextlib.suppress(Exception):
                con.close()
        _VIEW_CONNECTIONS.clear()


def _view_connection(
    data_dir: Path, fingerprint: str, settings: Mapping[str, str] | None = None
) -> duckdb.DuckDBPyConnection:
    # Keyed by pid too: a connection must not cross a fork (Dask/multiprocessing workers).
    config = {name: str(value) for name, value in (settings or {}).items()}
    key = (os.getpid(), str(data_dir), fingerprint, tuple(sorted(config.items())))
    with _VIEW_CONNECTIONS_LOCK:
        con = _VIEW_CONNECTIONS.get(key)
        if con is None:
            con = duckdb.connect(config=config)
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


def _first_line(exc: BaseException) -> str:
    """DuckDB's message and its hint (`Did you mean "clips"?`) on one line, without the
    caret drawing of the query text that follows them."""
    lines = str(exc).strip().split("\n\n", 1)[0].splitlines()
    return " ".join(line.strip() for line in lines if line.strip()) or type(exc).__name__


def _sandboxed_catalog(catalog_path: Path, data_dir: Path) -> duckdb.DuckDBPyConnection:
    """The catalog opened read-only with DuckDB's own access controls, for user SQL.

    A read-only database still lets queries read any file the process can (read_blob,
    read_csv, glob) and fetch extensions from the internet, so: extensions are never
    installed or loaded behind the query's back; file access is limited to the data
    folder (DuckDB also allows the open catalog file itself); and the configuration is
    locked so a statement cannot undo any of it. `allowed_directories` can only be set
    once the database has started, hence SETs after connect rather than `config=`.
    """
    con = duckdb.connect(
        str(catalog_path),
        read_only=True,
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )
    try:
        con.execute(f"SET allowed_directories = [{_sql_literal(str(data_dir) + os.sep)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def check_read_only(sql: str) -> None:
    """Refuse any statement that is not a query (COPY, INSERT, ATTACH, SET, ...).

    EXPLAIN is allowed only as a plan of one SELECT: `EXPLAIN ANALYZE` runs the statement
    it explains (an `EXPLAIN ANALYZE COPY ... TO` writes the file), so it is refused.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(f"cannot parse SQL: {_first_line(exc)}") from None
    if not statements:
        raise ReadOnlyQueryError("no SQL statement given")
    for statement in statements:
        kind = statement.type.name
        if kind not in _READ_ONLY_STATEMENTS:
            raise ReadOnlyQueryError(
                f"`forge sql` is read-only: {kind} statements are refused. Open the catalog "
                "with the duckdb CLI or Python if you need your own tables."
            )
        if kind == "EXPLAIN":
            _check_explain(statement.query)


def _check_explain(text: str) -> None:
    """EXPLAIN [(options)] <one SELECT>, with no ANALYZE among the options."""
    tokens = [
        (position, kind)
        for position, kind in duckdb.tokenize(text)
        if kind != duckdb.token_type.comment
    ]

    def word(index: int) -> str:
        start = tokens[index][0]
        end = tokens[index + 1][0] if index + 1 < len(tokens) else len(text)
        return text[start:end].strip().rstrip(",").upper()

    index, depth = 1, 0  # token 0 is EXPLAIN itself
    while index < len(tokens):
        current = word(index)
        if current in {"ANALYZE", "ANALYSE"}:
            raise ReadOnlyQueryError(
                "`forge sql` is read-only: EXPLAIN ANALYZE executes the statement it "
                "explains and is refused; use EXPLAIN without ANALYZE"
            )
        if current.startswith("("):
            depth += 1
        elif current.startswith(")"):
            depth -= 1
        elif depth == 0:
            break
        index += 1
    explained = text[tokens[index][0] :] if index < len(tokens) else ""
    try:
        inner = duckdb.extract_statements(explained)
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(f"cannot parse SQL: {_first_line(exc)}") from None
    if len(inner) != 1 or inner[0].type.name != "SELECT":
        kinds = ", ".join(s.type.name for s in inner) or "nothing"
        raise ReadOnlyQueryError(
            f"`forge sql` is read-only: EXPLAIN of {kinds} is refused (only of a SELECT)"
        )
