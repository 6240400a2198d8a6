"""Endpoint-level failures, the per-call deadline, the prompt cap and reply robustness,
against real local HTTP servers."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import LLMEndpointError
from pipeline.llm import GenerationEngine, LLMConfig, LLMRequest, PromptLibrary
from pipeline.llm import engine as engine_module
from pipeline.llm.scripted_server import Reply, ScriptedServer
from pipeline.storage import Warehouse

PROMPTS = Path(__file__).parent / "prompts"
GOOD = {"decline": False, "sentence": "Woof is the sound a [MASK] makes.", "answer": "dog"}


@pytest.fixture(autouse=True)
def _forget_endpoint_modes() -> Iterator[None]:
    engine_module._OUTPUT_MODE_BY_ENDPOINT.clear()
    yield
    engine_module._OUTPUT_MODE_BY_ENDPOINT.clear()


def config_for(url: str, **overrides: Any) -> LLMConfig:
    values: dict[str, Any] = {
        "backend": "openai",
        "base_url": url,
        "model": "test-model",
        "concurrency": 1,
        "timeout_s": 5.0,
        "max_retries": 2,
        "backoff_base_s": 0.001,
        "backoff_max_s": 0.01,
    }
    return LLMConfig(**(values | overrides))


def requests(count: int, **variables: Any) -> list[LLMRequest]:
    base = {"description": "A dog barks.", "tags": ["dog"]} | variables
    return [
        LLMRequest(
            item_key=f"item-{i}", prompt="demo/animal", variables={"title": f"Dog {i}"} | base
        )
        for i in range(count)
    ]


def run(warehouse: Warehouse, config: LLMConfig, batch: list[LLMRequest], run_id: str = "r1"):
    engine = GenerationEngine(warehouse, PromptLibrary.load(base_dir=PROMPTS), config, run_id)
    return engine.run(batch), engine


def closed_port() -> int:
    with socket.socket() as probe:  # nothing listens on it once closed
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def recorded(warehouse: Warehouse) -> list[dict[str, Any]]:
    if not warehouse.partitions("llm_calls"):
        return []
    return warehouse.rows("SELECT status, error, http_status FROM llm_calls ORDER BY item_key")


def test_unreachable_endpoint_stops_after_a_handful_of_calls(warehouse: Warehouse) -> None:
    port = closed_port()
    # Credentials in the URL must not reach the message.
    config = config_for(f"http://user:hunter2pass@127.0.0.1:{port}/v1", concurrency=4)
    started = time.perf_counter()
    with pytest.raises(LLMEndpointError) as caught:
        run(warehouse, config, requests(60))
    assert time.perf_counter() - started < 5
    error = caught.value
    assert str(error) == (
        f"cannot use http://127.0.0.1:{port}/v1 (connection refused): 60 of 60 calls failed"
    )
    assert (error.cause, error.failed, error.total) == ("connection refused", 60, 60)
    rows = recorded(warehouse)
    # Five refusals in a row stop the run; calls already in flight finish (concurrency 4).
    assert 5 <= len(rows) <= 8
    assert {r["status"] for r in rows} == {"unreachable"}
    assert "hunter2pass" not in json.dumps(rows)


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        (Reply(status=401, error_message="Incorrect API key provided"), "HTTP 401 unauthorized"),
        (Reply(status=403, error_message="Forbidden"), "HTTP 403 forbidden"),
        (
            Reply(status=404, error_message="The model `test-model` does not exist"),
            "model 'test-model' not found (HTTP 404)",
        ),
    ],
)
def test_refusing_endpoint_names_the_cause(warehouse: Warehouse, reply: Reply, cause: str) -> None:
    with ScriptedServer(lambda request, n: reply) as server:
        with pytest.raises(LLMEndpointError) as caught:
            run(warehouse, config_for(server.base_url), requests(30))
        assert server.request_count == 5  # refusal_limit, none retried
    assert caught.value.cause == cause
    assert str(caught.value).endswith(f"({cause}): 30 of 30 calls failed")
    assert [r["http_status"] for r in recorded(warehouse)] == [reply.status] * 5


def test_a_success_resets_the_refusal_count(warehouse: Warehouse) -> None:
    script = lambda request, n: Reply(status=401) if n % 2 else GOOD  # noqa: E731
    with ScriptedServer(script) as server:
        config = config_for(server.base_url, refusal_limit=2, max_failed_share=1)
        results, _ = run(warehouse, config, requests(6))
        assert server.request_count == 6
    assert [r.status for r in results] == ["http_error", "ok"] * 3


def test_failed_share_stops_the_run_once_enough_calls_finished(warehouse: Warehouse) -> None:
    script = lambda request, n: Reply(status=500) if n % 2 else GOOD  # noqa: E731
    with ScriptedServer(script) as server:
        config = config_for(server.base_url, max_retries=0, failed_share_min_calls=10)
        with pytest.raises(LLMEndpointError) as caught:
            run(warehouse, config, requests(40))
        assert server.request_count == 10
    assert caught.value.cause == (
        "50% of calls failed, above max_failed_share 20%; most often HTTP 500"
    )
    assert (caught.value.failed, caught.value.total) == (5 + 30, 40)
    # Resume: the 5 good calls are cached, the rest is sent again.
    with ScriptedServer(lambda request, n: GOOD) as server:
        results, _ = run(warehouse, config_for(server.base_url), requests(40), run_id="r2")
        assert server.request_count == 35
    assert all(r.status == "ok" for r in results)


def test_trickling_server_is_bounded_by_the_call_deadline(warehouse: Warehouse) -> None:
    # One byte every 0.2 s of a ~400-byte reply would hold the call for ~80 s.
    with ScriptedServer(lambda request, n: Reply(content=GOOD, trickle_s=0.2)) as server:
        config = config_for(server.base_url, timeout_s=1.0, max_retries=1, max_failed_share=1)
        started = time.perf_counter()
        [result], _ = run(warehouse, config, requests(1))
        elapsed = time.perf_counter() - started
    assert (result.status, result.attempts) == ("timeout", 2)
    assert result.error == "no complete reply within 1 s"
    assert 2.0 <= elapsed < 4.5


def test_prompt_over_the_cap_is_not_sent_and_recorded(warehouse: Warehouse) -> None:
    with ScriptedServer(lambda request, n: GOOD) as server:
        config = config_for(server.base_url, max_prompt_chars=400)
        batch = requests(1) + requests(1, description="x" * 500)[:1]
        batch[1] = batch[1].model_copy(update={"item_key": "big"})
        results, engine = run(warehouse, config, batch)
        assert server.request_count == 1
    assert [r.status for r in results] == ["ok", "prompt_too_large"]
    assert results[1].error.startswith("the rendered prompt has ")
    assert "over max_prompt_chars 400; not sent" in results[1].error
    rows = warehouse.rows("SELECT item_key, status, attempts FROM llm_calls ORDER BY 1")
    assert rows == [
        {"item_key": "big", "status": "prompt_too_large", "attempts": 0},
        {"item_key": "item-0", "status": "ok", "attempts": 1},
    ]
    assert engine.last_summary is not None
    assert engine.last_summary.by_status == {"ok": 1, "prompt_too_large": 1}


def test_schema_invalid_reply_gets_one_repair_round(warehouse: Warehouse) -> None:
    def script(request: dict[str, Any], n: int) -> Any:
        title = request["messages"][1]["content"].split("\n")[0]
        repairing = request["messages"][-1]["content"].startswith("Your reply is not valid")
        if title.endswith("Dog 0"):  # fixed by the repair round
            return GOOD if repairing else {"decline": "no"}
        return "still not JSON"  # Dog 1: never fixed

    with ScriptedServer(script) as server:
        results, _ = run(warehouse, config_for(server.base_url), requests(2))
        sent = server.requests
    assert len(sent) == 4
    assert [(r.status, r.attempts) for r in results] == [("ok", 2), ("invalid_output", 2)]
    repair = next(
        r for r in sent if r["messages"][-1]["role"] == "user" and len(r["messages"]) == 4
    )
    assert repair["messages"][2] == {"role": "assistant", "content": '{"decline": "no"}'}
    assert "decline: Input should be a valid boolean" in repair["messages"][3]["content"]
    assert results[1].error.startswith("still invalid after 1 repair round(s): reply is not JSON")
    tokens = warehouse.rows("SELECT prompt_tokens, completion_tokens FROM llm_calls LIMIT 1")
    assert tokens == [{"prompt_tokens": 22, "completion_tokens": 14}]  # both attempts


def test_truncated_reply_is_retried_once_with_more_room(warehouse: Warehouse) -> None:
    def script(request: dict[str, Any], n: int) -> Any:
        if request["max_tokens"] < 400:
            return Reply(content='{"decline": fal', finish_reason="length")
        return GOOD

    with ScriptedServer(script) as server:
        [ok], _ = run(warehouse, config_for(server.base_url), requests(1))
        assert [r["max_tokens"] for r in server.requests] == [200, 400]
    assert (ok.status, ok.attempts) == ("ok", 2)
    with ScriptedServer(script) as server:
        config = config_for(server.base_url, max_tokens_ceiling=300)
        [cut], _ = run(warehouse, config, requests(1, tags=["cat"]), run_id="r2")
        # 300 is all the room there is: retried once at 300, still cut.
        assert [r["max_tokens"] for r in server.requests] == [200, 300]
    assert cut.status == "truncated"


def test_empty_choices_and_empty_content_have_their_own_status(warehouse: Warehouse) -> None:
    no_choices = json.dumps(
        {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
    ).encode()

    def script(request: dict[str, Any], n: int) -> Any:
        title = request["messages"][1]["content"].split("\n")[0]
        if title.endswith("Dog 0"):
            return Reply(body=no_choices, headers={"Content-Type": "application/json"})
        return Reply(content="")

    with ScriptedServer(script) as server:
        results, _ = run(warehouse, config_for(server.base_url), requests(2))
    assert [(r.status, r.error) for r in results] == [
        ("empty_reply", "the reply has no choices"),
        ("empty_reply", "empty reply"),
    ]


def test_adaptive_limit_follows_congestion_within_its_bounds() -> None:
    from pipeline.llm.limits import AdaptiveLimit

    limit = AdaptiveLimit(10)
    assert limit.limit == 8  # starts at min(maximum, 8)
    for _ in range(5):
        limit.on_success(0.1)
    assert limit.limit == 10  # slow start, capped by the maximum
    limit.on_overload()
    assert limit.limit == 7.5 and not limit.slow_start
    limit.on_overload()  # the same round trip: one cut only
    assert limit.limit == 7.5
    limit.on_success(0.1)
    assert limit.limit == pytest.approx(7.5 + 1 / 7.5)  # additive increase
    fixed = AdaptiveLimit(10, adaptive=False)
    fixed.on_overload()
    assert fixed.limit == 10


def test_adaptive_concurrency_gets_far_fewer_429s_than_fixed(warehouse: Warehouse) -> None:
    def overloads(run_id: str, **overrides: Any) -> int:
        with ScriptedServer(lambda r, n: GOOD, latency_s=0.05, knee=4, capacity=6) as server:
            config = config_for(server.base_url, **overrides)
            results, _ = run(warehouse, config, requests(60, tags=[run_id]), run_id)
            assert server.overloaded == sum(r.attempts - 1 for r in results)
        assert all(r.status == "ok" for r in results)
        return server.overloaded

    common = {"concurrency": 32, "max_retries": 10_000, "max_failed_share": 1}
    fixed = overloads("f", adaptive_concurrency=False, **common)
    adaptive = overloads("a", **common)
    # 26 of the first 32 requests alone are over capacity for the fixed limit.
    assert fixed >= 26 and adaptive * 3 < fixed, (fixed, adaptive)
