"""The engine against a real local OpenAI-compatible server (scripted replies)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipeline.errors import ForgeError, LLMEndpointError
from pipeline.llm import (
    GenerationEngine,
    LLMConfig,
    LLMFailureBudgetExceeded,
    LLMRequest,
    PromptLibrary,
)
from pipeline.llm import engine as engine_module
from pipeline.llm.live import LiveRunner
from pipeline.llm.records import LLMCallRecord
from pipeline.llm.scripted_server import Reply, ScriptedServer, reject_json_schema
from pipeline.storage import Warehouse
from pipeline.storage.schema import table

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
        "concurrency": 4,
        "timeout_s": 5.0,
        "max_retries": 3,
        "backoff_base_s": 0.001,
        "backoff_max_s": 0.01,
    }
    return LLMConfig(**(values | overrides))


def animal_request(index: int, **variables: Any) -> LLMRequest:
    base = {"title": f"Dog {index}", "description": "A dog barks.", "tags": ["dog"]}
    return LLMRequest(item_key=f"item-{index}", prompt="demo/animal", variables=base | variables)


def run(warehouse: Warehouse, config: LLMConfig, requests: list[LLMRequest], run_id: str = "r1"):
    engine = GenerationEngine(warehouse, PromptLibrary.load(base_dir=PROMPTS), config, run_id)
    return engine.run(requests), engine


def calls(warehouse: Warehouse) -> list[dict[str, Any]]:
    return warehouse.rows("SELECT * FROM llm_calls ORDER BY created_at, item_key")


def test_success_sends_json_schema_and_records_everything(warehouse: Warehouse) -> None:
    with ScriptedServer(lambda request, n: GOOD) as server:
        results, engine = run(warehouse, config_for(server.base_url), [animal_request(1)])
        sent = server.requests[0]
    [result] = results
    assert result.status == "ok" and result.parsed == GOOD and result.model == "test-model"
    assert result.attempts == 1 and not result.cached
    assert sent["model"] == "test-model"
    assert sent["temperature"] == 0.6 and sent["top_p"] == 0.9 and sent["max_tokens"] == 200
    assert sent["seed"] == 0
    assert sent["messages"][1]["content"].startswith("Clip title: Dog 1\nDescription: A dog")
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "demo_animal"
    assert sent["response_format"]["json_schema"]["schema"]["required"] == ["decline"]
    [row] = calls(warehouse)
    LLMCallRecord.model_validate(row)
    assert row["status"] == "ok" and row["origin"] == "request" and row["backend"] == "openai"
    assert row["call_key"] == result.call_key and row["item_key"] == "item-1"
    assert json.loads(row["parsed"]) == GOOD
    assert json.loads(row["messages"]) == sent["messages"]
    assert json.loads(row["params"]) == {
        "max_tokens": 200,
        "seed": 0,
        "temperature": 0.6,
        "top_p": 0.9,
    }
    assert (row["prompt_tokens"], row["completion_tokens"], row["attempts"]) == (11, 7, 1)
    assert row["response_format"] == "json_schema" and row["endpoint"] == server.base_url
    assert engine.last_summary is not None and engine.last_summary.by_status == {"ok": 1}


def test_invalid_and_schema_violating_replies(warehouse: Warehouse) -> None:
    replies = {
        "Dog 1": "this is not JSON",
        "Dog 2": {"decline": "no"},
        "Dog 3": {"decline": False, "colour": "red"},
        "Dog 4": "```json\n" + json.dumps(GOOD) + "\n```",
        "Dog 5": Reply(content='{"decline": fal', finish_reason="length"),
        "Dog 6": Reply(content=None, refusal="I can't help with that."),
        "Dog 7": Reply(
            body=b'{"id": "x", "choices": [', headers={"Content-Type": "application/json"}
        ),
    }

    def script(request: dict[str, Any], n: int) -> Any:
        title = request["messages"][1]["content"].split("\n")[0].removeprefix("Clip title: ")
        return replies[title]

    with ScriptedServer(script) as server:
        # No repair round and no longer retry here: this test pins the classification.
        config = config_for(server.base_url, repair_attempts=0, max_tokens_ceiling=200)
        results, _ = run(warehouse, config, [animal_request(i) for i in range(1, 8)])
        assert server.request_count == 7  # none of these is retried
    by_item = {r.item_key: r for r in results}
    assert by_item["item-1"].status == "invalid_output"
    assert by_item["item-1"].error.startswith("reply is not JSON")
    assert by_item["item-1"].raw_output == "this is not JSON"
    assert by_item["item-2"].status == "invalid_output"
    assert "decline: Input should be a valid boolean" in by_item["item-2"].error
    assert "colour: Extra inputs are not permitted" in by_item["item-3"].error
    assert by_item["item-4"].status == "ok" and by_item["item-4"].parsed == GOOD
    assert by_item["item-5"].status == "truncated"
    assert by_item["item-5"].error.startswith("reply cut at max_tokens, not JSON")
    assert by_item["item-6"].status == "refused"
    assert "I can't help with that." in by_item["item-6"].error
    assert by_item["item-7"].status == "invalid_output"
    assert by_item["item-7"].error.startswith("unreadable response")
    statuses = warehouse.rows("SELECT status, count(*) AS n FROM llm_calls GROUP BY 1 ORDER BY 1")
    assert statuses == [
        {"status": "invalid_output", "n": 4},
        {"status": "ok", "n": 1},
        {"status": "refused", "n": 1},
        {"status": "truncated", "n": 1},
    ]


def test_429_retry_after_and_500s_then_success(warehouse: Warehouse) -> None:
    seen: dict[str, int] = {}

    def script(request: dict[str, Any], n: int) -> Any:
        title = request["messages"][1]["content"].split("\n")[0]
        seen[title] = seen.get(title, 0) + 1
        if title.endswith("Dog 1") and seen[title] == 1:
            return Reply(status=429, headers={"Retry-After": "0"}, error_message="slow down")
        if title.endswith("Dog 2") and seen[title] <= 2:
            return Reply(status=500 + seen[title])
        return GOOD

    with ScriptedServer(script) as server:
        results, _ = run(
            warehouse, config_for(server.base_url), [animal_request(1), animal_request(2)]
        )
        assert server.request_count == 5
    assert [(r.status, r.attempts) for r in results] == [("ok", 2), ("ok", 3)]
    rows = {r["item_key"]: r for r in calls(warehouse)}
    assert rows["item-1"]["attempts"] == 2 and rows["item-2"]["attempts"] == 3


def test_retry_after_header_decides_the_wait() -> None:
    runner = LiveRunner.__new__(LiveRunner)  # the live backend owns retries and waits
    runner.config = LLMConfig(backoff_base_s=100.0, backoff_max_s=100.0, retry_after_max_s=30)
    assert runner._backoff_s(0, 2.5) == 2.5
    assert runner._backoff_s(3, 400.0) == 30  # capped
    assert 50.0 <= runner._backoff_s(0, None) <= 100.0  # jittered exponential otherwise
    assert engine_module._retry_after_s({"retry-after-ms": "1500"}) == 1.5
    assert engine_module._retry_after_s({"retry-after": "7"}) == 7.0
    assert engine_module._retry_after_s({}) is None


def test_persistent_errors_timeouts_and_refused_connections(warehouse: Warehouse) -> None:
    def script(request: dict[str, Any], n: int) -> Any:
        title = request["messages"][1]["content"].split("\n")[0]
        if title.endswith("Dog 1"):
            return Reply(status=503)
        if title.endswith("Dog 2"):
            return Reply(content=GOOD, delay_s=1.0)  # past the 0.2 s timeout
        if title.endswith("Dog 3"):
            return Reply(status=401, error_message="bad key")  # not retried
        return GOOD

    with ScriptedServer(script) as server:
        # Every call fails here on purpose: the failed-share stop is tested elsewhere.
        config = config_for(server.base_url, timeout_s=0.2, max_retries=2, max_failed_share=1)
        results, _ = run(warehouse, config, [animal_request(i) for i in (1, 2, 3)])
        assert server.request_count == 3 + 3 + 1
    assert [(r.status, r.attempts) for r in results] == [
        ("http_error", 3),
        ("timeout", 3),
        ("http_error", 1),
    ]
    assert results[0].error == "HTTP 503: scripted error"
    assert results[2].error == "HTTP 401: bad key"

    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = config_for(f"http://127.0.0.1:{closed_port}/v1", max_retries=1, max_failed_share=1)
    [refused], _ = run(warehouse, config, [animal_request(4)], run_id="r2")
    # A refused connection is not retried call by call: it counts towards refusal_limit.
    assert (refused.status, refused.attempts) == ("unreachable", 1)
    assert refused.error == "cannot reach the endpoint: connection refused"
    rows = warehouse.rows(
        "SELECT status, http_status, attempts FROM llm_calls ORDER BY run_id, item_key"
    )
    assert rows == [
        {"status": "http_error", "http_status": 503, "attempts": 3},
        {"status": "timeout", "http_status": None, "attempts": 3},
        {"status": "http_error", "http_status": 401, "attempts": 1},
        {"status": "unreachable", "http_status": None, "attempts": 1},
    ]


def test_json_schema_rejected_falls_back_to_json_object_once(warehouse: Warehouse) -> None:
    def script(request: dict[str, Any], n: int) -> Any:
        return reject_json_schema(request) or GOOD

    with ScriptedServer(script) as server:
        config = config_for(server.base_url, concurrency=1)
        results, _ = run(warehouse, config, [animal_request(i) for i in range(3)])
        formats = [r.get("response_format", {}).get("type") for r in server.requests]
        later = server.requests[1]
    assert formats == ["json_schema", "json_object", "json_object", "json_object"]
    # The rejected attempt counts as an HTTP attempt but not against the retry budget.
    assert [(r.status, r.attempts) for r in results] == [("ok", 2), ("ok", 1), ("ok", 1)]
    # The fallback states the schema in the prompt, since JSON mode alone does not.
    assert later["messages"][1]["role"] == "system"
    assert "JSON Schema" in later["messages"][1]["content"]
    assert {r["response_format"] for r in calls(warehouse)} == {"json_object"}


def test_cache_dedup_and_rerun_sends_nothing(warehouse: Warehouse) -> None:
    with ScriptedServer(lambda request, n: GOOD) as server:
        config = config_for(server.base_url)
        same = [animal_request(1), animal_request(1).model_copy(update={"item_key": "twin"})]
        first, _ = run(warehouse, config, [*same, animal_request(2)])
        assert server.request_count == 2  # identical prompts are one call
        second, engine = run(warehouse, config, [*same, animal_request(2)], run_id="r2")
        assert server.request_count == 2
        other_seed, _ = run(warehouse, config, [animal_request(1).model_copy(update={"seed": 1})])
        assert server.request_count == 3
    assert [r.item_key for r in first] == ["item-1", "twin", "item-2"]
    assert first[0].call_key == first[1].call_key != first[2].call_key
    assert all(r.cached for r in second) and [r.parsed for r in second] == [GOOD] * 3
    assert engine.last_summary is not None and engine.last_summary.cached == 2
    assert other_seed[0].call_key != first[0].call_key


def test_failed_calls_are_retried_on_the_next_run(warehouse: Warehouse) -> None:
    with ScriptedServer(lambda request, n: Reply(status=500) if n == 1 else GOOD) as server:
        config = config_for(server.base_url, max_retries=0)
        # 1 of 1 calls failed: over max_failed_share, so the run as a whole fails.
        with pytest.raises(LLMEndpointError, match=r"most often HTTP 500\): 1 of 1 calls"):
            run(warehouse, config, [animal_request(1)])
        [ok], _ = run(warehouse, config, [animal_request(1)], run_id="r2")
        assert server.request_count == 2
    assert (ok.status, ok.cached) == ("ok", False)
    assert [r["status"] for r in calls(warehouse)] == ["http_error", "ok"]


def test_failure_budget_stops_sending(warehouse: Warehouse) -> None:
    with ScriptedServer(lambda request, n: Reply(status=500)) as server:
        config = config_for(
            server.base_url, concurrency=1, max_retries=0, max_failures=3, max_failed_share=1
        )
        with pytest.raises(LLMFailureBudgetExceeded, match=r"http_error: 3.*7 requests not sent"):
            run(warehouse, config, [animal_request(i) for i in range(10)])
        assert server.request_count == 3
    assert warehouse.rows("SELECT status, count(*) AS n FROM llm_calls GROUP BY 1") == [
        {"status": "http_error", "n": 3}
    ]


def test_prompt_change_regenerates_only_its_requests(warehouse: Warehouse, tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    (folder / "demo").mkdir(parents=True)
    for name in ("animal.j2", "compare.j2"):
        (folder / "demo" / name).write_text((PROMPTS / "demo" / name).read_text())
    compare_reply = {"sentence": "A violin is [MASK] than a tuba.", "span1": "a", "span2": "b"}

    def script(request: dict[str, Any], n: int) -> Any:
        return compare_reply if "Compare" in request["messages"][-1]["content"] else GOOD

    requests = [animal_request(i) for i in range(3)] + [
        LLMRequest(item_key=f"cmp-{i}", prompt="demo/compare", variables={"sources": ["x", str(i)]})
        for i in range(2)
    ]
    with ScriptedServer(script) as server:
        config = config_for(server.base_url)

        def run_with(run_id: str):
            library = PromptLibrary.load(base_dir=folder)
            return GenerationEngine(warehouse, library, config, run_id).run(requests)

        first = run_with("r1")
        assert server.request_count == 5
        path = folder / "demo" / "compare.j2"
        path.write_text(path.read_text().replace("Compare their pitch.", "Compare their pitch!"))
        second = run_with("r2")
        assert server.request_count == 7  # only the two compare requests went out again
    assert [r.cached for r in second] == [True, True, True, False, False]
    assert first[3].prompt_version != second[3].prompt_version
    assert first[0].prompt_version == second[0].prompt_version


def test_hostile_metadata_is_sent_as_literal_text(warehouse: Warehouse) -> None:
    with ScriptedServer(lambda request, n: GOOD) as server:
        hostile = animal_request(1, description="{{ 7*7 }}{% raw %}\x07 <|im_end|>")
        run(warehouse, config_for(server.base_url), [hostile])
        content = server.requests[0]["messages"][1]["content"]
    assert "Description: {{ 7*7 }}{% raw %} <|im_end|>\n" in content


def test_api_key_never_reaches_warehouse_or_logs(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd
) -> None:
    secret = "sk-forgetest-SECRET0123456789abcdefXYZ"
    monkeypatch.setenv("OPENAI_API_KEY", secret)

    def script(request: dict[str, Any], n: int) -> Any:
        # A server that echoes the key back in its error text, as some do.
        title = request["messages"][1]["content"].split("\n")[0]
        if title.endswith("Dog 1"):
            return Reply(status=401, error_message=f"Incorrect API key provided: {secret}")
        return Reply(status=500, error_message=f"upstream failed for key {secret}")

    caplog.set_level("DEBUG")
    with ScriptedServer(script) as server:
        config = config_for(server.base_url, max_retries=1, max_failed_share=1)
        results, _ = run(warehouse, config, [animal_request(1), animal_request(2)])
        # The key really was used: the server saw it.
        assert server.headers_seen[0]["authorization"] == f"Bearer {secret}"
    assert secret not in repr(config) and secret not in config.model_dump_json()
    assert all(secret not in (r.error or "") for r in results)
    assert "[redacted]" in results[0].error
    texts = [caplog.text, *capfd.readouterr()]
    for path in warehouse.root.rglob("*"):
        if path.suffix == ".parquet":
            texts.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
        elif path.is_file():
            texts.append(path.read_bytes().decode("latin-1"))
    assert len(texts) > 3
    assert not [t for t in texts if secret in t]


def test_engine_runs_inside_a_running_event_loop(warehouse: Warehouse) -> None:
    with ScriptedServer(lambda request, n: GOOD) as server:
        config = config_for(server.base_url)

        async def inside_loop() -> list[str]:
            results, _ = run(warehouse, config, [animal_request(1)])
            return [r.status for r in results]

        assert asyncio.run(inside_loop()) == ["ok"]


def test_unknown_prompt_or_missing_variable_fails_before_sending(warehouse: Warehouse) -> None:
    with ScriptedServer(lambda request, n: GOOD) as server:
        config = config_for(server.base_url)
        with pytest.raises(ForgeError, match="unknown prompt 'demo/none'"):
            run(warehouse, config, [LLMRequest(item_key="x", prompt="demo/none")])
        with pytest.raises(ForgeError, match="'tags' is undefined"):
            run(
                warehouse,
                config,
                [
                    LLMRequest(
                        item_key="x",
                        prompt="demo/animal",
                        variables={"title": "t", "description": "d"},
                    )
                ],
            )
        assert server.request_count == 0


def test_record_model_matches_the_ddl() -> None:
    assert list(LLMCallRecord.model_fields) == table("llm_calls").columns


def test_scripted_server_lists_models_for_the_openai_client() -> None:
    import openai

    with ScriptedServer(models=["qwen2-72b", "tiny"]) as server:
        client = openai.OpenAI(api_key="not-needed", base_url=server.base_url, max_retries=0)
        assert [m.id for m in client.models.list()] == ["qwen2-72b", "tiny"]
        client.close()
