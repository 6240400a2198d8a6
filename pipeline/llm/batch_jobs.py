"""Batch mode of `GenerationEngine.run`: the OpenAI Batch API, end to end.

For the calls a run still needs (not `ok` in `llm_calls`):

1. Resume first: batches recorded in `llm_batches` for this endpoint and model whose
   results are not imported yet, and that hold some of these calls, are polled again —
   their calls are never submitted twice. A batch recorded as `uploaded` without a batch
   id (killed between upload and create) is looked up on the server by its input file
   before a new batch is created for it.
2. The other calls are split into batches of at most `batch_max_requests` lines and
   `batch_max_bytes` bytes (the API's limits are 50,000 requests and 200 MB per file),
   each written to `<warehouse>/batches/run=<run>/<batch_key>.jsonl`, recorded in
   `llm_batch_requests`, uploaded (files endpoint, purpose=batch) and created; every step
   is recorded in `llm_batches` before the next one starts.
3. Polling with backoff (`batch_poll_s`, ×1.5 per round, at most `batch_poll_max_s`);
   each state change is recorded. A finished batch's output and error files are imported
   into `llm_calls` exactly like `forge llm import-batch` (origin `batch-import`, checked
   against the schema recorded with the request), so the task finishes its items from
   them exactly as from live calls (same call keys, same item ids).
4. Requests of a `failed` or `expired` batch that did not run are submitted again, up to
   `batch_resubmits` times. A `cancelled` batch is not: `LLMBatchIncomplete` names what
   is missing, and the next run submits it again.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from pipeline.errors import ForgeError
from pipeline.llm.batch import batch_line, request_record, row_from_result
from pipeline.llm.schema import ReplyValidator
from pipeline.storage.warehouse import utc_now

if TYPE_CHECKING:
    from pipeline.llm.engine import GenerationEngine, _Prepared

logger = logging.getLogger("pipeline.llm")

BATCHES_TABLE = "llm_batches"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
RESUBMITTABLE = frozenset({"failed", "expired"})
NOT_RUN_CODES = frozenset({"batch_expired", "batch_cancelled"})


class LLMBatchIncomplete(ForgeError):
    """Some requests got no result from the Batch API (cancelled, or failed/expired more
    often than `batch_resubmits`); what finished is recorded, a rerun submits the rest."""


def latest_batches(warehouse: Any, endpoint: str | None = None) -> list[dict[str, Any]]:
    """The latest state row of every recorded batch (optionally of one endpoint)."""
    if not warehouse.partitions(BATCHES_TABLE):
        return []
    where, params = ("WHERE endpoint = ?", [endpoint]) if endpoint else ("", [])
    return warehouse.rows(
        f"SELECT * FROM {BATCHES_TABLE} {where} QUALIFY row_number() OVER "
        "(PARTITION BY batch_key ORDER BY recorded_at DESC) = 1 ORDER BY recorded_at",
        params,
    )


def openai_client(config: Any) -> Any:
    import openai

    return openai.OpenAI(
        api_key=config.api_key_from_env(),
        base_url=config.base_url,
        timeout=config.timeout_s,
        max_retries=config.max_retries,
    )


class BatchJobRunner:
    """Runs one engine run's pending calls through the Batch API (module docstring)."""

    def __init__(self, engine: GenerationEngine) -> None:
        self.engine = engine
        self.config = engine.config
        self.warehouse = engine.warehouse
        self.client = openai_client(self.config)
        self._seq = 0
        self.active: dict[str, dict[str, Any]] = {}  # batch_key -> latest state row
        self.missing: set[str] = set()  # call keys left without a result
        self.cancelled: list[str] = []

    def run(self, pending: list[_Prepared], outcomes: dict[str, dict[str, Any]]) -> None:
        by_key = {p.key: p for p in pending}
        self.outcomes, self.by_key = outcomes, by_key
        covered = self._resume(set(by_key))
        to_submit = []
        for item in pending:
            if item.key in covered:
                continue
            budget = self.engine.budget
            if budget is not None and not budget.admit(*self.engine.worst_case(item)):
                break  # LLMBudgetReached is raised by the engine for the rest
            to_submit.append(item)
        self._submit(to_submit, submission=1)
        self._poll()
        self.engine.recorder.flush()
        if self.missing or self.cancelled:
            what = f"batches {', '.join(self.cancelled)} were cancelled" if self.cancelled else ""
            raise LLMBatchIncomplete(
                f"{len(self.missing)} requests got no result from the Batch API "
                f"({what or 'failed or expired too often'}); finished results are recorded, "
                f"rerun to submit the rest"
            )

    # ---- submitting --------------------------------------------------------------------

    def _chunks(self, items: list[_Prepared]) -> list[list[tuple[_Prepared, bytes]]]:
        chunks: list[list[tuple[_Prepared, bytes]]] = []
        size = 0
        for item in items:
            line = (json.dumps(batch_line(self.config, item), ensure_ascii=False) + "\n").encode()
            if len(line) > self.config.batch_max_bytes:
                raise ForgeError(
                    f"one Batch-API request for {item.request.item_key} is {len(line)} bytes, "
                    f"over batch_max_bytes {self.config.batch_max_bytes}"
                )
            full = chunks and (
                len(chunks[-1]) >= self.config.batch_max_requests
                or size + len(line) > self.config.batch_max_bytes
            )
            if not chunks or full:
                chunks.append([])
                size = 0
            chunks[-1].append((item, line))
            size += len(line)
        return chunks

    def _submit(self, items: list[_Prepared], submission: int) -> None:
        folder = self.warehouse.root / "batches" / self.engine.recorder.run_part
        folder.mkdir(parents=True, exist_ok=True)
        for chunk in self._chunks(items):
            batch_key = f"{int(time.time())}-{secrets.token_hex(4)}"
            path = folder / f"{batch_key}.jsonl"
            tmp = path.with_name(f".{path.name}.partial")
            tmp.write_bytes(b"".join(line for _, line in chunk))
            tmp.replace(path)
            now = utc_now()
            records = [
                request_record(self.config, item, str(path), self.engine.run_id, now)
                for item, _ in chunk
            ]
            self.warehouse.write_partition(
                "llm_batch_requests", f"{self.engine.recorder.run_part}/batch={batch_key}", records
            )
            with open(path, "rb") as handle:
                uploaded = self.client.files.create(file=(path.name, handle), purpose="batch")
            state = {
                "batch_key": batch_key,
                "batch_id": None,
                "endpoint": self.engine._endpoint,
                "model": self.config.model,
                "input_path": str(path),
                "input_file_id": uploaded.id,
                "output_file_id": None,
                "error_file_id": None,
                "state": "uploaded",
                "requests": len(chunk),
                "submission": submission,
                "imported": False,
            }
            self._record(state)
            self._create(state)

    def _create(self, state: dict[str, Any]) -> None:
        batch = self.client.batches.create(
            input_file_id=state["input_file_id"],
            endpoint="/v1/chat/completions",
            completion_window=self.config.batch_completion_window,
            metadata={"forge_batch_key": state["batch_key"]},
        )
        self._update(state, batch)

    # ---- resuming ----------------------------------------------------------------------

    def _resume(self, wanted: set[str]) -> set[str]:
        """Adopt recorded, unimported batches holding wanted calls; their call keys."""
        covered: set[str] = set()
        for state in latest_batches(self.warehouse, self.engine._endpoint):
            if state["imported"] or state["model"] != self.config.model:
                continue
            keys = set(self._request_keys(state["input_path"]))
            if not keys & wanted:
                continue
            covered |= keys
            state = {k: v for k, v in state.items() if k not in ("run_id", "recorded_at")}
            logger.info("resuming batch %s (%s)", state["batch_id"], state["state"])
            if state["batch_id"] is None:
                found = [
                    b
                    for b in self.client.batches.list()
                    if b.input_file_id == state["input_file_id"]
                ]
                if found:
                    self._update(state, found[0])
                else:
                    self._create(state)
            else:
                self.active[state["batch_key"]] = state
        return covered

    def _request_keys(self, input_path: str) -> list[str]:
        rows = self.warehouse.rows(
            "SELECT DISTINCT call_key FROM llm_batch_requests WHERE batch_file = ?", [input_path]
        )
        return [r["call_key"] for r in rows]

    # ---- polling and importing ---------------------------------------------------------

    def _poll(self) -> None:
        delay = self.config.batch_poll_s
        while self.active:
            for state in list(self.active.values()):
                if state["state"] not in TERMINAL:
                    self._update(state, self.client.batches.retrieve(state["batch_id"]))
                if state["state"] in TERMINAL:
                    self._finish(state)
            if self.active:
                time.sleep(delay)
                delay = min(delay * 1.5, self.config.batch_poll_max_s)

    def _finish(self, state: dict[str, Any]) -> None:
        del self.active[state["batch_key"]]
        results: dict[str, dict[str, Any]] = {}
        for file_id in (state["output_file_id"], state["error_file_id"]):
            if file_id:
                for text in self.client.files.content(file_id).text.splitlines():
                    if text.strip():
                        line = json.loads(text)
                        results[line.get("custom_id")] = line
        requests = {
            r["call_key"]: r
            for r in self.warehouse.rows(
                "SELECT * FROM llm_batch_requests WHERE batch_file = ?", [state["input_path"]]
            )
        }
        validators: dict[str, ReplyValidator] = {}
        not_run = []
        for key, request in requests.items():
            line = results.get(key)
            error = (line or {}).get("error") or {}
            if line is None or (isinstance(error, dict) and error.get("code") in NOT_RUN_CODES):
                not_run.append(key)
                continue
            schema = request["reply_schema"]
            validator = validators.setdefault(schema, ReplyValidator(json.loads(schema)))
            row = row_from_result(request, line, validator, self.engine.run_id)
            self.engine.record(row, self.outcomes if key in self.by_key else None)
        self.engine.recorder.flush()
        self._record({**state, "imported": True})
        again = [self.by_key[k] for k in not_run if k in self.by_key]
        if state["state"] in RESUBMITTABLE and state["submission"] <= self.config.batch_resubmits:
            self._submit(again, submission=state["submission"] + 1)
        else:
            self.missing |= {item.key for item in again}
            if state["state"] == "cancelled":
                self.cancelled.append(state["batch_id"])

    # ---- recording ---------------------------------------------------------------------

    def _update(self, state: dict[str, Any], batch: Any) -> None:
        changed = (batch.id, batch.status) != (state["batch_id"], state["state"])
        state.update(
            batch_id=batch.id,
            state=batch.status,
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
        )
        if changed:
            self._record(state)
        self.active[state["batch_key"]] = state

    def _record(self, state: dict[str, Any]) -> None:
        self._seq += 1
        row = {**state, "run_id": self.engine.run_id, "recorded_at": utc_now()}
        partition = f"batch={state['batch_key']}/at={self._seq:06d}-{secrets.token_hex(3)}"
        self.warehouse.write_partition(BATCHES_TABLE, partition, [row])


def cancel_batches(warehouse: Any, config: Any, batch_id: str | None = None) -> list[str]:
    """Ask the server to cancel the recorded unfinished batches of this endpoint (or one);
    the batch ids asked. A polling run then imports the partial results and stops."""
    client = openai_client(config)
    asked = []
    for state in latest_batches(warehouse, config.endpoint):
        if state["state"] in TERMINAL or state["batch_id"] is None:
            continue
        if batch_id is not None and state["batch_id"] != batch_id:
            continue
        batch = client.batches.cancel(state["batch_id"])
        row = {**state, "state": batch.status, "recorded_at": utc_now()}
        warehouse.write_partition(
            BATCHES_TABLE,
            f"batch={state['batch_key']}/cancel-{secrets.token_hex(4)}",
            [row],
        )
        asked.append(state["batch_id"])
    if batch_id is not None and not asked:
        raise ForgeError(f"no unfinished batch {batch_id!r} is recorded for {config.endpoint}")
    return asked
