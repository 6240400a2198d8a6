"""Table schemas, read from the DDL in `warehouse/tables/*.sql`.

The SQL files are the single source of truth for column names and types: the Parquet
writer derives its Arrow schema from them, and the catalog exposes each table as a view
of the same name over its Parquet files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.config import sql_dir
from pipeline.errors import SchemaError


@dataclass(frozen=True)
class TableSchema:
    name: str
    ddl: str
    arrow: pa.Schema

    @property
    def columns(self) -> list[str]:
        return self.arrow.names


def _table_files(root: Path) -> list[Path]:
    return sorted((root / "tables").glob("*.sql"))


@cache
def _load(root: Path) -> dict[str, TableSchema]:
    schemas: dict[str, TableSchema] = {}
    con = duckdb.connect()
    try:
        for path in _table_files(root):
            ddl = path.read_text(encoding="utf-8")
            before = set(_table_names(con))
            try:
                con.execute(ddl)
            except duckdb.Error as exc:
                raise SchemaError(f"{path}: invalid table DDL: {exc}") from exc
            created = sorted(set(_table_names(con)) - before)
            if len(created) != 1:
                raise SchemaError(f"{path}: must create exactly one table, created {created}")
            name = created[0]
            if name != path.stem:
                raise SchemaError(f"{path}: declares table '{name}', expected '{path.stem}'")
            arrow = con.sql(f'SELECT * FROM "{name}" LIMIT 0').to_arrow_table().schema
            schemas[name] = TableSchema(name=name, ddl=ddl, arrow=arrow)
    finally:
        con.close()
    return schemas


def _table_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]


def all_tables(root: Path | None = None) -> dict[str, TableSchema]:
    return _load((root or sql_dir()).resolve())


def table(name: str, root: Path | None = None) -> TableSchema:
    tables = all_tables(root)
    if name not in tables:
        raise SchemaError(
            f"unknown table '{name}': no warehouse/tables/{name}.sql (known: {', '.join(tables)})"
        )
    return tables[name]


def catalog_fingerprint(root: Path | None = None) -> str:
    """Changes whenever any table or view SQL changes, so the catalog knows to rebuild."""
    base = (root or sql_dir()).resolve()
    digest = hashlib.sha256()
    for path in sorted([*base.glob("tables/*.sql"), *base.glob("views/*.sql")]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
