"""The long-lived local Prefect server: started once, reused, replaced when dead, stopped.

Runs the real `forge` executable with a private PREFECT_HOME and no PREFECT_API_URL.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from flows.server import STATE_FILE, ServerState, process_alive

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _state(home: Path) -> ServerState:
    return ServerState.model_validate_json((home / STATE_FILE).read_text())


def _wait_gone(pid: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.1)
    return not process_alive(pid)


def test_started_once_reused_replaced_and_stopped(forge_cli, clean_env) -> None:
    home = Path(clean_env["PREFECT_HOME"])
    first = forge_cli("server", "start")
    assert first.code == 0, first.stderr
    assert first.stdout.startswith("started: http://127.0.0.1:")
    state = _state(home)
    assert httpx.get(f"{state.api_url}/health", timeout=5).status_code == 200

    again = forge_cli("server", "start")
    assert again.code == 0 and again.stdout.strip() == f"reused: {state.api_url}"
    assert "starting a local Prefect server" not in again.stderr

    status = json.loads(forge_cli("server", "status").stdout)
    assert status["running"] and status["healthy"] and status["pid"] == state.pid

    os.killpg(state.pid, signal.SIGKILL)  # a crashed server is noticed and replaced
    assert _wait_gone(state.pid)
    replaced = forge_cli("server", "start")
    assert replaced.code == 0 and replaced.stdout.startswith("started: "), replaced.stderr
    new_state = _state(home)
    assert new_state.pid != state.pid

    stopped = forge_cli("server", "stop")
    assert stopped.code == 0 and f"stopped pid {new_state.pid}" in stopped.stdout
    assert _wait_gone(new_state.pid)
    assert not (home / STATE_FILE).exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{new_state.api_url}/health", timeout=2)


def test_a_configured_api_that_does_not_answer_is_one_line(forge_cli, clean_env) -> None:
    result = forge_cli(
        "export",
        "--task",
        "nlar",
        "--format",
        "jsonl",
        "--out",
        "out",
        env={"PREFECT_API_URL": "http://127.0.0.1:9/api"},
    )
    assert result.code == 2 and "Traceback" not in result.stderr
    (line,) = result.error_lines()
    assert "http://127.0.0.1:9/api" in line and "PREFECT_API_URL" in line
    assert not (Path(clean_env["PREFECT_HOME"]) / STATE_FILE).exists()
