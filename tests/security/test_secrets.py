"""Secrets stay secret: redaction rules, the config's URL handling, and a real generation
against a server that echoes the credentials it receives into its replies."""

from __future__ import annotations

import base64
import logging
import re
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.stages.params import BuildParams
from pipeline.ingest import ingest_source
from pipeline.llm import LLMConfig
from pipeline.llm.scripted_server import ScriptedServer
from pipeline.redact import REDACTED, redact_table, redact_text, strip_userinfo
from pipeline.samples import SAMPLE_PATHS, sample_audio_root
from pipeline.storage import Warehouse

KEY = "sk-forge-e2e-KEY-0123456789abcdefghij"
USER, PASSWORD = "alice", "pw-e2e-S3cret-9876"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
MODEL = "echo-model"


# ---- rules ------------------------------------------------------------------------------


def test_text_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://{USER}:{PASSWORD}@127.0.0.1:9/v1")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-abcdefgh-1234")
    monkeypatch.setenv("SHORT_TOKEN", "abc")
    text = (
        f"key {KEY}; Authorization: Basic {BASIC}; user {USER}:{PASSWORD}; pw {PASSWORD}; "
        "Bearer eyJhbGciOiJIUzI1NiJ9.payload; http://bob:hunter2hunter2@x.org/v1; "
        "api_key=abcdefgh12; tok-abcdefgh-1234"
    )
    cleaned = redact_text(text)
    for secret in (KEY, BASIC, PASSWORD, "eyJhbGci", "hunter2", "abcdefgh12", "tok-abcdefgh"):
        assert secret not in cleaned
    assert "http://[redacted]@x.org/v1" in cleaned and "Bearer [redacted]" in cleaned
    # Ordinary text is left alone: short values, words after "bearer", plain URLs.
    ordinary = "a flag bearer marching; abc; see https://example.org/a@b; sk-learn"
    assert redact_text(ordinary) == ordinary


def test_table_redaction_reaches_nested_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    qa = pa.struct([("question", pa.string()), ("answer", pa.string())])
    table = pa.table(
        {
            "text": ["clean", f"Bearer {KEY}", None, "also clean"],
            "tags": [["a", KEY], None, [f"x {KEY}"], []],
            "qa": pa.array(
                [[{"question": f"q {KEY}", "answer": "a"}], [], None, [{"question": "q"}]],
                type=pa.list_(qa),
            ),
            "pair": pa.array(
                [{"question": "q", "answer": KEY}, None, {"question": KEY}, {"answer": "a"}],
                type=qa,
            ),
            "n": [1, 2, 3, 4],
        }
    )
    for part in (table, table.slice(1), table.slice(2, 2)):
        cleaned = redact_table(part)
        assert cleaned.schema == part.schema and cleaned.num_rows == part.num_rows
        assert KEY not in str(cleaned.to_pylist())
        assert cleaned.column("n").to_pylist() == part.column("n").to_pylist()
    assert redact_table(table).to_pylist()[0]["tags"] == ["a", REDACTED]
    clean = pa.table({"text": ["nothing here"], "tags": [["a"]]})
    assert redact_table(clean) is clean


