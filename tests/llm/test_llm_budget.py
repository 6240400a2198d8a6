"""Token/cost budgets, recorded usage and cost, price tables and dry runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import ForgeError, InputFormatError
from pipeline.llm import GenerationEngine, LLMBudgetReached, LLMConfig, LLMRequest, PromptLibrary
from pipeline.llm.costs import estimate_prompt_tokens, load_prices
from pipeline.llm.dry_run import DryRunEngine, dry_run_task
from pipeline.llm.scripted_server import ScriptedServer
from pipeline.storage import Warehouse
from pipeline.tasks import generate_task

PROMPTS = Path(__file__).parent / "prompts"
GOOD = {"decline": False, "sentence": "Woof is the sound a [MASK] makes.", "answer": "dog"}
# Every scripted reply reports 11 prompt + 7 completion tokens.
TOKENS_PER_CALL = 18


def config_for(url: str, **overrides: Any) -> LLMConfig:
    values: dict[str, Any] = {
        "backend": "openai",
        "base_url": url,
        "model": "test-model",
        "concurrency": 1,
        "max_retries": 0,
    }
    return LLMConfig(**(values | overrides))


def requests(count: int, start: int = 0) -> list[LLMRequest]:
    return [
        LLMRequest(
            item_key=f"item-{i}",
            prompt="demo/animal",
            variables={"title": f"Dog {i}", "description": "A dog barks.", "tags": ["dog"]},
        )
        for i in range(start, start + count)
    ]


def engine_for(warehouse: Warehouse, config: LLMConfig, run_id: str = "r1") -> GenerationEngine:
    return GenerationEngine(warehouse, PromptLibrary.load(base_dir=PROMPTS), config, run_id)


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "currency: EUR\nbatch_discount: 0.5\nmodels:\n"
        "  test-model: {input_per_1m: 1000, output_per_1m: 2000}\n"
    )
    return path


def test_prompt_token_estimate_is_chars_over_four_plus_framing() -> None:
    messages = [{"role": "system", "content": "x" * 10}, {"role": "user", "content": "y" * 41}]
    # ceil(10/4) + 3 + ceil(41/4) + 3 + 3 priming (tiktoken is not installed here)
    assert estimate_prompt_tokens(messages) == 3 + 3 + 11 + 3 + 3


def test_token_budget_stops_before_the_next_request_and_resumes(warehouse: Warehouse) -> None:
    probe = engine_for(warehouse, config_for("http://127.0.0.1:9/v1"))
    worst, _ = probe.worst_case(probe.prepare(requests(1)[0]))
    # Four calls fit: the fourth is admitted at 3 * 18 spent + its worst case.
    budget = 3 * TOKENS_PER_CALL + worst
    with ScriptedServer(lambda request, n: GOOD) as server:
        config = config_for(server.base_url, max_total_tokens=budget)
        with pytest.raises(LLMBudgetReached) as caught:
            engine_for(warehouse, config).run(requests(10))
        assert server.request_count == 4
        assert str(caught.value).startswith(
            f"budget reached (max_total_tokens {budget}): 4 of 10 calls made, 6 not sent; "
            f"run 'r1' has spent {4 * TOKENS_PER_CALL} tokens."
        )
        # The same run id again (a retried stage): the budget is already spent.
        with pytest.raises(LLMBudgetReached, match="0 of 6 calls made"):
            engine_for(warehouse, config).run(requests(10))
        assert server.request_count == 4
        # A new run resumes with only the calls not yet answered.
        results = engine_for(warehouse, config, "r2").run(requests(10)[:6])
        assert server.request_count == 6
    assert sum(r.cached for r in results) == 4
    rows = warehouse.rows("SELECT run_id, count(*) AS n FROM llm_calls GROUP BY 1 ORDER BY 1")
    assert rows == [{"run_id": "r1", "n": 4}, {"run_id": "r2", "n": 2}]


def test_cost_is_recorded_and_cost_budget_applies(warehouse: Warehouse, prices: Path) -> None:
    per_call = (11 * 1000 + 7 * 2000) / 1_000_000  # 0.025 EUR
    with ScriptedServer(lambda request, n: GOOD) as server:
        config = config_for(server.base_url, prices_file=str(prices))
        engine = engine_for(warehouse, config)
        engine.run(requests(2))
        assert engine.last_summary is not None
        assert engine.last_summary.cost == pytest.approx(2 * per_call)
        assert engine.last_summary.currency == "EUR"
        assert engine.last_summary.line().endswith("36 tokens, 0.0500 EUR")
        worst_tokens, worst_cost = engine.worst_case(engine.prepare(requests(1)[0]))
        assert worst_cost == pytest.approx(((worst_tokens - 200) * 1000 + 200 * 2000) / 1e6)
        # 2 calls spent (0.05); one more fits only if 0.05 + worst_cost <= max_cost.
        capped = config.model_copy(update={"max_cost": 2 * per_call + worst_cost})
        with pytest.raises(LLMBudgetReached, match=r"1 of 5 calls made, 4 not sent"):
            engine_for(warehouse, capped).run(requests(5, start=2))
        assert server.request_count == 3
    costs = warehouse.rows("SELECT DISTINCT cost FROM llm_calls")
    assert costs == [{"cost": pytest.approx(per_call)}]


def test_cost_budget_needs_a_price(warehouse: Warehouse, tmp_path: Path) -> None:
    with pytest.raises(ForgeError, match="a cost budget needs a price for model 'test-model'"):
        engine_for(warehouse, config_for("http://127.0.0.1:9/v1", max_cost=1.0))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"models": {"test-model": {"input_per_1m": -1}}}))
    with pytest.raises(InputFormatError, match=r"models\.test-model\.input_per_1m") as caught:
        load_prices(bad)
    assert str(bad) in str(caught.value)


def test_dry_run_engine_counts_cached_and_uncached(warehouse: Warehouse, prices: Path) -> None:
    with ScriptedServer(lambda request, n: GOOD) as server:
        config = config_for(server.base_url, prices_file=str(prices))
        engine_for(warehouse, config).run(requests(2))
        library = PromptLibrary.load(base_dir=PROMPTS)
        dry = DryRunEngine(warehouse, library, config, "dry")
        results = dry.run(requests(5) + requests(1))  # one duplicate
        batch = DryRunEngine(warehouse, library, config.model_copy(update={"mode": "batch"}), "d")
        batch.run(requests(5))
        assert server.request_count == 2  # the dry runs sent nothing
    assert [r.cached for r in results] == [True, True, False, False, False, True]
    estimate = dry.estimate("demo")
    prompt = sum(estimate_prompt_tokens(dry.prepare(r).messages) for r in requests(5)[2:])
    # Completion: the observed mean of the 2 answered calls (7 tokens), not max_tokens.
    assert (estimate.requests, estimate.cached) == (5, 2)
    assert (estimate.prompt_tokens, estimate.completion_tokens) == (prompt, 3 * 7)
    cost = (prompt * 1000 + 21 * 2000) / 1e6
    assert estimate.cost == pytest.approx(cost)
    assert estimate.lines()[-1] == (
        f"dry-run: 5 requests, 2 cached, ~{prompt + 21} tokens, ~{cost:.4f} EUR"
    )
    assert batch.estimate("demo").cost == pytest.approx(cost / 2)  # batch discount
    unpriced = DryRunEngine(warehouse, library, config_for(server.base_url), "d")
    unpriced.run(requests(1, start=7))
    assert unpriced.estimate("demo").lines()[-1].endswith(" tokens")  # no cost known


def test_dry_run_of_a_task_writes_and_sends_nothing(sample_warehouse: Warehouse) -> None:
    offline = LLMConfig.from_env(backend="offline")

    def files() -> list[str]:
        return sorted(str(p) for p in (sample_warehouse.root).rglob("*.parquet"))

    before = files()
    first = dry_run_task(sample_warehouse, "auditorybench-animal", offline)
    assert files() == before
    assert first.cached == 0 and first.requests > 0
    generate_task(sample_warehouse, "auditorybench-animal", offline, "real")
    distinct = sample_warehouse.rows(
        "SELECT prompt_name, count(DISTINCT call_key) AS n FROM llm_calls GROUP BY 1 ORDER BY 1"
    )
    by_prompt = {r["prompt_name"]: r["n"] for r in distinct}
    # Before any call, only the first stage (categorize) could be counted.
    assert first.requests == by_prompt["auditorybench/categorize"]
    assert first.to_send_by_prompt == {"auditorybench/categorize": first.requests}
    again = dry_run_task(sample_warehouse, "auditorybench-animal", offline)
    assert again.requests == again.cached == sum(by_prompt.values())
    assert (
        again.lines()[-1]
        == f"dry-run: {again.requests} requests, {again.requests} cached, ~0 tokens"
    )
    assert math.isclose(again.prompt_tokens, 0)


def test_usage_per_run_and_the_llm_costs_view(warehouse: Warehouse, prices: Path) -> None:
    from pipeline.llm.recording import run_usage

    with ScriptedServer(lambda request, n: GOOD) as server:
        engine_for(warehouse, config_for(server.base_url, prices_file=str(prices))).run(requests(3))
    usage = run_usage(warehouse, "r1")
    assert (usage["calls"], usage["prompt_tokens"], usage["completion_tokens"]) == (3, 33, 21)
    assert usage["cost"] == pytest.approx(3 * 0.025)
    [view] = warehouse.rows("SELECT task_family, calls, prompt_tokens, cost FROM llm_costs")
    assert view == {
        "task_family": "demo",
        "calls": 3,
        "prompt_tokens": 33,
        "cost": pytest.approx(0.075),
    }
    assert run_usage(warehouse, "other")["calls"] == 0
