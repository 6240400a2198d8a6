"""The Prefect API that `forge` commands report to: the configured one, else a long-lived
local server that `forge` starts once and every later command reuses.

Facts about Prefect 3.8 this relies on (prefect/server/api/server.py,
`SubprocessASGIServer`, and prefect/settings/models/server/ephemeral.py):

* Without `PREFECT_API_URL`, every process that runs a flow starts its own temporary
  server: a `uvicorn` subprocess serving `prefect.server.api.server:create_app`, polled on
  `/api/health` for `PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS` (default 20 s)
  and stopped by an `atexit` hook. Start-up (database migrations, block registration) took
  11-25 s per command on the 2-core development machine, timed out under load, and a
  killed process (SIGKILL skips `atexit`) left the server listening.
* `create_app` reads its database from the settings (default `$PREFECT_HOME/prefect.db`,
  SQLite), and uvicorn exits with status 3 when its port is taken.

So `ensure_api()` does, in order: use `PREFECT_API_URL` when the user set it (environment
or Prefect profile) after checking it answers; else reuse the server recorded in
`$PREFECT_HOME/forge-server.json` when its process is alive and `/api/health` answers;
else start one detached (own session, so it outlives `forge` and a Ctrl-C of `forge` does
not reach it), record pid and port, and wait for its health check (default 180 s,
`FORGE_PREFECT_STARTUP_TIMEOUT`). A file lock makes concurrent `forge` commands start at
most one server. `forge server stop` ends it; it uses the same database as
`prefect server start`, so the UI shows every run either way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict

from pipeline.errors import ForgeError
from pipeline.storage.warehouse import pid_alive as process_alive

STATE_FILE = "forge-server.json"
LOG_FILE = "forge-server.log"
LOCK_FILE = "forge-server.lock"
STARTUP_TIMEOUT_ENV = "FORGE_PREFECT_STARTUP_TIMEOUT"
DEFAULT_STARTUP_TIMEOUT_S = 180.0
_APP_FACTORY = "prefect.server.api.server:create_app"


class ServerState(BaseModel):
    """What `forge` records about the local server it started."""

    model_config = ConfigDict(extra="forbid")

    pid: int
    port: int
    prefect_version: str
    started_at: str

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


class ApiTarget(BaseModel):
    """The API a command reports to, and how it was found."""

    model_config = ConfigDict(extra="forbid")

    url: str
    origin: Literal["configured", "reused", "started"]


def prefect_home() -> Path:
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()).expanduser()


def configured_api_url() -> str | None:
    """PREFECT_API_URL from the environment, a Prefect profile or an active settings
    context (e.g. `prefect_test_harness`)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    try:
        response = httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def read_state(home: Path) -> ServerState | None:
    path = home / STATE_FILE
    try:
        return ServerState.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def is_our_server(pid: int) -> bool:
    """True when `pid` runs the Prefect app factory (guards against a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return process_alive(pid)  # no /proc (macOS): trust the pid
    return _APP_FACTORY in cmdline


def ensure_api(*, quiet: bool = False) -> ApiTarget:
    """The Prefect API for this command, starting the local server when none runs."""
    configured = configured_api_url()
    if configured:
        _check_configured(configured)
        return ApiTarget(url=configured, origin="configured")
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home):
        state = read_state(home)
        if state is not None and _usable(state):
            if _wait_healthy(state, startup_timeout()):
                return ApiTarget(url=state.api_url, origin="reused")
            stop_server(home)  # alive but never became healthy: replace it
        elif state is not None:
            stop_server(home)
        state = start_server(home, quiet=quiet)
        return ApiTarget(url=state.api_url, origin="started")


@contextlib.contextmanager
def using_api(target: ApiTarget) -> Iterator[None]:
    """Run the body (and any subprocess it starts) against `target`."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = target.url  # for worker subprocesses (Dask, ...)
    try:
        with temporary_settings(updates={PREFECT_API_URL: target.url}):
            yield
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


