"""`forge sql` reads the warehouse and nothing else: every way out of it is refused.

Two layers are tested separately: the statement check (`check_read_only`) and DuckDB's own
access controls on the connection (`_sandboxed_catalog`), so each still holds if the other
had a gap.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.errors import ForgeError, ReadOnlyQueryError
from pipeline.ingest import ingest_source
from pipeline.samples import SAMPLE_PATHS, sample_audio_root
from pipeline.storage import Warehouse
from pipeline.storage.warehouse import _sandboxed_catalog, check_read_only

CLOTHO_CLIPS = 14  # clips in the embedded Clotho sample


@pytest.fixture(scope="module")
def clotho_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    root = tmp_path_factory.mktemp("sql-security")
    audio = root / "audio"
    from pipeline.samples.audio import write_sample_audio

    write_sample_audio(audio)
    wh = Warehouse(root / "warehouse")
    ingest_source(
        wh, "clotho", SAMPLE_PATHS["clotho"], "test-ingest", sample_audio_root(audio, "clotho")
    )
    return wh


def clip_count(wh: Warehouse) -> int:
    return wh.read_only_sql("SELECT count(*) FROM clips")[1][0][0]


def test_explain_analyze_copy_writes_no_file(
    clotho_warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    attack = "EXPLAIN ANALYZE COPY (SELECT 'echo pwned' AS l) TO 'x.sh' (HEADER false, QUOTE '')"
    with pytest.raises(ReadOnlyQueryError, match="EXPLAIN ANALYZE"):
        clotho_warehouse.read_only_sql(attack)
    assert not (tmp_path / "x.sh").exists()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "template",
    [
        "EXPLAIN ANALYZE COPY (SELECT * FROM clips LIMIT 1) TO '{target}'",
        "explain (format json, analyse) copy (select * from clips limit 1) to '{target}'",
        "EXPLAIN /* plan */ ANALYZE COPY (SELECT * FROM clips LIMIT 1) TO '{target}'",
        "EXPLAIN COPY (SELECT * FROM clips LIMIT 1) TO '{target}'",
        "COPY (SELECT * FROM clips LIMIT 1) TO '{target}'",
        "SELECT 1; COPY (SELECT * FROM clips LIMIT 1) TO '{target}'",
    ],
)
def test_no_fake_partition_can_be_written_into_the_data_folder(
    clotho_warehouse: Warehouse, template: str
) -> None:
    target = clotho_warehouse.data_dir / "clips" / "source=evil.parquet"
    with pytest.raises(ReadOnlyQueryError, match="read-only"):
        clotho_warehouse.read_only_sql(template.format(target=target))
    assert not target.exists()
    assert clip_count(clotho_warehouse) == CLOTHO_CLIPS


def test_the_connection_itself_cannot_write_into_the_data_folder(
    clotho_warehouse: Warehouse,
) -> None:
    # Below the statement check: even if EXPLAIN ANALYZE got through, DuckDB must not write
    # outside the allowed folder; inside it the statement check is what stops it, so this
    # checks the folder outside.
    outside = clotho_warehouse.root / "outside.parquet"
    con = _sandboxed_catalog(clotho_warehouse.catalog_path, clotho_warehouse.data_dir)
    try:
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{outside}'")
    finally:
        con.close()
    assert not outside.exists()


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_blob('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM glob('/root/**')",
        "SELECT * FROM read_blob('/proc/self/environ')",
        "SELECT * FROM read_blob('{root}/../secret.txt')",
        "SELECT * FROM read_blob('{data}/../../secret.txt')",
        "SELECT * FROM read_csv('{root}/../secret.txt')",
        "SELECT * FROM read_parquet('{data}/clips/../../../secret.txt')",
    ],
)
def test_files_outside_the_data_folder_cannot_be_read(
    clotho_warehouse: Warehouse, query: str
) -> None:
    secret = clotho_warehouse.root.parent / "secret.txt"
    secret.write_text("password=hunter2\n")
    text = query.format(root=clotho_warehouse.root, data=clotho_warehouse.data_dir)
    with pytest.raises(ReadOnlyQueryError, match="reads only the warehouse data folder"):
        clotho_warehouse.read_only_sql(text)


def test_the_environment_of_the_process_is_not_readable(
    clotho_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-environ-0123456789")
    with pytest.raises(ReadOnlyQueryError):
        clotho_warehouse.read_only_sql("SELECT content FROM read_text('/proc/self/environ')")
    # getenv() exists only in DuckDB's shell; here it must fail, not answer.
    with pytest.raises(ForgeError) as failed:
        clotho_warehouse.read_only_sql("SELECT getenv('OPENAI_API_KEY')")
    assert "sk-test-environ" not in str(failed.value)


def test_a_url_is_refused_without_trying_to_install_an_extension(
    clotho_warehouse: Warehouse,
) -> None:
    with pytest.raises(ReadOnlyQueryError) as refused:
        clotho_warehouse.read_only_sql("SELECT * FROM read_csv('http://127.0.0.1:1/x.csv')")
    message = str(refused.value)
    assert "http://127.0.0.1:1/x.csv" in message
    assert "extension" not in message.lower() and "install" not in message.lower()


@pytest.mark.parametrize(
    "statement",
    [
        "SET enable_external_access = true",
        "RESET allowed_directories",
        "SET allowed_directories = ['/']",
        "SET lock_configuration = false",
        "SET autoinstall_known_extensions = true",
        "SELECT 1; SET enable_external_access = true",
        "ATTACH '/tmp/other.duckdb' AS other",
        "DETACH forge",
        "COPY clips TO 'clips.csv'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "FORCE INSTALL httpfs FROM 'http://127.0.0.1:1'",
        "PRAGMA enable_profiling",
        "CALL pragma_version()",
        "CREATE MACRO m() AS 1",
        "EXPORT DATABASE '/tmp/dump'",
    ],
)
def test_statements_other_than_queries_are_refused(
    clotho_warehouse: Warehouse, statement: str
) -> None:
    with pytest.raises(ReadOnlyQueryError, match="read-only"):
        clotho_warehouse.read_only_sql(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "SET enable_external_access = true",
        "RESET allowed_directories",
        "SET lock_configuration = false",
        "SET autoload_known_extensions = true",
    ],
)
def test_the_locked_configuration_cannot_be_undone(
    clotho_warehouse: Warehouse, statement: str
) -> None:
    con = _sandboxed_catalog(clotho_warehouse.catalog_path, clotho_warehouse.data_dir)
    try:
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute(statement)
        with pytest.raises(duckdb.PermissionException):
            con.execute("SELECT * FROM read_blob('/etc/passwd')")
    finally:
        con.close()


@pytest.mark.parametrize(
    "query",
    [
        "EXPLAIN SELECT * FROM clips",
        "explain (format json) select count(*) from clips",
        "WITH c AS (SELECT * FROM clips) SELECT count(*) FROM c",
        "FROM clips SELECT count(*)",
    ],
)
def test_queries_and_plain_explain_are_accepted(query: str) -> None:
    check_read_only(query)


def test_the_warehouse_itself_stays_readable(clotho_warehouse: Warehouse) -> None:
    columns, rows = clotho_warehouse.read_only_sql(
        "SELECT source, count(*) AS n FROM clips GROUP BY 1"
    )
    assert (columns, rows) == (["source", "n"], [("clotho", CLOTHO_CLIPS)])
    files = clotho_warehouse.read_only_sql(
        f"SELECT count(*) FROM glob('{clotho_warehouse.data_dir}/clips/**/*.parquet')"
    )[1][0][0]
    assert files == len(clotho_warehouse.partitions("clips")) + 1  # + the empty schema file
    plan = clotho_warehouse.read_only_sql("EXPLAIN SELECT * FROM clips")
    assert plan[0] == ["explain_key", "explain_value"]


def test_cli_reads_the_warehouse_and_refuses_the_machine(clotho_warehouse: Warehouse) -> None:
    runner = CliRunner()
    wh = str(clotho_warehouse.root)
    ok = runner.invoke(
        app, ["sql", "select source, count(*) from clips group by 1", "--warehouse", wh]
    )
    assert ok.exit_code == 0, ok.output
    assert "clotho" in ok.stdout and str(CLOTHO_CLIPS) in ok.stdout
    refused = runner.invoke(
        app, ["sql", "select * from read_blob('/etc/passwd')", "--warehouse", wh]
    )
    assert refused.exit_code == 2
    error_lines = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "/etc/passwd" in error_lines[0]
    assert "Traceback" not in refused.output
