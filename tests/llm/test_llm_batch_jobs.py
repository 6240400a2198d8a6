"""Batch mode end to end against a real local Batch-API server (pipeline.llm.batch_server)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.llm import GenerationEngine, LLMConfig, LLMRequest, PromptLibrary
from pipeline.llm.batch_jobs import LLMBatchIncomplete, cancel_batches, latest_batches
from pipeline.llm.batch_server import BatchServer
from pipeline.llm.records import LLMBatchRecord
from pipeline.llm.scripted_server import ScriptedServer
from pipeline.storage import Warehouse
from pipeline.storage.schema import table

PROMPTS = Path(__file__).parent / "prompts"
REPO = Path(__file__).resolve().parents[2]


def reply(request: dict[str, Any], n: int) -> dict[str, Any]:
    title = request["messages"][1]["content"].split("\n")[0].removeprefix("Clip title: ")
    return {"decline": False, "sentence": f"{title} is a [MASK].", "answer": "dog"}


def config_for(url: str, **overrides: Any) -> LLMConfig:
    values: dict[str, Any] = {
        "backend": "openai",
        "base_url": url,
        "model": "test-model",
        "mode": "batch",
        "batch_poll_s": 0.02,
        "batch_poll_max_s": 0.05,
        "max_retries": 0,
    }
    return LLMConfig(**(values | overrides))


def requests(count: int) -> list[LLMRequest]:
    return [
        LLMRequest(
            item_key=f"item-{i}",
            prompt="demo/animal",
            variables={"title": f"Dog {i}", "description": "A dog barks.", "tags": ["dog"]},
        )
        for i in range(count)
    ]


def engine_for(warehouse: Warehouse, config: LLMConfig, run_id: str = "r1") -> GenerationEngine:
    return GenerationEngine(warehouse, PromptLibrary.load(base_dir=PROMPTS), config, run_id)


def test_batch_table_model_matches_the_ddl() -> None:
    assert table("llm_batches").columns == list(LLMBatchRecord.model_fields)


def test_job_is_split_and_results_equal_live_mode(tmp_path: Path) -> None:
    batch_wh, live_wh = Warehouse(tmp_path / "b"), Warehouse(tmp_path / "l")
    with BatchServer(reply) as server:
        config = config_for(server.base_url, batch_max_requests=4)
        results = engine_for(batch_wh, config).run(requests(10))
        assert server.paid == 10 and len(server.batches) == 3
    with ScriptedServer(reply) as live:
        live_config = config_for(live.base_url, mode="live")
        live_results = engine_for(live_wh, live_config).run(requests(10))
    keep = ("item_key", "call_key", "status", "parsed", "prompt_version")
    assert [r.model_dump(include=set(keep)) for r in results] == [
        r.model_dump(include=set(keep)) for r in live_results
    ]
    states = latest_batches(batch_wh)
    assert [(s["state"], s["requests"], s["imported"]) for s in states] == [
        ("completed", 4, True),
        ("completed", 4, True),
        ("completed", 2, True),
    ]
    origins = batch_wh.rows("SELECT origin, count(*) AS n FROM llm_calls GROUP BY 1")
    assert origins == [{"origin": "batch-import", "n": 10}]
    # Cached afterwards: a live run sends nothing.
    with ScriptedServer(reply) as live:
        engine_for(batch_wh, config_for(live.base_url, mode="live"), "r2").run(requests(10))
        assert live.request_count == 0


def test_byte_limit_splits_batches(warehouse: Warehouse) -> None:
    with BatchServer(reply) as server:
        line_bytes = 1500  # each request line is ~1 kB: two never fit in 1.5 kB
        config = config_for(server.base_url, batch_max_bytes=line_bytes)
        engine_for(warehouse, config).run(requests(3))
        assert len(server.batches) == 3 and server.paid == 3


def test_expired_batch_is_resubmitted_without_paying_twice(warehouse: Warehouse) -> None:
    outcome = lambda n: "expired" if n == 1 else "completed"  # noqa: E731
    with BatchServer(reply, outcome=outcome) as server:
        results = engine_for(warehouse, config_for(server.base_url)).run(requests(6))
        assert server.paid == 6 and len(set(server.paid_ids)) == 6
        assert len(server.batches) == 2
    assert all(r.status == "ok" for r in results)
    states = latest_batches(warehouse)
    assert [(s["state"], s["requests"], s["submission"]) for s in states] == [
        ("expired", 6, 1),
        ("completed", 3, 2),
    ]


def test_failed_batches_stop_after_the_resubmission_limit(warehouse: Warehouse) -> None:
    with BatchServer(reply, outcome=lambda n: "failed") as server:
        config = config_for(server.base_url, batch_resubmits=1)
        with pytest.raises(LLMBatchIncomplete, match="4 requests got no result"):
            engine_for(warehouse, config).run(requests(4))
        assert len(server.batches) == 2 and server.paid == 0


def test_cancel_imports_partial_results_and_a_rerun_sends_the_rest(warehouse: Warehouse) -> None:
    with BatchServer(reply) as server:
        server.release.clear()  # batches stay validating until released
        config = config_for(server.base_url)
        failure: list[BaseException] = []

        def background() -> None:
            try:
                engine_for(warehouse, config).run(requests(6))
            except BaseException as exc:
                failure.append(exc)

        worker = threading.Thread(target=background)
        worker.start()
        deadline = time.monotonic() + 20
        while not any(s["batch_id"] for s in latest_batches(warehouse)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        [asked] = cancel_batches(warehouse, config)
        worker.join(20)
        server.release.set()
        assert isinstance(failure[0], LLMBatchIncomplete)
        assert f"batches {asked} were cancelled" in str(failure[0])
        assert server.paid == 3  # the cancelled batch ran half its requests
        results = engine_for(warehouse, config, "r2").run(requests(6))
        assert server.paid == 6 and len(set(server.paid_ids)) == 6
    assert sum(r.cached for r in results) == 3 and all(r.status == "ok" for r in results)


SUBPROCESS = textwrap.dedent(
    """
    import sys
    from pipeline.llm import GenerationEngine, LLMConfig, LLMRequest, PromptLibrary
    from pipeline.storage import Warehouse
    warehouse, url, prompts = sys.argv[1:4]
    config = LLMConfig(backend="openai", base_url=url, model="test-model", mode="batch",
                       batch_poll_s=0.05, batch_poll_max_s=0.05, batch_max_requests=3)
    requests = [LLMRequest(item_key=f"item-{i}", prompt="demo/animal",
                           variables={"title": f"Dog {i}", "description": "A dog barks.",
                                      "tags": ["dog"]}) for i in range(6)]
    GenerationEngine(Warehouse(warehouse), PromptLibrary.load(base_dir=prompts), config,
                     "killed").run(requests)
    """
)


def test_kill_during_polling_then_resume_pays_nothing_twice(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "warehouse")
    with BatchServer(reply) as server:
        server.release.clear()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen(
            [sys.executable, "-c", SUBPROCESS, str(warehouse.root), server.base_url, str(PROMPTS)],
            env=env,
            cwd=REPO,
        )
        try:
            deadline = time.monotonic() + 60
            while sum(1 for s in latest_batches(warehouse) if s["batch_id"]) < 2:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.2)  # a few polls while the batches are held
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        assert len(server.batches) == 2 and server.paid == 0
        server.release.set()
        config = config_for(server.base_url, batch_max_requests=3)
        results = engine_for(warehouse, config, "resumed").run(requests(6))
        assert len(server.batches) == 2  # adopted, not submitted again
        assert server.paid == 6 and len(set(server.paid_ids)) == 6
    assert all(r.status == "ok" for r in results)
    assert {s["run_id"] for s in latest_batches(warehouse)} == {"resumed"}