def test_warehouse_never_stores_a_secret(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    warehouse.write_partition(
        "rejects",
        "p",
        [
            {
                "stage": "generate",
                "source": "s",
                "record_id": "r",
                "reason": "http_error",
                "detail": f"server said: Incorrect API key provided: {KEY}",
                "run_id": "r1",
            }
        ],
    )
    (row,) = warehouse.rows("SELECT detail FROM rejects")
    assert row["detail"] == f"server said: Incorrect API key provided: {REDACTED}"


def test_config_keeps_url_credentials_in_memory_only(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:9/v1"
    config = LLMConfig(backend="openai", base_url=url, model="m")
    assert config.base_url == url  # the HTTP client gets them
    shown = [repr(config), str(config), config.model_dump_json(), str(config.model_dump())]
    for text in shown:
        assert PASSWORD not in text and "127.0.0.1:9/v1" in text
    # A bare URL takes the credentials from $OPENAI_BASE_URL when it names that endpoint.
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    bare = LLMConfig.model_validate_json(config.model_dump_json())
    assert bare.base_url == url
    other = LLMConfig(backend="openai", base_url="http://127.0.0.1:10/v1", model="m")
    assert other.base_url == "http://127.0.0.1:10/v1"
    assert strip_userinfo("https://u:p@h:1/a?b=c") == "https://h:1/a?b=c"


def test_parameters_refuse_credentials_in_the_url() -> None:
    with pytest.raises(ValueError, match="must not carry credentials"):
        BuildParams.model_validate({"llm": {"base_url": f"http://{USER}:{PASSWORD}@h/v1"}})
    params = BuildParams.model_validate({"llm": {"base_url": "http://h/v1"}})
    assert params.llm.base_url == "http://h/v1"


def test_log_records_are_redacted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.INFO)
    logger = logging.getLogger("pipeline.llm.some_module")  # a child: propagated records
    logger.info("calling with %s", f"Bearer {KEY}")
    try:
        raise RuntimeError(f"upstream echoed {KEY}")
    except RuntimeError:
        logging.getLogger("flows.stages.generate").exception("failed")
    assert KEY not in caplog.text
    assert caplog.text.count(REDACTED) >= 2


# ---- end to end -------------------------------------------------------------------------

_SLOT = re.compile(r'^(\d+)\. .* Event: "(.*)"\. Answer set: .*\.$', re.MULTILINE)


def echo_server() -> ScriptedServer:
    """A real OpenAI-compatible server whose replies carry the Authorization header it got
    (raw, and decoded when Basic) and the request URL, inside valid NLAR JSON."""
    server: ScriptedServer

    def script(request: dict[str, Any], count: int) -> dict[str, Any]:
        headers = server.headers_seen[count - 1]
        auth = headers.get("authorization", "")
        decoded = ""
        if auth.startswith("Basic "):
            decoded = base64.b64decode(auth.removeprefix("Basic ")).decode()
        echo = f"[auth {auth} | {decoded} | http://{headers.get('host')}/v1/chat/completions]"
        name = request["response_format"]["json_schema"]["name"]
        if name == "nlar_describe_event":
            return {"decline": False, "description": f"A sound heard in them {echo}"}
        content = request["messages"][-1]["content"]
        qa = [
            {
                "slot": int(slot),
                "question": f"What about {event} in the two recordings? {echo}",
                "answer": "unclear",
                "feature": "",
            }
            for slot, event in _SLOT.findall(content)
        ]
        return {"decline": False, "qa": qa}

    server = ScriptedServer(script, models=[MODEL])
    return server


def prefect_database_files() -> list[Path]:
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    url = PREFECT_API_DATABASE_CONNECTION_URL.value()
    assert url and url.startswith("sqlite"), url
    db = Path(url.split(":///", 1)[1])
    assert db.is_file()
    return [p for p in db.parent.iterdir() if p.name.startswith(db.name)]


def readable_text(path: Path) -> str:
    """Parquet as its decoded values (the bytes are compressed), anything else as bytes."""
    if path.suffix == ".parquet":
        return str(pq.read_table(path).to_pylist())
    return path.read_bytes().decode("latin-1")


def ingested(root: Path, audio_dir: Path) -> Warehouse:
    wh = Warehouse(root)
    source = "clotho-aqa"
    ingest_source(wh, source, SAMPLE_PATHS[source], "ingest", sample_audio_root(audio_dir, source))
    return wh


@pytest.mark.usefixtures("prefect_harness")
def test_generation_against_an_echoing_server_stores_no_secret(
    tmp_path: Path,
    sample_audio_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    outputs: list[str] = []
    warehouses = [ingested(tmp_path / f"wh{i}", sample_audio_dir) for i in (1, 2)]
    exports = tmp_path / "exports"
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("FORGE_LLM_MODEL", MODEL)
    with echo_server() as server:
        bare = server.base_url
        with_credentials = bare.replace("http://", f"http://{USER}:{PASSWORD}@")
        # httpx sends URL credentials as Basic auth *instead of* the bearer key, so one run
        # shows the server the key and the other the password.
        for wh, url in zip(warehouses, (bare, with_credentials), strict=True):
            monkeypatch.setenv("OPENAI_BASE_URL", url)
            root = str(wh.root)
            for args in (
                ["generate", "--task", "nlar"],
                ["export", "--task", "nlar", "--format", "nlar-json", "--out", str(exports)],
            ):
                result = runner.invoke(app, [*args, "--warehouse", root])
                outputs += [result.stdout, result.stderr]
                assert result.exit_code == 0, result.output
        seen = {h.get("authorization") for h in server.headers_seen}
    # The secrets really went out and came back in the replies.
    assert f"Bearer {KEY}" in seen and f"Basic {BASIC}" in seen
    for wh in warehouses:
        echoed = wh.rows(
            "SELECT count(*) AS n FROM items WHERE task = 'nlar' AND input LIKE '%[auth %'"
        )[0]["n"]
        assert echoed > 0
        assert wh.rows("SELECT count(*) AS n FROM items_current WHERE task = 'nlar'")[0]["n"]
    exported = list(exports.rglob("*.json"))
    assert exported and any(REDACTED in p.read_text() for p in exported)

    secrets = (KEY, PASSWORD, BASIC)
    files = [p for wh in warehouses for p in wh.root.rglob("*") if p.is_file()]
    files += [p for p in exports.rglob("*") if p.is_file()]
    files += prefect_database_files()
    assert any(p.suffix == ".parquet" for p in files)
    for path in files:
        text = readable_text(path)
        for secret in secrets:
            assert secret not in text, f"{secret[:6]}... found in {path}"
    logs = "\n".join([caplog.text, *outputs, *capfd.readouterr()])
    for secret in secrets:
        assert secret not in logs

    # The generate stage's Prefect parameters carry the endpoint without credentials.
    (db,) = [p for p in prefect_database_files() if p.suffix == ".db"]
    with sqlite3.connect(db) as con:
        parameters = [r[0] for r in con.execute("SELECT parameters FROM flow_run")]
    endpoint = urlsplit(bare).netloc
    assert any(endpoint in p and USER not in p for p in parameters)
