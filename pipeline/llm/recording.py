"""Recording finished calls in `llm_calls`, and reading the cache and a run's spending back."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any

from pipeline.storage import Warehouse
from pipeline.storage import schema as schemas
from pipeline.storage.warehouse import to_arrow


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


def run_spending(warehouse: Warehouse, run_id: str) -> tuple[int, float]:
    """Tokens and cost already recorded under `run_id` (a retried stage keeps its run id,
    so a budget covers the retries too)."""
    if not warehouse.partitions("llm_calls"):
        return 0, 0.0
    rows = warehouse.rows(
        "SELECT coalesce(sum(coalesce(prompt_tokens, 0) + coalesce(completion_tokens, 0)), 0)"
        " AS tokens, coalesce(sum(cost), 0) AS cost FROM llm_calls WHERE run_id = ?",
        [run_id],
    )
    return int(rows[0]["tokens"]), float(rows[0]["cost"])


def run_usage(warehouse: Warehouse, run_id: str) -> dict[str, Any]:
    """Calls, tokens and cost recorded under `run_id`, in total and per prompt version —
    a JSON-ready dict for `runs.counts` (same figures as the `llm_costs` view)."""
    if not warehouse.partitions("llm_calls"):
        return {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": None}
    rows = warehouse.rows(
        "SELECT prompt_name || '@' || prompt_version AS prompt, count(*) AS calls, "
        "coalesce(sum(prompt_tokens), 0) AS prompt_tokens, "
        "coalesce(sum(completion_tokens), 0) AS completion_tokens, sum(cost) AS cost "
        "FROM llm_calls WHERE run_id = ? GROUP BY 1 ORDER BY 1",
        [run_id],
    )
    costs = [r["cost"] for r in rows if r["cost"] is not None]
    return {
        "calls": sum(r["calls"] for r in rows),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "cost": sum(costs) if costs else None,
        "by_prompt": {r.pop("prompt"): r for r in rows},
    }
