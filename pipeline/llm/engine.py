"""The generation engine: render → (cache | offline rule | HTTP call) → validate → record.

`GenerationEngine.run(requests)` returns one `LLMResult` per request, in request order.

- Cache: each request gets a `call_key` = sha256(prompt version, rendered messages, model,
  sampling params, seed). Keys with an `ok` row in `llm_calls` are answered from the
  warehouse without a request; failed rows are kept but retried.
- Calls: `AsyncOpenAI` (its own retries off) under an `asyncio.Semaphore` of
  `config.concurrency`, spread over several small connection pools; we retry 408/409/429/5xx, timeouts and connection errors with
  exponential backoff and jitter, honouring `Retry-After` / `retry-after-ms`.
- Output: `response_format=json_schema`; if the server rejects that with a 400, the engine
  switches that endpoint to `json_object` (remembered for the process) and parses.
- Recording: finished calls are appended to `llm_calls` in chunks (`flush_every` results or
  `flush_interval_s`), each chunk its own partition `run=<run_id>/part=<n>-<token>`, so a
  killed run loses at most the unflushed chunk and a rerun resumes from the rest.
- Failure budget: after `max_failures` failed calls the engine stops sending, records what
  finished and raises `LLMFailureBudgetExceeded` with counts by status.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import hashlib
import json
import logging
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import ForgeError
from pipeline.llm import offline
from pipeline.llm.config import LLMConfig
from pipeline.llm.prompts import PromptLibrary, PromptTemplate, sanitize_variables
from pipeline.llm.records import CALL_STATUSES, LLMRequest, LLMResult
from pipeline.llm.schema import ReplyValidationError, ReplyValidator
from pipeline.storage import Warehouse
from pipeline.storage import schema as schemas
from pipeline.storage.warehouse import to_arrow, utc_now

logger = logging.getLogger("pipeline.llm")

T = TypeVar("T")
CALL_KEY_HEX_CHARS = 32
CONNECTIONS_PER_CLIENT = 4  # HTTP connections per pooled client shard (see _run_http)
_RETRYABLE_STATUS = {408, 409, 429}
# Which structured-output mode each (endpoint, model) accepted; shared by engines in a
# process so a server that rejected json_schema once is not asked again.
_OUTPUT_MODE_BY_ENDPOINT: dict[tuple[str, str], str] = {}
_OUTPUT_MODE_LOCK = threading.Lock()


class LLMFailureBudgetExceeded(ForgeError):
    """Too many failed calls in one run; what finished is already recorded."""

    def __init__(self, message: str, summary: EngineRunSummary) -> None:
        super().__init__(message)
        self.summary = summary


class EngineRunSummary(BaseModel):
    """Counts for one `GenerationEngine.run()` call."""

    model_config = ConfigDict(extra="forbid")

    requests: int = 0
    unique_calls: int = 0
    cached: int = Field(0, description="answered from llm_calls, nothing sent")
    executed: int = Field(0, description="calls made now (HTTP or offline rule)")
    not_sent: int = Field(0, description="skipped after the failure budget ran out")
    by_status: dict[str, int] = Field(default_factory=dict)
    recorded_rows: int = 0

    def line(self) -> str:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items())) or "none"
        return (
            f"{self.requests} requests, {self.unique_calls} distinct calls: {self.cached} cached, "
            f"{self.executed} executed, {self.not_sent} not sent; statuses: {statuses}"
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


class CallRecorder:
    """Buffers finished-call rows and appends them to `llm_calls` in chunk partitions."""

    def __init__(self, warehouse: Warehouse, run_id: str) -> None:
        self.warehouse = warehouse
        self.run_part = "run=" + re.sub(r"[^A-Za-z0-9_.+\-]", "_", run_id)
        self._token = secrets.token_hex(3)
        self._seq = 0
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.rows_written = 0
        self.last_flush = time.monotonic()

    def warm_up(self, sample_row: dict[str, Any]) -> None:
        """Convert one row without writing it: pyarrow's first tz-aware conversion loads
        modules for about a second, which would otherwise delay the first flush (and
        widen the window a kill can lose)."""
        to_arrow(schemas.table("llm_calls"), [sample_row])

    def add(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._buffer.append(row)

    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> int:
        """Write the buffered rows as a new partition (atomic temp file + rename)."""
        with self._lock:
            rows, self._buffer = self._buffer, []
            self._seq += 1
            partition = f"{self.run_part}/part={self._seq:06d}-{self._token}"
            self.last_flush = time.monotonic()
        if not rows:
            return 0
        written = self.warehouse.write_partition("llm_calls", partition, rows)
        with self._lock:
            self.rows_written += written
        return written


def load_cached_ok(warehouse: Warehouse, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Latest `ok` row of `llm_calls` for each of `keys` that has one."""
    if not keys or not warehouse.partitions("llm_calls"):
        return {}  # nothing recorded yet: skip building a DuckDB connection
    rows = warehouse.rows(
        "SELECT call_key, model, backend, raw_output, parsed, attempts FROM llm_calls "
        "WHERE status = 'ok' AND call_key IN (SELECT unnest(?::VARCHAR[])) "
        "QUALIFY row_number() OVER (PARTITION BY call_key ORDER BY created_at DESC) = 1",
        [list(keys)],
    )
    return {row["call_key"]: row for row in rows}


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
        self._stop_sending = False
        self._endpoint = config.endpoint  # computed once: it is written into every row

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

    # ---- public entry ------------------------------------------------------------------

    def run(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        """Answer every request; results are in request order. See module docstring."""
        prepared = [self.prepare(r) for r in requests]
        unique: dict[str, _Prepared] = {}
        for item in prepared:
            unique.setdefault(item.key, item)
        cached = load_cached_ok(self.warehouse, list(unique))
        pending = [p for key, p in unique.items() if key not in cached]
        summary = EngineRunSummary(
            requests=len(prepared), unique_calls=len(unique), cached=len(cached)
        )
        outcomes: dict[str, dict[str, Any]] = {}
        try:
            if pending:
                self.recorder.warm_up(self._row(pending[0], origin="request", response_format=None))
                if self.config.backend == "offline":
                    self._run_offline(pending, outcomes)
                else:
                    run_coroutine(lambda: self._run_http(pending, outcomes))
        finally:
            self.recorder.flush()
        summary.executed = len(outcomes)
        summary.not_sent = len(pending) - len(outcomes)
        summary.recorded_rows = len(outcomes)
        by_status = Counter(row["status"] for row in outcomes.values())
        by_status["ok"] += len(cached)
        summary.by_status = {s: by_status[s] for s in CALL_STATUSES if by_status[s]}
        self.last_summary = summary
        logger.info("llm run %s (%s): %s", self.run_id, self.config.model, summary.line())
        if summary.not_sent or self._stop_sending:
            failed = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures.items()))
            raise LLMFailureBudgetExceeded(
                f"LLM failure budget exhausted ({sum(self.failures.values())} failed calls >= "
                f"max_failures {self.config.max_failures}; {failed}); {summary.not_sent} "
                f"requests not sent. Finished calls are recorded in llm_calls "
                f"(run_id '{self.run_id}'); fix the cause and rerun to resume.",
                summary,
            )
        return [self._result(p, cached.get(p.key), outcomes.get(p.key)) for p in prepared]

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
            if self.recorder.pending() >= self.config.flush_every:
                self.recorder.flush()

    # ---- HTTP backend ------------------------------------------------------------------

    async def _run_http(
        self, pending: list[_Prepared], outcomes: dict[str, dict[str, Any]]
    ) -> None:
        import httpx
        import openai

        config = self.config
        # httpcore's pool does work proportional to its number of connections on every
        # request (it checks each idle connection), so one pool of 64 connections costs
        # ~10 ms CPU per request. Several small pools ("shards") behind one semaphore cut
        # that several-fold (see bench/llm.py); a free-slot queue picks a shard that has
        # a connection to spare.
        shards = -(-config.concurrency // CONNECTIONS_PER_CLIENT)
        per_shard = -(-config.concurrency // shards)
        api_key = config.api_key_from_env()
        clients = [
            openai.AsyncOpenAI(
                api_key=api_key,
                base_url=config.base_url,
                timeout=config.timeout_s,
                max_retries=0,
                http_client=httpx.AsyncClient(
                    timeout=config.timeout_s,
                    limits=httpx.Limits(
                        max_connections=per_shard, max_keepalive_connections=per_shard
                    ),
                ),
            )
            for _ in range(shards)
        ]
        del api_key
        free_slots: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(config.concurrency):
            free_slots.put_nowait(slot % shards)
        semaphore = asyncio.Semaphore(config.concurrency)
        flushes: set[asyncio.Future[int]] = set()
        loop = asyncio.get_running_loop()

        def schedule_flush() -> None:
            future = loop.run_in_executor(None, self.recorder.flush)
            flushes.add(future)
            future.add_done_callback(flushes.discard)

        async def ticker() -> None:
            while True:
                await asyncio.sleep(config.flush_interval_s)
                if self.recorder.pending():
                    schedule_flush()

        async def one(item: _Prepared) -> None:
            async with semaphore:
                if self._stop_sending:
                    return
                # Never empty: the semaphore admits at most `concurrency` holders and
                # the queue holds `concurrency` slots.
                shard = free_slots.get_nowait()
                try:
                    row = await self._call(clients[shard], item)
                finally:
                    free_slots.put_nowait(shard)
            outcomes[item.key] = row
            self.recorder.add(row)
            if row["status"] != "ok":
                self.failures[row["status"]] += 1
                if sum(self.failures.values()) >= config.max_failures:
                    self._stop_sending = True
            if self.recorder.pending() >= config.flush_every:
                schedule_flush()

        tick = asyncio.create_task(ticker())
        try:
            await asyncio.gather(*(one(item) for item in pending))
        finally:
            tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tick
            if flushes:
                await asyncio.gather(*list(flushes), return_exceptions=True)
            for client in clients:
                await client.close()

    def _output_mode(self) -> str:
        if self.config.output_mode != "auto":
            return self.config.output_mode
        with _OUTPUT_MODE_LOCK:
            return _OUTPUT_MODE_BY_ENDPOINT.get((self._endpoint, self.config.model), "json_schema")

    def _fall_back_to_json_object(self) -> None:
        with _OUTPUT_MODE_LOCK:
            _OUTPUT_MODE_BY_ENDPOINT[(self._endpoint, self.config.model)] = "json_object"
        logger.warning(
            "%s rejected response_format json_schema; using json_object + parsing",
            self._endpoint,
        )

    async def _call(self, client: Any, item: _Prepared) -> dict[str, Any]:
        import openai

        config = self.config
        started = time.perf_counter()
        row = self._row(item, origin="request", response_format=None)
        attempts = 0
        retries = 0
        while True:
            mode = self._output_mode()
            row["response_format"] = mode
            attempts += 1
            failure: tuple[str, str, int | None] | None = None  # status, error, http status
            retry_after: float | None = None
            try:
                completion = await client.chat.completions.create(
                    **request_body(config, item, mode)
                )
            except openai.APIStatusError as exc:
                code = exc.status_code
                if (
                    code == 400
                    and mode == "json_schema"
                    and config.output_mode == "auto"
                    and _mentions_response_format(exc)
                ):
                    self._fall_back_to_json_object()
                    continue  # not a failure of the request: same attempt budget
                failure = ("http_error", f"HTTP {code}: {_error_text(exc)}", code)
                if code in _RETRYABLE_STATUS or code >= 500:
                    retry_after = _retry_after_s(exc.response.headers)
                else:
                    retries = config.max_retries  # 4xx other than the above: do not retry
            except openai.APITimeoutError:
                failure = ("timeout", f"no reply within {config.timeout_s:g} s", None)
            except openai.APIConnectionError as exc:
                failure = ("refused", f"cannot reach the endpoint: {_error_text(exc)}", None)
            except (openai.APIError, ValueError) as exc:
                # A 200 whose body is not a chat completion (e.g. malformed JSON).
                failure = ("invalid_output", f"unreadable response: {_error_text(exc)}", 200)
                retries = config.max_retries
            else:
                completion_into(row, item.template.validator, completion)
                row.update(attempts=attempts, latency_s=time.perf_counter() - started)
                return row
            status, error, http_status = failure
            if retries >= config.max_retries or self._stop_sending:
                row.update(
                    status=status,
                    error=config.redact(error),
                    http_status=http_status,
                    attempts=attempts,
                    latency_s=time.perf_counter() - started,
                )
                return row
            delay = self._backoff_s(retries, retry_after)
            retries += 1
            logger.debug(
                "retry %d for %s in %.3f s after %s",
                retries,
                item.request.item_key,
                delay,
                config.redact(error),
            )
            await asyncio.sleep(delay)

    def _backoff_s(self, retries_so_far: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.retry_after_max_s)
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2**retries_so_far)
        return random.uniform(ceiling / 2, ceiling)  # jitter spreads synchronized retries

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


def completion_into(row: dict[str, Any], validator: ReplyValidator, completion: Any) -> None:
    """Fill a call row from a chat completion (an openai object): status, output, usage."""
    usage = getattr(completion, "usage", None)
    if usage is not None:
        row["prompt_tokens"] = usage.prompt_tokens
        row["completion_tokens"] = usage.completion_tokens
    row["http_status"] = 200
    choices = getattr(completion, "choices", None) or []
    if not choices:
        row.update(status="invalid_output", error="the reply has no choices")
        return
    choice = choices[0]
    message = choice.message
    row["finish_reason"] = choice.finish_reason
    content = message.content
    row["raw_output"] = content
    refusal = getattr(message, "refusal", None)
    if refusal or choice.finish_reason == "content_filter":
        row.update(status="refused", error=f"the model refused: {refusal or 'content_filter'}")
        return
    if not content:
        row.update(status="invalid_output", error="empty reply")
        return
    try:
        reply = parse_json_reply(content)
    except ValueError as exc:
        cut = " (cut at max_tokens)" if choice.finish_reason == "length" else ""
        row.update(status="invalid_output", error=f"reply is not JSON{cut}: {exc}")
        return
    validate_into(row, validator, reply, content)


def validate_into(row: dict[str, Any], validator: ReplyValidator, reply: Any, raw: str) -> None:
    """Mark a call row ok (with the parsed reply) or invalid_output (with the reasons)."""
    row["raw_output"] = raw
    try:
        parsed = validator.validate(reply)
    except ReplyValidationError as exc:
        row.update(status="invalid_output", error=f"reply does not match the schema: {exc}")
        return
    row.update(status="ok", parsed=json.dumps(parsed, ensure_ascii=False), error=None)


def _schema_is_strict_compatible(schema: Any) -> bool:
    """OpenAI strict mode needs every object closed and every property required."""
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object":
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required", [])) != set(props):
            return False
        return all(_schema_is_strict_compatible(s) for s in props.values())
    if schema.get("type") == "array":
        return _schema_is_strict_compatible(schema.get("items"))
    return True


def request_body(config: LLMConfig, item: _Prepared, mode: str) -> dict[str, Any]:
    """The chat-completions body of one request, the same for live calls and Batch-API lines."""
    body: dict[str, Any] = {
        "model": config.model,
        "messages": messages_for_mode(item.template, item.messages, mode),
        "temperature": item.params["temperature"],
        "top_p": item.params["top_p"],
        "max_tokens": item.params["max_tokens"],
        "response_format": response_format_for(item.template, mode),
    }
    if config.send_seed:
        body["seed"] = item.seed
    return body


def response_format_for(template: PromptTemplate, mode: str) -> dict[str, Any]:
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {
                "name": re.sub(r"[^A-Za-z0-9_-]", "_", template.name)[:64],
                "schema": template.schema,
                "strict": _schema_is_strict_compatible(template.schema),
            },
        }
    return {"type": "json_object"}