def startup_timeout() -> float:
    text = os.environ.get(STARTUP_TIMEOUT_ENV)
    if not text:
        return DEFAULT_STARTUP_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        raise ForgeError(
            f"{STARTUP_TIMEOUT_ENV}={text!r} is not a number of seconds; unset it or set e.g. 180"
        ) from None
    if value <= 0:
        raise ForgeError(f"{STARTUP_TIMEOUT_ENV} must be positive, got {text!r}")
    return value


def start_server(home: Path, *, quiet: bool = False) -> ServerState:
    """Start the detached local server, record it, and wait until it answers."""
    import prefect
    from prefect.settings import get_current_settings

    timeout_s = startup_timeout()
    deadline = time.monotonic() + timeout_s
    log_path = home / LOG_FILE
    env = {
        **os.environ,
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }
    env.pop("PREFECT_API_URL", None)
    while True:
        port = free_port()
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    str(Path(prefect.__file__).parent.parent),
                    "--factory",
                    _APP_FACTORY,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "error",
                    "--lifespan",
                    "on",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # outlives this command; Ctrl-C here does not reach it
                close_fds=True,
            )
        state = ServerState(
            pid=process.pid,
            port=port,
            prefect_version=prefect.__version__,
            started_at=datetime.now(UTC).isoformat(),
        )
        _write_state(home, state)
        if not quiet:
            print(
                f"forge: starting a local Prefect server on http://127.0.0.1:{port} "
                f"(once; later commands reuse it; `forge server stop` ends it)",
                file=sys.stderr,
            )
        while time.monotonic() < deadline:
            code = process.poll()
            if code == 3:  # port taken between free_port() and bind: try another
                break
            if code is not None:
                (home / STATE_FILE).unlink(missing_ok=True)
                raise ForgeError(
                    f"the local Prefect server exited with status {code} while starting; "
                    f"see {log_path}"
                )
            if healthy(state.api_url, timeout_s=1.0):
                return state
            time.sleep(0.2)
        else:
            stop_server(home)
            raise ForgeError(
                f"the local Prefect server did not answer within {timeout_s:.0f} s "
                f"(log: {log_path}); raise {STARTUP_TIMEOUT_ENV} on a busy machine, or "
                "start one yourself (`prefect server start`) and set PREFECT_API_URL"
            )


def stop_server(home: Path | None = None) -> ServerState | None:
    """Stop the server `forge` started (if it still runs) and forget it."""
    home = home or prefect_home()
    state = read_state(home)
    if state is not None and process_alive(state.pid) and is_our_server(state.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state.pid, signal.SIGTERM)
        for _ in range(50):
            if not process_alive(state.pid):
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.pid, signal.SIGKILL)
    (home / STATE_FILE).unlink(missing_ok=True)
    return state


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _usable(state: ServerState) -> bool:
    import prefect

    return (
        state.prefect_version == prefect.__version__
        and process_alive(state.pid)
        and is_our_server(state.pid)
    )


def _wait_healthy(state: ServerState, timeout_s: float) -> bool:
    """A recorded server may still be starting (another command started it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if healthy(state.api_url):
            return True
        if time.monotonic() >= deadline or not process_alive(state.pid):
            return False
        time.sleep(0.2)


def _check_configured(url: str) -> None:
    if not url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        return  # remote or cloud APIs need auth for /health; Prefect reports their errors
    if not healthy(url, timeout_s=5.0):
        raise ForgeError(
            f"the Prefect API at {url} (PREFECT_API_URL) does not answer; start it "
            "(`prefect server start`) or unset PREFECT_API_URL to let forge run its own"
        )


def _write_state(home: Path, state: ServerState) -> None:
    path = home / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    with open(home / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def describe(home: Path | None = None) -> dict[str, object]:
    """Status of the recorded server, for `forge server status`."""
    home = home or prefect_home()
    state = read_state(home)
    if state is None:
        return {"running": False, "state_file": str(home / STATE_FILE)}
    running = process_alive(state.pid) and is_our_server(state.pid)
    return {
        "running": running,
        "healthy": running and healthy(state.api_url),
        "api_url": state.api_url,
        "ui": state.api_url.removesuffix("/api"),
        **json.loads(state.model_dump_json()),
        "log": str(home / LOG_FILE),
    }
