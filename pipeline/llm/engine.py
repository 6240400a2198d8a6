"""The generation engine: render → (cache | offline rule | HTTP call | Batch API) → validate
→ record.

`GenerationEngine.run(requests)` returns one `LLMResult` per request, in request order.

- Cache: each request gets a `call_key` = sha256(prompt version, rendered messages, model,
  sampling params, seed). Keys with an `ok` row in `llm_calls` are answered from the
  warehouse without a request; failed rows are kept but retried.
- Prompt size: a rendered prompt over `max_prompt_chars` is never sent; it is recorded
  with status `prompt_too_large`.
- Live calls (`pipeline.llm.live`): `AsyncOpenAI` under an adaptive concurrency limit,
  a deadline per attempt, retries with backoff honouring `Retry-After`, one retry with
  more room for a reply cut at max_tokens, one repair round for a schema-invalid reply.
  Batch mode (`config.mode == "batch"`, `pipeline.llm.batch_jobs`): the same requests go
  through the Batch API; results are recorded exactly as live ones, so `run()` returns
  the same results either way.
- Recording: finished calls are appended to `llm_calls` in chunks (`flush_every` results or
  `flush_interval_s`; offline rules by time only), each chunk its own partition
  `run=<run_id>/part=<n>-<token>`, so a killed run loses at most the unflushed chunk and a
  rerun resumes from the rest. `close()` at the end of a run compacts its chunks into one
  sorted file per call-key bucket (`pipeline.llm.recording`), so lookups read few files.
- Stopping early, after recording what finished (a rerun sends only what is missing):
  `LLMEndpointError` when the endpoint refuses the run (see `pipeline.llm.limits`),
  `LLMBudgetReached` when `max_cost`/`max_total_tokens` would be exceeded by the next
  request, `LLMFailureBudgetExceeded` after `max_failures` failed calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from pipeline import progress
from pipeline.errors import ForgeError, LLMEndpointError
from pipeline.llm import offline
from pipeline.llm.config import LLMConfig
from pipeline.llm.costs import PriceTable, estimate_prompt_tokens, load_prices
from pipeline.llm.limits import Budget, EndpointGuard
from pipeline.llm.live import OUTPUT_MODE_BY_ENDPOINT, LiveRunner
from pipeline.llm.prompts import PromptLibrary, PromptTemplate, sanitize_variables
from pipeline.llm.recording import (
    CallRecorder,
    CompactionResult,
    load_cached_ok,
    run_spending,
)
from pipeline.llm.records import CALL_STATUSES, LLMRequest, LLMResult
from pipeline.llm.replies import (  # noqa: F401  (re-exported: batch export and bench use them)
    completion_into,
    messages_for_mode,
    parse_json_reply,
    request_body,
    response_format_for,
    retry_after_s,
    validate_into,
)
from pipeline.storage import Warehouse
from pipeline.storage.warehouse import utc_now

logger = logging.getLogger("pipeline.llm")

T = TypeVar("T")
CALL_KEY_HEX_CHARS = 32
_retry_after_s = retry_after_s  # the name tests and older callers use
_OUTPUT_MODE_BY_ENDPOINT = OUTPUT_MODE_BY_ENDPOINT  # one dict per process (see live.py)


class LLMFailureBudgetExceeded(ForgeError):
    """Too many failed calls in one run; what finished is already recorded."""

    def __init__(self, message: str, summary: EngineRunSummary) -> None:
        super().__init__(message)
        self.summary = summary


class LLMBudgetReached(ForgeError):
    """The next request would exceed the run's cost or token budget. What finished is
    recorded; a rerun (with a larger budget) sends only what is missing."""

    def __init__(self, message: str, summary: EngineRunSummary) -> None:
        super().__init__(message)
        self.summary = summary


class EngineRunSummary(BaseModel):
    """Counts for one `GenerationEngine.run()` call."""

    model_config = ConfigDict(extra="forbid")

    requests: int = 0
    unique_calls: int = 0
    cached: int = Field(0, description="answered from llm_calls, nothing sent")
    executed: int = Field(0, description="calls made now (HTTP, batch or offline rule)")
    not_sent: int = Field(0, description="skipped after a stop (failures, endpoint, budget)")
    by_status: dict[str, int] = Field(default_factory=dict)
    recorded_rows: int = 0
    prompt_tokens: int = Field(0, description="reported by the server, all attempts")
    completion_tokens: int = 0
    cost: float | None = Field(None, description="from the price table; None: no price known")
    currency: str | None = None

    def line(self) -> str:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items())) or "none"
        spent = f"; {self.prompt_tokens + self.completion_tokens} tokens"
        if self.cost is not None:
            spent += f", {self.cost:.4f} {self.currency}"
        return (
            f"{self.requests} requests, {self.unique_calls} distinct calls: {self.cached} cached, "
            f"{self.executed} executed, {self.not_sent} not sent; statuses: {statuses}{spent}"
        )


@dataclass
class _Prepared:
    """A request rendered and keyed, ready to be answered."""

    key: str
    request: LLMRequest
    template: PromptTemplate
    clean_variables: dict[str, Any]
    messages: list[dict[str, str]]
    params: dict[str, Any]
    seed: int
    rule: offline.OfflineRule | None

    @property
    def prompt_chars(self) -> int:
        return sum(len(m.get("content") or "") for m in self.messages)


def call_key(
    prompt_version: str,
    messages: list[dict[str, str]],
    model: str,
    params: dict[str, Any],
    seed: int,
    extra: dict[str, Any] | None = None,
) -> str:
    """The cache key of one call. `extra` carries backend-specific inputs (offline rules)."""
    payload = {
        "prompt_version": prompt_version,
        "messages": messages,
        "model": model,
        "params": params,
        "seed": seed,
    }
    if extra:
        payload["extra"] = extra
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:CALL_KEY_HEX_CHARS]


def run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine from sync code, also when this thread already runs an event loop
    (Prefect tasks, notebooks): then it runs on a fresh loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="forge-llm") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


class GenerationEngine:
    """Answers `LLMRequest`s with the configured backend, caching and recording every call."""

    def __init__(
        self, warehouse: Warehouse, prompts: PromptLibrary, config: LLMConfig, run_id: str
    ) -> None:
        self.warehouse = warehouse
        self.prompts = prompts
        self.config = config
        self.run_id = run_id
        self.recorder = CallRecorder(warehouse, run_id)
        self.failures: Counter[str] = Counter()  # failed calls in this engine's run, by status
        self.last_summary: EngineRunSummary | None = None
        self.guard = EndpointGuard(
            config.refusal_limit, config.max_failed_share, config.failed_share_min_calls
        )
        self.prices: PriceTable | None = (
            load_prices(config.prices_file) if config.backend == "openai" else None
        )
        if config.max_cost is not None and self.price_of(0, 0) is None:
            raise ForgeError(
                f"a cost budget needs a price for model '{config.model}': add it to the price "
                f"table (FORGE_LLM_PRICES or --prices)"
            )
        self.budget: Budget | None = None
        self._stop_sending = False
        self._endpoint = config.endpoint  # computed once: it is written into every row
        self._advance: progress.Advance = progress.ignore  # the running step's progress

    # ---- preparation -------------------------------------------------------------------

    def prepare(self, request: LLMRequest) -> _Prepared:
        """Render and key one request (raises ForgeError for unknown prompts/variables)."""
        template = self.prompts.get(request.prompt)
        clean = sanitize_variables(request.variables, self.config.sanitize)
        messages = template.messages_clean(clean)
        seed = self.config.seed if request.seed is None else request.seed
        params: dict[str, Any] = {**template.sampling.model_dump(mode="json"), "seed": seed}
        rule = None
        extra = None
        if self.config.backend == "offline":
            # The rule reads the variables (not only the rendered text) and its own code:
            # both belong in the key, so editing a rule regenerates its items.
            rule = offline.get_rule(template.name)
            extra = {"rule": rule.fingerprint, "variables": clean}
        key = call_key(template.version, messages, self.config.model, params, seed, extra)
        return _Prepared(key, request, template, clean, messages, params, seed, rule)

    def price_of(self, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        if self.prices is None:
            return None
        batch = self.config.mode == "batch"
        return self.prices.cost(self.config.model, prompt_tokens, completion_tokens, batch=batch)

    def worst_case(self, item: _Prepared) -> tuple[int, float | None]:
        """Tokens and cost a request may use at most: its prompt plus max_tokens."""
        prompt = estimate_prompt_tokens(item.messages)
        completion = int(item.params["max_tokens"])
        return prompt + completion, self.price_of(prompt, completion)

    # ---- public entry ------------------------------------------------------------------

    def close(self) -> CompactionResult:
        """The run is over: write what is buffered and compact the run's chunk files into
        one sorted file per key bucket (once per run, not per `run()`: it rewrites them)."""
        return self.recorder.compact()

    def run(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        """Answer every request; results are in request order. See module docstring."""
        prepared = [self.prepare(r) for r in requests]
        unique: dict[str, _Prepared] = {}
        for item in prepared:
            unique.setdefault(item.key, item)
        cached = load_cached_ok(self.warehouse, list(unique), self.recorder)
        pending = [p for key, p in unique.items() if key not in cached]
        summary = EngineRunSummary(
            requests=len(prepared), unique_calls=len(unique), cached=len(cached)
        )
        outcomes: dict[str, dict[str, Any]] = {}
        with progress.step(f"llm {self.config.model}", total=len(unique), unit="call") as advance:
            advance(len(cached), cached=len(cached))
            self._advance = advance
            try:
                self._answer(pending, outcomes)
            finally:
                self._advance = progress.ignore
        self._summarize(summary, pending, cached, outcomes)
        self._raise_if_incomplete(summary, pending)
        return [self._result(p, cached.get(p.key), outcomes.get(p.key)) for p in prepared]

    def _answer(self, pending: list[_Prepared], outcomes: dict[str, dict[str, Any]]) -> None:
        """Send (or rule-answer) the uncached calls; every finished row goes to `record`."""
        try:
            if pending:
                self.recorder.warm_up(self._row(pending[0], origin="request", response_format=None))
                sendable = self._refuse_oversized(pending, outcomes)
                if self.config.backend == "offline":
                    self._run_offline(sendable, outcomes)
                elif sendable:
                    self._start_budget()
                    if self.config.mode == "batch":
                        from pipeline.llm.batch_jobs import BatchJobRunner

                        BatchJobRunner(self).run(sendable, outcomes)
                    else:
                        run_coroutine(lambda: LiveRunner(self).run(sendable, outcomes))
        finally:
            self.recorder.flush()

    def record(self, row: dict[str, Any], outcomes: dict[str, Any] | None) -> None:
        """Keep a finished call's row for the results (`outcomes`, None for a call of no
        request of this run) and for the table (flushed in chunks)."""
        # Some servers echo request headers (the key) into their replies: never store it.
        for field in ("raw_output", "parsed", "error"):
            if row.get(field):
                row[field] = self.config.redact(row[field])
        if row.get("prompt_tokens") is not None or row.get("completion_tokens") is not None:
            row["cost"] = self.price_of(row.get("prompt_tokens"), row.get("completion_tokens"))
        if outcomes is not None:
            outcomes[row["call_key"]] = row
        self.recorder.add(row)
        self._advance(1, failed=int(row["status"] != "ok"))
        if row["status"] not in ("ok", "prompt_too_large"):
            self.failures[row["status"]] += 1
            if sum(self.failures.values()) >= self.config.max_failures:
                self._stop_sending = True

    def _refuse_oversized(
        self, pending: list[_Prepared], outcomes: dict[str, dict[str, Any]]
    ) -> list[_Prepared]:
        sendable = []
        for item in pending:
            if item.prompt_chars <= self.config.max_prompt_chars:
                sendable.append(item)
                continue
            row = self._row(item, origin="request", response_format=None)
            row.update(
                status="prompt_too_large",
                attempts=0,
                error=f"the rendered prompt has {item.prompt_chars} characters, over "
                f"max_prompt_chars {self.config.max_prompt_chars}; not sent",
            )
            self.record(row, outcomes)
        return sendable

    def _start_budget(self) -> None:
        config = self.config
        if config.max_cost is None and config.max_total_tokens is None:
            return
        tokens, cost = run_spending(self.warehouse, self.run_id)
        self.budget = Budget(config.max_total_tokens, config.max_cost, tokens, cost)

    def _summarize(
        self,
        summary: EngineRunSummary,
        pending: list[_Prepared],
        cached: dict[str, Any],
        outcomes: dict[str, dict[str, Any]],
    ) -> None:
        summary.executed = len(outcomes)
        summary.not_sent = len(pending) - len(outcomes)
        summary.recorded_rows = len(outcomes)
        by_status = Counter(row["status"] for row in outcomes.values())
        by_status["ok"] += len(cached)
        summary.by_status = {s: by_status[s] for s in CALL_STATUSES if by_status[s]}
        rows = list(outcomes.values())
        summary.prompt_tokens = sum(r.get("prompt_tokens") or 0 for r in rows)
        summary.completion_tokens = sum(r.get("completion_tokens") or 0 for r in rows)
        if self.prices is not None and self.prices.models.get(self.config.model):
            summary.cost = sum(r.get("cost") or 0.0 for r in rows)
            summary.currency = self.prices.currency
        self.last_summary = summary
        logger.info("llm run %s (%s): %s", self.run_id, self.config.model, summary.line())

    def _raise_if_incomplete(self, summary: EngineRunSummary, pending: list[_Prepared]) -> None:
        cause = (
            self.guard.final_cause(cached_ok=summary.cached)
            if self.config.backend != "offline"
            else None
        )
        if cause is not None:
            raise LLMEndpointError(
                self._endpoint,
                cause,
                failed=self.guard.failed + summary.not_sent,
                total=len(pending),
            )
        if self.budget is not None and self.budget.exhausted:
            limits = []
            if self.config.max_cost is not None:
                limits.append(f"max_cost {self.config.max_cost:g}")
            if self.config.max_total_tokens is not None:
                limits.append(f"max_total_tokens {self.config.max_total_tokens}")
            spent = f"{self.budget.spent_tokens} tokens"
            if self.config.max_cost is not None:
                spent += f", {self.budget.spent_cost:.4f} {self.prices.currency}"  # type: ignore[union-attr]
            raise LLMBudgetReached(
                f"budget reached ({', '.join(limits)}): {summary.executed} of {len(pending)} "
                f"calls made, {summary.not_sent} not sent; run '{self.run_id}' has spent "
                f"{spent}. Finished calls are recorded; rerun with a larger budget to "
                f"send only the rest.",
                summary,
            )
        if summary.not_sent or self._stop_sending:
            failed = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures.items()))
            raise LLMFailureBudgetExceeded(
                f"LLM failure budget exhausted ({sum(self.failures.values())} failed calls >= "
                f"max_failures {self.config.max_failures}; {failed}); {summary.not_sent} "
                f"requests not sent. Finished calls are recorded in llm_calls "
                f"(run_id '{self.run_id}'); fix the cause and rerun to resume.",
                summary,
            )

    # ---- offline backend ---------------------------------------------------------------

    def _run_offline(self, pending: list[_Prepared], outcomes: dict[str, dict[str, Any]]) -> None:
        for item in pending:
            assert item.rule is not None  # prepare() sets it for the offline backend
            started = time.perf_counter()
            row = self._row(item, origin="offline-rule", response_format="offline")
            try:
                reply = item.rule.fn(dict(item.clean_variables))
            except Exception as exc:  # a rule bug on one item must not stop the run
                row.update(
                    status="invalid_output",
                    error=f"offline rule for '{item.template.name}' raised "
                    f"{type(exc).__name__}: {exc}",
                )
            else:
                try:
                    raw = json.dumps(reply, ensure_ascii=False)
                except (TypeError, ValueError) as exc:
                    row.update(status="invalid_output", error=f"reply is not JSON: {exc}")
                else:
                    validate_into(row, item.template.validator, reply, raw)
            row.update(attempts=1, latency_s=time.perf_counter() - started)
            outcomes[item.key] = row
            self.recorder.add(row)
            self._advance(1, failed=int(row["status"] != "ok"))
            # Rules answer thousands of calls a second and are cheap to redo: flushing by
            # time keeps the file count proportional to run time, not to calls.
            if (
                self.recorder.pending() >= self.config.flush_every
                and time.monotonic() - self.recorder.last_flush >= self.config.flush_interval_s
            ):
                self.recorder.flush()

    # ---- rows and results --------------------------------------------------------------

    def _row(self, item: _Prepared, *, origin: str, response_format: str | None) -> dict[str, Any]:
        return {
            "call_key": item.key,
            "item_key": item.request.item_key,
            "prompt_name": item.template.name,
            "prompt_version": item.template.version,
            "model": self.config.model,
            "backend": self.config.backend,
            "endpoint": self._endpoint,
            "origin": origin,
            "params": json.dumps(item.params, sort_keys=True),
            "seed": item.seed,
            "messages": json.dumps(item.messages, ensure_ascii=False),
            "response_format": response_format,
            "status": "invalid_output",
            "error": None,
            "run_id": self.run_id,
            "created_at": utc_now(),
        }

    def _result(
        self, item: _Prepared, cached: dict[str, Any] | None, row: dict[str, Any] | None
    ) -> LLMResult:
        source = cached if cached is not None else row
        assert source is not None  # run() raises before building results when calls are missing
        parsed = source.get("parsed")
        return LLMResult(
            item_key=item.request.item_key,
            prompt_name=item.template.name,
            prompt_version=item.template.version,
            model=source["model"],
            backend=source["backend"],
            status="ok" if cached is not None else source["status"],
            parsed=json.loads(parsed) if parsed else None,
            raw_output=source.get("raw_output"),
            call_key=item.key,
            error=None if cached is not None else source.get("error"),
            attempts=source.get("attempts") or 0,
            cached=cached is not None,
        )
