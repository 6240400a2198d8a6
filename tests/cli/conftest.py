"""Helpers of the CLI tests: the real `forge` executable in a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FORGE = Path(sys.executable).with_name("forge")


class Result:
    def __init__(self, process: subprocess.CompletedProcess[str], seconds: float) -> None:
        self.code = process.returncode
        self.stdout = process.stdout
        self.stderr = process.stderr
        self.seconds = seconds

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def clean_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a new user: no Prefect API configured, a private PREFECT_HOME
    (so a forge-started server leaves its state file there; stopped after the test), no
    endpoints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FORGE_"))}
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        env.pop(name, None)
    home = tmp_path / "prefect_home"
    env["PREFECT_HOME"] = str(home)
    env["FORGE_WAREHOUSE"] = str(tmp_path / "warehouse")
    yield env
    from flows.server import stop_server

    stop_server(home)


@pytest.fixture
def forge_cli(clean_env: dict[str, str]) -> Callable[..., Result]:
    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Result:
        start = time.monotonic()
        process = subprocess.run(
            [str(FORGE), *args],
            env={**clean_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(process, time.monotonic() - start)

    return run