def messages_for_mode(
    template: PromptTemplate, messages: list[dict[str, str]], mode: str
) -> list[dict[str, str]]:
    """The messages actually sent: in JSON mode a system note states the schema, since
    JSON mode alone only promises *some* JSON object."""
    if mode == "json_schema":
        return messages
    note = {
        "role": "system",
        "content": "Reply with one JSON object that matches this JSON Schema:\n"
        + json.dumps(template.schema, sort_keys=True),
    }
    if messages and messages[0]["role"] == "system":
        return [messages[0], note, *messages[1:]]
    return [note, *messages]


def _mentions_response_format(exc: Any) -> bool:
    text = _error_text(exc).lower()
    return "response_format" in text or "json_schema" in text


def _error_text(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:2000]
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message)[:2000]


def _retry_after_s(headers: Any) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `Retry-After` secs or date)."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        with contextlib.suppress(ValueError):
            return max(0.0, float(millis) / 1000)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_json_reply(content: str) -> Any:
    """The JSON object in a reply: the whole text, a ```json fence, or the outermost {...}."""
    text = content.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError as first_error:
        candidates = [m.group(1).strip() for m in _FENCE_RE.finditer(text)]
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
        for candidate in candidates:
            try:
                return json.loads(candidate)
            except json.JSONDecodeError:
                continue
        raise ValueError(str(first_error)) from None
