"""A real `prefect server`: deploy from prefect.yaml, start a process worker, run `build`.

Marked `server` (deselect locally with `-m "not server"`); it runs in CI. Every process it
starts gets its own PREFECT_HOME under tmp and is killed by process group at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.storage import Warehouse

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVER_START_TIMEOUT_S = 90
RUN_TIMEOUT_S = 150


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prefect_env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = open(log, "wb")  # noqa: SIM115 - closed with the process in stop()
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Kill the process group (the server's uvicorn, the worker's flow-run children)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_healthy(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    url = f"http://127.0.0.1:{port}/api/health"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prefect server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {SERVER_START_TIMEOUT_S} s")


def prefect(args: list[str], env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        [str(BIN / "prefect"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def run_deployment(name: str, params: dict[str, object], env: dict[str, str]) -> str:
    """`prefect deployment run NAME --watch`: its output ends with the final state."""
    return prefect(
        [
            "deployment",
            "run",
            name,
            "--param",
            f"params={json.dumps(params)}",
            "--watch",
            "--watch-interval",
            "2",
            "--watch-timeout",
            str(RUN_TIMEOUT_S),
        ],
        env,
        RUN_TIMEOUT_S + 30,
    )


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    port = free_port()
    env = prefect_env(tmp_path / "prefect_home", port)
    server = start(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        tmp_path / "server.log",
    )
    try:
        wait_healthy(port, server, tmp_path / "server.log")
        yield env
    finally:
        stop(server)


@pytest.mark.server
def test_deploy_from_prefect_yaml_and_run_build_on_a_worker(
    prefect_server: dict[str, str], tmp_path: Path
) -> None:
    env = prefect_server
    prefect(["work-pool", "create", "forge-process", "--type", "process"], env, 60)
    prefect(["--no-prompt", "deploy", "--all"], env, 120)
    listed = prefect(["deployment", "ls"], env, 60)
    for name in ("build", "regenerate", "stage-export", "train"):
        assert re.search(rf"{name}/default", listed), listed

    worker = start(
        [str(BIN / "prefect"), "worker", "start", "--pool", "forge-process", "--limit", "1"],
        env,
        tmp_path / "worker.log",
    )
    warehouse = tmp_path / "warehouse"
    params = {"warehouse": str(warehouse), "stages": ["ingest"], "tasks": []}
    try:
        out = run_deployment("build/default", params, env)
    finally:
        stop(worker)
    assert "Completed" in out, out + (tmp_path / "worker.log").read_text()[-3000:]
    runs = Warehouse(warehouse).rows("SELECT flow_name, status FROM runs")
    assert runs == [{"flow_name": "build", "status": "completed"}]
    assert Warehouse(warehouse).rows("SELECT count(*) AS n FROM clips")[0]["n"] == 91

    # `forge serve` beside the deployed flows: its own `<flow>/served` deployments, the
    # work-pool ones untouched, and a served run completes
    serving = start([str(BIN / "forge"), "serve", "--limit", "1"], env, tmp_path / "serve.log")
    served_warehouse = tmp_path / "served-warehouse"
    params = {"warehouse": str(served_warehouse), "stages": ["ingest"], "tasks": []}
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while "build/served" not in (listed := prefect(["deployment", "ls"], env, 60)):
            assert serving.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, listed
            time.sleep(2)
        assert "build/default" in listed
        out = run_deployment("build/served", params, env)
    finally:
        stop(serving)
    assert "Completed" in out, out + (tmp_path / "serve.log").read_text()[-3000:]
    assert Warehouse(served_warehouse).rows("SELECT count(*) AS n FROM clips")[0]["n"] == 91
