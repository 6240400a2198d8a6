"""Live chat-completion calls for `GenerationEngine.run` (the engine's HTTP backend).

- Concurrency: `AsyncOpenAI` clients (their own retries off) spread over several small
  connection pools, under an `AdaptiveLimit` of at most `config.concurrency` calls.
  httpcore's pool does work proportional to its number of connections on every request
  (it checks each idle connection), so one pool of 64 connections costs ~10 ms CPU per
  request; several small pools ("shards") cut that several-fold (see bench/llm.py).
- Deadline: every HTTP attempt runs under `asyncio.wait_for(timeout_s)`, so a server that
  trickles bytes cannot hold a call longer than `timeout_s` (httpx's own timeout is per
  read, not per request).
- Retries: 408/409/429/5xx, timeouts and connection resets are retried with exponential
  backoff and jitter, honouring `Retry-After` / `retry-after-ms`. Refusal-class failures
  (connection refused, DNS, 401/403/404) are not retried: they count towards the
  endpoint's refusal limit (`pipeline.llm.limits.EndpointGuard`) instead.
- Replies: a reply cut at max_tokens (`truncated`) is asked again once with twice the room,
  up to `max_tokens_ceiling`; a reply that is not JSON or fails the schema gets
  `repair_attempts` repair rounds (the reply and the validation error are sent back).
- Output mode: `response_format=json_schema`; if the server rejects that with a 400, the
  endpoint is switched to `json_object` (remembered for the process) and replies parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from pipeline.llm.limits import AdaptiveLimit
from pipeline.llm.replies import (
    REPAIRABLE_STATUSES,
    completion_into,
    connection_cause,
    error_text,
    http_refusal_cause,
    mentions_response_format,
    repair_messages,
    request_body,
    retry_after_s,
)

if TYPE_CHECKING:
    from pipeline.llm.engine import GenerationEngine, _Prepared

logger = logging.getLogger("pipeline.llm")

CONNECTIONS_PER_CLIENT = 4  # HTTP connections per pooled client shard
_RETRYABLE_STATUS = {408, 409, 429}
_OVERLOAD_STATUS = {429, 503}
# Which structured-output mode each (endpoint, model) accepted; shared by engines in a
# process so a server that rejected json_schema once is not asked again.
OUTPUT_MODE_BY_ENDPOINT: dict[tuple[str, str], str] = {}
_OUTPUT_MODE_LOCK = threading.Lock()


class LiveRunner:
    """Sends one engine run's pending requests; fills `outcomes` through `engine.record`."""

    def __init__(self, engine: GenerationEngine) -> None:
        self.engine = engine
        self.config = engine.config
        self.limit = AdaptiveLimit(
            self.config.concurrency, adaptive=self.config.adaptive_concurrency
        )

    async def run(self, pending: list[_Prepared], outcomes: dict[str, dict[str, Any]]) -> None:
        import httpx
        import openai

        engine, config = self.engine, self.config
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
        flushes: set[asyncio.Future[int]] = set()
        loop = asyncio.get_running_loop()

        def schedule_flush() -> None:
            future = loop.run_in_executor(None, engine.recorder.flush)
            flushes.add(future)
            future.add_done_callback(flushes.discard)

        async def ticker() -> None:
            while True:
                await asyncio.sleep(config.flush_interval_s)
                if engine.recorder.pending():
                    schedule_flush()

        async def one(item: _Prepared) -> None:
            async with self.limit.slot():
                if engine._stop_sending:
                    return
                reserved: tuple[int, float | None] = (0, None)
                if engine.budget is not None:
                    reserved = engine.worst_case(item)
                    if not engine.budget.admit(*reserved):
                        engine._stop_sending = True
                        return
                # Never empty: at most `concurrency` calls hold a slot of the limit.
                shard = free_slots.get_nowait()
                try:
                    row, refusal = await self._call(clients[shard], item)
                finally:
                    free_slots.put_nowait(shard)
                engine.record(row, outcomes)
                if engine.budget is not None:
                    engine.budget.settle(*reserved, row)
            if engine.guard.record(row["status"], refusal, row.get("error")) is not None:
                engine._stop_sending = True
            if engine.recorder.pending() >= config.flush_every:
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

    # ---- one call: reply handling ------------------------------------------------------

    async def _call(self, client: Any, item: _Prepared) -> tuple[dict[str, Any], str | None]:
        """One call with its retries, its longer retry and its repair rounds."""
        started = time.perf_counter()
        row = self.engine._row(item, origin="request", response_format=None)
        row["attempts"] = 0
        messages = None  # None: the prepared messages
        max_tokens = int(item.params["max_tokens"])
        longer_done = False
        repairs = 0
        while True:
            refusal = await self._send(client, item, row, messages, max_tokens)
            status = row["status"]
            if refusal is not None or status not in REPAIRABLE_STATUSES:
                break
            if status == "truncated":
                room = min(self.config.max_tokens_ceiling, 2 * max_tokens)
                if longer_done or room <= max_tokens:
                    break
                longer_done, max_tokens = True, room
                continue
            if repairs >= self.config.repair_attempts or not row.get("raw_output"):
                break
            repairs += 1
            messages = repair_messages(item.messages, row["raw_output"], row["error"])
        if repairs and row["status"] != "ok":
            row["error"] = f"still invalid after {repairs} repair round(s): {row['error']}"
        row["latency_s"] = time.perf_counter() - started
        return row, refusal

    # ---- one call: transport -----------------------------------------------------------

    async def _send(
        self,
        client: Any,
        item: _Prepared,
        row: dict[str, Any],
        messages: list[dict[str, str]] | None,
        max_tokens: int,
    ) -> str | None:
        """Send until a reply arrives or retries run out; fills `row`. Returns the
        refusal-class cause when the endpoint refused the call, else None."""
        import openai

        engine, config = self.engine, self.config
        retries = 0
        while True:
            mode = self._output_mode()
            row["response_format"] = mode
            row["attempts"] += 1
            body = request_body(config, item, mode)
            if messages is not None:
                body["messages"] = messages
            body["max_tokens"] = max_tokens
            failure: tuple[str, str, int | None] | None = None  # status, error, http status
            refusal: str | None = None
            retry_after: float | None = None
            sent_at = time.perf_counter()
            try:
                completion = await asyncio.wait_for(
                    client.chat.completions.create(**body), timeout=config.timeout_s
                )
            except openai.APIStatusError as exc:
                code = exc.status_code
                message = error_text(exc)
                if (
                    code == 400
                    and mode == "json_schema"
                    and config.output_mode == "auto"
                    and mentions_response_format(exc)
                ):
                    self._fall_back_to_json_object()
                    continue  # an HTTP attempt, but not a failure: same retry budget
                failure = ("http_error", f"HTTP {code}: {message}", code)
                refusal = http_refusal_cause(code, config.model, message)
                if code in _OVERLOAD_STATUS:
                    self.limit.on_overload()
                if refusal is None and (code in _RETRYABLE_STATUS or code >= 500):
                    retry_after = retry_after_s(exc.response.headers)
                else:
                    retries = config.max_retries  # other 4xx: do not retry
            except (TimeoutError, openai.APITimeoutError):
                failure = ("timeout", f"no complete reply within {config.timeout_s:g} s", None)
            except openai.APIConnectionError as exc:
                refusal = connection_cause(exc)
                detail = refusal or error_text(exc)
                failure = ("unreachable", f"cannot reach the endpoint: {detail}", None)
                if refusal is not None:
                    retries = config.max_retries
            except (openai.APIError, ValueError) as exc:
                # A 200 whose body is not a chat completion (e.g. malformed JSON).
                failure = ("invalid_output", f"unreadable response: {error_text(exc)}", 200)
                retries = config.max_retries
            else:
                self.limit.on_success(time.perf_counter() - sent_at)
                completion_into(row, item.template.validator, completion)
                return None
            status, error, http_status = failure
            if retries >= config.max_retries or engine._stop_sending:
                row.update(status=status, error=config.redact(error), http_status=http_status)
                return refusal
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
            if engine._stop_sending:  # another call stopped the run while this one waited
                row.update(status=status, error=config.redact(error), http_status=http_status)
                return refusal

    def _backoff_s(self, retries_so_far: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.retry_after_max_s)
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2**retries_so_far)
        return random.uniform(ceiling / 2, ceiling)  # jitter spreads synchronized retries

    def _output_mode(self) -> str:
        if self.config.output_mode != "auto":
            return self.config.output_mode
        with _OUTPUT_MODE_LOCK:
            key = (self.engine._endpoint, self.config.model)
            return OUTPUT_MODE_BY_ENDPOINT.get(key, "json_schema")

    def _fall_back_to_json_object(self) -> None:
        with _OUTPUT_MODE_LOCK:
            OUTPUT_MODE_BY_ENDPOINT[(self.engine._endpoint, self.config.model)] = "json_object"
        logger.warning(
            "%s rejected response_format json_schema; using json_object + parsing",
            self.engine._endpoint,
        )
