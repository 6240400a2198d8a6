"""`forge generate --dry-run`: what a task's generation would send and cost, sending nothing.

The task's own `build_items` runs against a warehouse that refuses nothing but writes
nothing (`NoWriteWarehouse`), with an engine that answers cached calls from `llm_calls`
and counts the others instead of sending them. For each distinct call not yet answered:

- prompt tokens: `pipeline.llm.costs.estimate_prompt_tokens` (tiktoken where installed
  and usable offline, else the documented chars/4 estimate);
- completion tokens: the mean `completion_tokens` of this prompt version's `ok` calls with
  this model when some exist ("observed"), else the template's `max_tokens` (an upper bound);
- cost: the price table (`FORGE_LLM_PRICES` / `--prices`), with the batch discount in batch
  mode; omitted when the model has no price.

Tasks whose later LLM stage depends on an earlier stage's replies (nlar, reasonaqa) can only
count that later stage for replies already cached: the uncached ones are answered here with
a placeholder failure, so their follow-up requests are not formed. The report says how many
requests were counted per prompt, so such a gap is visible.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.llm.config import LLMConfig
from pipeline.llm.costs import estimate_prompt_tokens, tokenizer_name
from pipeline.llm.engine import GenerationEngine
from pipeline.llm.recording import load_cached_ok
from pipeline.llm.records import LLMRequest, LLMResult
from pipeline.storage import Warehouse

NOT_SENT_ERROR = "dry run: not sent"


class DryRunEstimate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str
    mode: str
    model: str
    requests: int = Field(0, description="distinct calls the task needs")
    cached: int = Field(0, description="of which answered in llm_calls already")
    too_large: int = Field(0, description="of which over max_prompt_chars: never sent")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    currency: str | None = None
    tokenizer: str = ""
    to_send_by_prompt: dict[str, int] = Field(default_factory=dict)
    completion_basis: dict[str, str] = Field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def lines(self) -> list[str]:
        """The human report; the last line is the stable one scripts parse."""
        out = [
            f"{self.task}: {self.requests - self.cached - self.too_large} calls to send "
            f"({self.mode} mode, model {self.model})",
            f"  prompt tokens ~{self.prompt_tokens} ({self.tokenizer})",
            f"  completion tokens ~{self.completion_tokens}",
        ]
        for prompt, count in sorted(self.to_send_by_prompt.items()):
            out.append(f"  {prompt}: {count} calls, completion {self.completion_basis[prompt]}")
        if self.too_large:
            out.append(f"  {self.too_large} prompts over max_prompt_chars: would not be sent")
        last = f"dry-run: {self.requests} requests, {self.cached} cached, ~{self.tokens} tokens"
        if self.cost is not None:
            last += f", ~{self.cost:.4f} {self.currency}"
        return [*out, last]


class NoWriteWarehouse(Warehouse):
    """Reads the real warehouse; every write is dropped (a dry run changes nothing)."""

    def write_partition(self, table: str, partition: str, rows: Any) -> int:
        return len(rows)

    def delete_partition(self, table: str, partition: str) -> bool:
        return False

    @contextlib.contextmanager
    def writer(self, table: str, partition: str) -> Iterator[Any]:
        yield _DroppingWriter()


class _DroppingWriter:
    def write(self, rows: Any) -> int:
        return len(rows)

    def commit(self) -> None:
        return None

    def abort(self) -> None:
        return None


class DryRunEngine(GenerationEngine):
    """Answers cached calls, counts (and never sends) the others."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: dict[str, Any] = {}
        self.cached_keys: set[str] = set()
        self._observed: dict[str, float | None] = {}

    def run(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        prepared = [self.prepare(r) for r in requests]
        keys = list(dict.fromkeys(p.key for p in prepared))
        cached = load_cached_ok(self.warehouse, keys)
        for item in prepared:
            if item.key not in self.seen:
                self.seen[item.key] = item
                if item.key in cached:
                    self.cached_keys.add(item.key)
        results = []
        for item in prepared:
            hit = cached.get(item.key)
            row = hit or {
                "model": self.config.model,
                "backend": self.config.backend,
                "status": "http_error",
                "error": NOT_SENT_ERROR,
            }
            results.append(self._result(item, hit, row))
        return results

    def observed_completion_tokens(self, prompt_version: str) -> float | None:
        if prompt_version not in self._observed:
            rows = (
                self.warehouse.rows(
                    "SELECT avg(completion_tokens) AS mean FROM llm_calls WHERE status = 'ok' "
                    "AND prompt_version = ? AND model = ? AND completion_tokens IS NOT NULL",
                    [prompt_version, self.config.model],
                )
                if self.warehouse.partitions("llm_calls")
                else [{"mean": None}]
            )
            self._observed[prompt_version] = rows[0]["mean"]
        return self._observed[prompt_version]

    def estimate(self, task: str) -> DryRunEstimate:
        estimate = DryRunEstimate(
            task=task,
            mode=self.config.mode,
            model=self.config.model,
            requests=len(self.seen),
            cached=len(self.cached_keys),
            tokenizer=tokenizer_name(),
        )
        counts: Counter[str] = Counter()
        priced = self.price_of(0, 0) is not None
        cost = 0.0
        for key, item in self.seen.items():
            if key in self.cached_keys:
                continue
            if item.prompt_chars > self.config.max_prompt_chars:
                estimate.too_large += 1
                continue
            name = item.template.name
            counts[name] += 1
            observed = self.observed_completion_tokens(item.template.version)
            if observed is not None:
                completion = round(observed)
                estimate.completion_basis[name] = f"~{completion} tokens (observed mean)"
            else:
                completion = int(item.params["max_tokens"])
                estimate.completion_basis[name] = f"<= {completion} tokens (max_tokens)"
            prompt = estimate_prompt_tokens(item.messages)
            estimate.prompt_tokens += prompt
            estimate.completion_tokens += completion
            if priced:
                cost += self.price_of(prompt, completion) or 0.0
        estimate.to_send_by_prompt = dict(counts)
        if priced:
            estimate.cost = cost
            estimate.currency = self.prices.currency  # type: ignore[union-attr]
        return estimate


def dry_run_task(
    warehouse: Warehouse,
    task_id: str,
    llm_config: LLMConfig,
    prompts_override: Path | str | None = None,
    seed: int = 0,
    splits: list[str] | None = None,
) -> DryRunEstimate:
    """Estimate one task's generation (see module docstring); writes and sends nothing."""
    engine, task_name = _walk_task(warehouse, task_id, llm_config, prompts_override, seed, splits)
    return engine.estimate(task_name)


def task_requests(
    warehouse: Warehouse,
    task_id: str,
    llm_config: LLMConfig,
    prompts_override: Path | str | None = None,
    seed: int = 0,
    splits: list[str] | None = None,
) -> list[LLMRequest]:
    """The distinct LLM requests a task's generation makes now (for `export-batch --task`);
    a later stage that depends on uncached replies is not included (module docstring)."""
    engine, _ = _walk_task(warehouse, task_id, llm_config, prompts_override, seed, splits)
    return [item.request for item in engine.seen.values()]


def _walk_task(
    warehouse: Warehouse,
    task_id: str,
    llm_config: LLMConfig,
    prompts_override: Path | str | None,
    seed: int,
    splits: list[str] | None,
) -> tuple[DryRunEngine, str]:
    from pipeline.llm.prompts import PromptLibrary
    from pipeline.tasks.common.base import TaskContext
    from pipeline.tasks.common.generate import get_task
    from pipeline.tasks.common.splits import SplitAssigner

    task = get_task(task_id)
    readonly = NoWriteWarehouse(warehouse.root)
    prompts = PromptLibrary.load(override_dir=Path(prompts_override) if prompts_override else None)
    engine = DryRunEngine(readonly, prompts, llm_config, "dry-run")
    ctx = TaskContext(
        warehouse=readonly,
        run_id="dry-run",
        seed=seed,
        llm_config=llm_config,
        prompts=prompts,
        splits=SplitAssigner.from_warehouse(
            readonly, task.split_policy.model_copy(update={"seed": seed})
        ),
        wanted_splits=frozenset(splits) if splits else None,
        _engine=engine,
    )
    for _ in task.build_items(ctx):
        pass
    return engine, task.task_id
