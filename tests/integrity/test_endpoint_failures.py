"""An endpoint that refuses the run never replaces the current data, and the same command
resumes once it is healthy, sending only the calls that did not succeed.

Real CLI (`forge generate`, `forge export` through Typer and the Prefect test harness),
real HTTP: a closed port (connection refused) and the scripted OpenAI-compatible server
answering 401 or 404-for-the-model after a few good replies.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.llm.scripted_server import Reply, ScriptedServer, schema_reply
from pipeline.storage import Warehouse

TASK = "nlar"
MODEL = "broken-then-fixed"
GOOD_BEFORE_FAILING = 3  # requests the failing servers answer well before they refuse

runner = CliRunner()


def forge(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there once the socket is closed


def failing_after(status: int, message: str):
    def script(request: dict[str, Any], count: int) -> Any:
        if count <= GOOD_BEFORE_FAILING:
            return schema_reply(request, count)
        return Reply(status=status, error_message=message)

    return script


def export_bytes(wh: Path, out: Path) -> dict[str, bytes]:
    code, stdout, stderr = forge(
        "export", "--task", TASK, "--format", "jsonl", "--out", str(out), "--warehouse", str(wh)
    )
    assert code == 0, stdout + stderr
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert files and any(files.values())
    return files


def ok_call_keys(wh: Warehouse) -> set[str]:
    rows = wh.rows(
        "SELECT DISTINCT call_key FROM llm_calls WHERE status = 'ok' AND model = ?", [MODEL]
    )
    return {r["call_key"] for r in rows}


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("failure", ["connection-refused", "http-401", "http-404-model"])
def test_refused_generation_keeps_current_data_then_resumes(
    failure: str, sample_warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh = sample_warehouse.root
    code, out, err = forge(
        "generate", "--task", TASK, "--backend", "offline", "--warehouse", str(wh)
    )
    assert code == 0, out + err
    before_versions = sample_warehouse.rows(
        "SELECT DISTINCT split, generation_version FROM items_current WHERE task = ? ORDER BY 1",
        [TASK],
    )
    exported_before = export_bytes(wh, tmp_path / "before")

    monkeypatch.setenv("FORGE_LLM_MODEL", MODEL)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-key-0123456789")
    scripts = {
        "http-401": failing_after(401, "Incorrect API key provided"),
        "http-404-model": failing_after(404, f"The model `{MODEL}` does not exist"),
    }
    failing = ScriptedServer(scripts[failure]) if failure in scripts else None
    url = failing.start().base_url if failing else closed_port_url()
    try:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        started = time.monotonic()
        code, out, err = forge(
            "generate", "--task", TASK, "--backend", "openai", "--warehouse", str(wh)
        )
        elapsed = time.monotonic() - started
    finally:
        if failing:
            failing.stop()
    # Prefect's own run logs share stderr under the test runner; ours is the `error:` line.
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code != 0
    assert elapsed < 15, f"a refused endpoint took {elapsed:.1f} s to fail"
    assert len(lines) == 1, err
    assert url.split("//")[1].split("/")[0] in lines[0]  # names the endpoint...
    assert "sk-test-secret" not in err + out  # ...never the key
    assert lines[0].endswith(f"the current {TASK} items are unchanged"), lines[0]

    # Nothing of the failed run became current, and the export is byte-identical.
    assert (
        sample_warehouse.rows(
            "SELECT DISTINCT split, generation_version FROM items_current WHERE task = ? "
            "ORDER BY 1",
            [TASK],
        )
        == before_versions
    )
    assert export_bytes(wh, tmp_path / "after-failure") == exported_before
    finished_before_resume = ok_call_keys(sample_warehouse)
    if failing:  # the good replies before the refusal are kept, not asked again
        assert len(finished_before_resume) == GOOD_BEFORE_FAILING

    # The endpoint is healthy again: the same command completes, sending only what failed.
    with ScriptedServer(schema_reply) as healthy:
        monkeypatch.setenv("OPENAI_BASE_URL", healthy.base_url)
        code, out, err = forge(
            "generate", "--task", TASK, "--backend", "openai", "--warehouse", str(wh)
        )
        sent = healthy.request_count
    assert code == 0, out + err
    all_calls = ok_call_keys(sample_warehouse)
    assert sent == len(all_calls - finished_before_resume) > 0
    after_versions = sample_warehouse.rows(
        "SELECT DISTINCT generation_version FROM items_current WHERE task = ?", [TASK]
    )
    assert after_versions and all(
        r["generation_version"] not in {b["generation_version"] for b in before_versions}
        for r in after_versions
    )


def test_failed_share_guard_holds_even_when_the_engine_lets_the_run_finish(
    sample_warehouse: Warehouse,
) -> None:
    """Second guard, at the task level: the engine is told to tolerate every failure, yet
    more than max_failed_share of items without an answer writes nothing."""
    from pipeline.errors import LLMEndpointError
    from pipeline.llm import LLMConfig
    from pipeline.tasks.common.generate import generate_task

    def half_fail(request: dict[str, Any], count: int) -> Any:
        return Reply(status=500) if count % 2 else schema_reply(request, count)

    with ScriptedServer(half_fail) as server:
        tolerant = LLMConfig(
            backend="openai",
            base_url=server.base_url,
            model=MODEL,
            max_retries=0,
            max_failures=10_000,
            max_failed_share=1.0,
            refusal_limit=10_000,
        )
        with pytest.raises(LLMEndpointError) as failure:
            generate_task(sample_warehouse, TASK, tolerant, "half-failed", max_failed_share=0.2)
        assert server.request_count > 0
    assert failure.value.failed > 0.2 * failure.value.total
    assert "HTTP 500" in failure.value.cause
    assert sample_warehouse.partitions("item_records") == []
    assert sample_warehouse.rows("SELECT count(*) AS n FROM items_current")[0]["n"] == 0
