"""Kill-and-resume: a run killed midway resends only what it had not recorded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.llm import GenerationEngine, LLMConfig, LLMRequest, PromptLibrary
from pipeline.llm.scripted_server import ScriptedServer
from pipeline.storage import Warehouse

PROMPTS = Path(__file__).parent / "prompts"
REPO = Path(__file__).resolve().parents[2]
N_REQUESTS = 60

CHILD = """
import sys
from pipeline.llm import GenerationEngine, LLMConfig, LLMRequest, PromptLibrary
from pipeline.storage import Warehouse
sys.path.insert(0, {tests!r})
from test_llm_resume import config, requests
GenerationEngine(Warehouse({warehouse!r}), PromptLibrary.load(base_dir={prompts!r}),
                 config({url!r}), "killed-run").run(requests())
"""


def config(url: str) -> LLMConfig:
    return LLMConfig(
        backend="openai",
        base_url=url,
        model="m",
        concurrency=4,
        max_retries=0,
        flush_every=4,
        flush_interval_s=0.2,
    )


def requests() -> list[LLMRequest]:
    return [
        LLMRequest(
            item_key=f"item-{i:02d}",
            prompt="demo/animal",
            variables={"title": f"clip {i}", "description": "d", "tags": ["dog"]},
        )
        for i in range(N_REQUESTS)
    ]


def deterministic_reply(request: dict[str, Any], count: int) -> dict[str, Any]:
    title = request["messages"][1]["content"].split("\n")[0]
    return {"decline": False, "sentence": f"{title}: [MASK] barks.", "answer": "dog"}


def slow_reply(request: dict[str, Any], count: int) -> Any:
    from pipeline.llm.scripted_server import Reply

    return Reply(content=deterministic_reply(request, count), delay_s=0.05)


def test_killed_run_resumes_sending_only_unfinished_requests(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh")
    warehouse.ensure_catalog()
    with ScriptedServer(slow_reply) as server:
        code = CHILD.format(
            tests=str(Path(__file__).parent),
            warehouse=str(warehouse.root),
            prompts=str(PROMPTS),
            url=server.base_url,
        )
        child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
        try:
            deadline = time.monotonic() + 60
            # Kill once half the requests went out and at least one chunk was recorded.
            while time.monotonic() < deadline and not (
                server.request_count >= N_REQUESTS // 2 and warehouse.partitions("llm_calls")
            ):
                if child.poll() is not None:
                    break
                time.sleep(0.01)
            assert child.poll() is None, "the child finished before it could be killed"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(timeout=30)
        sent_before_kill = server.request_count
        recorded = warehouse.rows("SELECT status, count(*) AS n FROM llm_calls GROUP BY 1")
        assert len(recorded) == 1 and recorded[0]["status"] == "ok"
        finished = recorded[0]["n"]
        assert 0 < finished < N_REQUESTS
        assert sent_before_kill < N_REQUESTS

        library = PromptLibrary.load(base_dir=PROMPTS)
        resumed = GenerationEngine(warehouse, library, config(server.base_url), "resume").run(
            requests()
        )
        assert server.request_count - sent_before_kill == N_REQUESTS - finished
        assert sum(r.cached for r in resumed) == finished

    # Same results as a run that was never interrupted.
    fresh = Warehouse(tmp_path / "fresh")
    with ScriptedServer(deterministic_reply) as server:
        uninterrupted = GenerationEngine(
            fresh, PromptLibrary.load(base_dir=PROMPTS), config(server.base_url), "clean"
        ).run(requests())
    assert [(r.item_key, r.call_key, r.status, r.parsed) for r in resumed] == [
        (r.item_key, r.call_key, r.status, r.parsed) for r in uninterrupted
    ]
