"""Shared test configuration: offline everywhere, one Prefect harness per session."""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub, transformers, datasets or prefect.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_MODE": "disabled",
}.items():
    os.environ[_name] = _value
for _name in (
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "FORGE_LLM_MODEL",
    "FORGE_WAREHOUSE",
    "FORGE_CLAP_BACKEND",
    "FORGE_CLAP_CHECKPOINT",
):
    os.environ.pop(_name, None)

import tempfile  # noqa: E402

# `forge` commands run in subprocesses start (or reuse) the long-lived local Prefect server
# recorded under PREFECT_HOME: give the test session its own home, and stop that server
# when the session ends (see `_stop_forge_server`), so no test touches ~/.prefect and no
# server outlives the suite.
_SESSION_PREFECT_HOME = tempfile.mkdtemp(prefix="forge-test-prefect-home-")
os.environ["PREFECT_HOME"] = _SESSION_PREFECT_HOME

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from pipeline.ingest import ingest_source  # noqa: E402
from pipeline.samples import SAMPLE_PATHS, sample_audio_root  # noqa: E402
from pipeline.samples.audio import write_sample_audio  # noqa: E402
from pipeline.storage import Warehouse  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _stop_forge_server() -> Iterator[None]:
    yield
    from flows.server import stop_server

    stop_server(Path(_SESSION_PREFECT_HOME))


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One `prefect_test_harness` for the whole session (it takes ~8 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def sample_audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    audio_dir = tmp_path_factory.mktemp("sample_audio")
    write_sample_audio(audio_dir)
    return audio_dir


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse")


@pytest.fixture
def sample_warehouse(tmp_path: Path, sample_audio_dir: Path) -> Warehouse:
    """A fresh warehouse with every embedded sample corpus ingested (no Prefect)."""
    wh = Warehouse(tmp_path / "warehouse")
    for source, path in SAMPLE_PATHS.items():
        ingest_source(wh, source, path, "test-ingest", sample_audio_root(sample_audio_dir, source))
    return wh
