"""A failing stage (the LLM server is down) leaves the completed stages' data intact; the
rerun finishes the rest without redoing them; a third run sends no LLM request at all.
The LLM is a real local OpenAI-compatible HTTP server (pipeline.llm.scripted_server)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client

from flows.build import build_flow
from flows.stages.params import BuildParams
from pipeline.llm.scripted_server import DEFAULT_MODEL, ScriptedServer
from pipeline.storage import Warehouse

pytestmark = pytest.mark.usefixtures("prefect_harness")

TASK = "auditorybench-animal"


def closed_port() -> int:
    """A port nothing listens on any more (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_params(root: Path, port: int) -> BuildParams:
    return BuildParams(
        warehouse=str(root),
        tasks=[TASK],
        stages=["ingest", "generate", "export", "report"],
        llm={
            "backend": "openai",
            "model": DEFAULT_MODEL,
            "base_url": f"http://127.0.0.1:{port}/v1",
            "concurrency": 4,
            "max_retries": 0,
            "max_failures": 3,
            "backoff_base_s": 0,
        },
        generate={"retries": 0},
    )


def clip_files(wh: Warehouse) -> dict[str, int]:
    return {p: wh.partition_path("clips", p).stat().st_mtime_ns for p in wh.partitions("clips")}


def test_llm_down_then_rerun_finishes_without_redoing_completed_work(
    tmp_path: Path, schema_replies: Callable[[dict[str, Any], int], Any]
) -> None:
    port = closed_port()
    wh = Warehouse(tmp_path / "warehouse")
    params = build_params(wh.root, port)

    unchanged = "the current auditorybench-animal items are unchanged"
    with pytest.raises(Exception, match=unchanged):
        build_flow(params)
    (failed,) = wh.rows("SELECT status, error, counts FROM runs")
    assert failed["status"] == "failed" and unchanged in failed["error"]
    clips = wh.rows("SELECT count(*) AS n FROM clips")[0]["n"]
    assert clips > 80 and json.loads(failed["counts"])["ingest"]["clips"] == clips
    assert wh.partitions("item_records") == []
    ingested = clip_files(wh)

    with ScriptedServer(schema_replies, port=port) as server:
        summary = build_flow(params)
        first_requests = server.request_count
        assert first_requests > 0
        assert clip_files(wh) == ingested  # ingest came from the cache, not re-read
        assert summary.stages["generate"].counts["generation_versions"][TASK]
        assert wh.rows("SELECT count(*) AS n FROM items_current WHERE task = ?", [TASK])[0]["n"]

        build_flow(params)
        assert server.request_count == first_requests  # nothing changed: no request sent

    statuses = [r["status"] for r in wh.rows("SELECT status FROM runs ORDER BY started_at")]
    assert statuses == ["failed", "completed", "completed"]
    (run,) = wh.rows("SELECT * FROM runs WHERE run_id = ?", [summary.run_id])
    assert run["llm_endpoint"] == f"127.0.0.1:{port}" and run["model"] == DEFAULT_MODEL

    # the endpoint's global concurrency limit was created with the engine's concurrency
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(f"llm:127.0.0.1:{port}")
    assert limit.limit == 4 and limit.active
