"""Run-level limits of the HTTP engine: endpoint health, adaptive concurrency, budgets.

- `EndpointGuard` decides when the endpoint as a whole cannot serve the run: after
  `refusal_limit` refusal-class failures in a row (connection refused, DNS, HTTP
  401/403/404; a success resets the count), or when more than `max_failed_share` of the
  finished calls failed in transport (http_error, timeout, unreachable) — judged mid-run
  once `failed_share_min_calls` calls finished, and over the whole run at its end.
  Reply problems (invalid_output, truncated, refused, empty_reply) are the model's, not
  the endpoint's, and do not count.
- `AdaptiveLimit` replaces a fixed semaphore: AIMD on the number of calls in flight.
  It starts at `min(maximum, 8)` and grows by one per finished call until the first
  congestion signal (slow start), then by 1/limit per call (one per round trip). A 429
  or 503 cuts it by a quarter; a latency above `latency_tolerance` × the lowest latency seen
  (self-hosted servers that queue instead of refusing) cuts it by 10 %. At most one
  decrease per round trip (the calls already in flight report the same congestion).
  Never above the configured maximum, never below 1. Retry-After is honoured by the
  caller's backoff, independently.
- `Budget` admits a request only when the spent plus reserved tokens/cost plus the
  request's worst case (estimated prompt + max_tokens) stays within `max_tokens` /
  `max_cost`; finished calls settle their reservation with the usage the server reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator

from pipeline.llm.records import TRANSPORT_FAILURES


class EndpointGuard:
    """Counts call outcomes and names the cause once the endpoint should be given up."""

    def __init__(self, refusal_limit: int, max_failed_share: float, min_calls: int) -> None:
        self.refusal_limit = refusal_limit
        self.max_failed_share = max_failed_share
        self.min_calls = min_calls
        self.refusals_in_a_row = 0
        self.finished = 0
        self.failed = 0
        self.errors: Counter[str] = Counter()
        self.cause: str | None = None

    def record(self, status: str, refusal_cause: str | None, error: str | None) -> str | None:
        """Count one finished call; the stop cause when the run must stop now, else None."""
        self.finished += 1
        if status in TRANSPORT_FAILURES:
            self.failed += 1
            self.errors[(error or status).split(":")[0]] += 1
        if refusal_cause is not None:
            self.refusals_in_a_row += 1
            if self.refusals_in_a_row >= self.refusal_limit and self.cause is None:
                self.cause = refusal_cause
        elif status == "ok":
            self.refusals_in_a_row = 0
        if self.cause is None and self.finished >= self.min_calls:
            self.cause = self._share_cause()
        return self.cause

    def final_cause(self, cached_ok: int = 0) -> str | None:
        """At the end of a run every call has been seen: judge the share whatever the count.
        Calls answered from the cache are successes of the same generation, so a rerun
        that retries 2 failed calls of 17 is judged on 17, not on 2."""
        if self.cause is None and self.finished:
            self.cause = self._share_cause(cached_ok)
        return self.cause

    def _share_cause(self, cached_ok: int = 0) -> str | None:
        share = self.failed / (self.finished + cached_ok)
        if share <= self.max_failed_share:
            return None
        common, _ = self.errors.most_common(1)[0]
        return (
            f"{share:.0%} of calls failed, above "
            f"max_failed_share {self.max_failed_share:.0%}; most often {common}"
        )


class AdaptiveLimit:
    """An asyncio concurrency limit whose size follows congestion (see module docstring)."""

    def __init__(
        self,
        maximum: int,
        *,
        adaptive: bool = True,
        initial: int = 8,
        latency_tolerance: float = 2.0,
    ) -> None:
        self.maximum = maximum
        self.adaptive = adaptive
        self.limit = float(maximum if not adaptive else min(maximum, initial))
        self.latency_tolerance = latency_tolerance
        self.in_flight = 0
        self.slow_start = True
        self.lowest_latency: float | None = None
        self.decreases = 0
        self.peak = self.limit
        self._last_decrease = 0.0
        self._condition = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._condition:
            await self._condition.wait_for(lambda: self.in_flight < int(self.limit))
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._condition:
                self.in_flight -= 1
                self._condition.notify_all()

    def on_success(self, latency_s: float) -> None:
        if not self.adaptive:
            return
        if self.lowest_latency is None or latency_s < self.lowest_latency:
            self.lowest_latency = latency_s
        if latency_s > self.latency_tolerance * self.lowest_latency:
            self._decrease(0.9)
        elif self.slow_start:
            self._set(self.limit + 1)
        else:
            self._set(self.limit + 1 / self.limit)

    def on_overload(self) -> None:
        """A 429 or 503: the server says it is over capacity."""
        if self.adaptive:
            self._decrease(0.75)

    def _decrease(self, factor: float) -> None:
        now = time.monotonic()
        # Calls in flight when the limit was cut report the same congestion: one cut per
        # round trip (the lowest latency, or 50 ms before any is known).
        if now - self._last_decrease < max(self.lowest_latency or 0.05, 0.01):
            return
        self._last_decrease = now
        self.slow_start = False
        self.decreases += 1
        self._set(self.limit * factor)

    def _set(self, value: float) -> None:
        self.limit = max(1.0, min(float(self.maximum), value))
        self.peak = max(self.peak, self.limit)
        # No wake-up needed: a limit only grows in on_success, which the finishing call
        # runs before leaving its slot, and leaving notifies every waiter.


class Budget:
    """Token and cost ceilings for one run (None = unlimited)."""

    def __init__(
        self,
        max_tokens: int | None,
        max_cost: float | None,
        spent_tokens: int = 0,
        spent_cost: float = 0.0,
    ) -> None:
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self.spent_tokens = spent_tokens
        self.spent_cost = spent_cost
        self.reserved_tokens = 0
        self.reserved_cost = 0.0
        self.exhausted = False

    @property
    def limited(self) -> bool:
        return self.max_tokens is not None or self.max_cost is not None

    def admit(self, tokens: int, cost: float | None) -> bool:
        """Reserve a request's worst case; False (and `exhausted`) when it does not fit."""
        if self.exhausted:
            return False
        if self.max_tokens is not None and (
            self.spent_tokens + self.reserved_tokens + tokens > self.max_tokens
        ):
            self.exhausted = True
            return False
        if self.max_cost is not None and (
            self.spent_cost + self.reserved_cost + (cost or 0.0) > self.max_cost + 1e-12
        ):
            self.exhausted = True
            return False
        self.reserved_tokens += tokens
        self.reserved_cost += cost or 0.0
        return True

    def settle(self, reserved_tokens: int, reserved_cost: float | None, row: dict) -> None:
        """Replace a reservation by what the call really used."""
        self.reserved_tokens -= reserved_tokens
        self.reserved_cost -= reserved_cost or 0.0
        self.spent_tokens += (row.get("prompt_tokens") or 0) + (row.get("completion_tokens") or 0)
        self.spent_cost += row.get("cost") or 0.0
