"""OpenAI Batch API path: export pending requests as JSONL, import the results into the cache.

Export writes one line per request that has no `ok` row in `llm_calls` (deduplicated by
call key)::

    {"custom_id": "<call_key>", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": ..., "messages": [...], "temperature": ..., "response_format": ...}}

— the format of the OpenAI Batch API and of `vllm run-batch`. The exported requests are
recorded in `llm_batch_requests` (prompt, version, schema), so import can validate each
result against the schema its request was made with. Import appends one `llm_calls` row
per result line (origin `batch-import`); a normal run with the same prompts, model and
seed then finds them by key and sends nothing.
"""

from __future__ import annotations

import json
import os
import secrets
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import ForgeError, InputFormatError
from pipeline.llm.config import LLMConfig
from pipeline.llm.engine import (
    CallRecorder,
    GenerationEngine,
    completion_into,
    load_cached_ok,
    request_body,
)
from pipeline.llm.prompts import PromptLibrary
from pipeline.llm.records import CALL_STATUSES, LLMRequest
from pipeline.llm.schema import ReplyValidator
from pipeline.sources.records import RAW_LIMIT, Rejection
from pipeline.storage import Warehouse
from pipeline.storage.warehouse import utc_now

BATCH_URL = "/v1/chat/completions"
IMPORT_STAGE = "llm-batch-import"


class BatchExportSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: int
    cached: int = Field(description="already answered (ok) in llm_calls: not exported")
    exported: int = Field(description="distinct calls written to the file")
    path: str


class BatchImportSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: int
    recorded: int
    by_status: dict[str, int]
    rejected: int = Field(description="lines written to `rejects` (unreadable, unknown id)")
    path: str


def read_requests_jsonl(path: Path) -> list[LLMRequest]:
    """LLMRequest JSONL (one `{"item_key", "prompt", "variables", "seed"}` per line)."""
    requests = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                requests.append(LLMRequest.model_validate_json(line))
            except ValueError as exc:
                raise InputFormatError(path, f"not an LLM request: {exc}", row=line_no) from None
    return requests


def export_batch(
    warehouse: Warehouse,
    prompts: PromptLibrary,
    config: LLMConfig,
    requests: Sequence[LLMRequest],
    out_path: Path,
    run_id: str,
) -> BatchExportSummary:
    """Write the requests not yet answered to `out_path` (Batch-API JSONL) and record them."""
    if config.backend != "openai":
        raise ForgeError(
            "export-batch needs a model to send to: pass --model (or set FORGE_LLM_MODEL) "
            "for an OpenAI-compatible backend"
        )
    engine = GenerationEngine(warehouse, prompts, config, run_id)
    unique: dict[str, Any] = {}
    for request in requests:
        prepared = engine.prepare(request)
        unique.setdefault(prepared.key, prepared)
    cached = load_cached_ok(warehouse, list(unique))
    pending = [p for key, p in unique.items() if key not in cached]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{secrets.token_hex(4)}.partial")
    now = utc_now()
    records = []
    with open(tmp, "w", encoding="utf-8") as handle:
        for item in pending:
            handle.write(json.dumps(batch_line(config, item), ensure_ascii=False) + "\n")
            records.append(request_record(config, item, str(out_path.resolve()), run_id, now))
    if records:
        warehouse.write_partition(
            "llm_batch_requests",
            f"{engine.recorder.run_part}/export={secrets.token_hex(4)}",
            records,
        )
    os.replace(tmp, out_path)
    return BatchExportSummary(
        requests=len(requests), cached=len(cached), exported=len(pending), path=str(out_path)
    )


def request_record(
    config: LLMConfig, item: Any, batch_file: str, run_id: str, now: Any
) -> dict[str, Any]:
    """The `llm_batch_requests` row of one prepared request written to `batch_file`."""
    return {
        "call_key": item.key,
        "item_key": item.request.item_key,
        "prompt_name": item.template.name,
        "prompt_version": item.template.version,
        "model": config.model,
        "endpoint": config.endpoint,
        "params": json.dumps(item.params, sort_keys=True),
        "seed": item.seed,
        "messages": json.dumps(item.messages, ensure_ascii=False),
        "reply_schema": json.dumps(item.template.schema, sort_keys=True),
        "batch_file": batch_file,
        "run_id": run_id,
        "created_at": now,
    }


def batch_line(config: LLMConfig, item: Any) -> dict[str, Any]:
    """One Batch-API input line; custom_id is the call key."""
    mode = "json_object" if config.output_mode == "json_object" else "json_schema"
    return {
        "custom_id": item.key,
        "method": "POST",
        "url": BATCH_URL,
        "body": request_body(config, item, mode),
    }


def import_batch(warehouse: Warehouse, results_path: Path, run_id: str) -> BatchImportSummary:
    """Record a Batch-API results JSONL in `llm_calls` (validated against the export's schema).

    Lines that are not JSON, or whose custom_id no export recorded, go to `rejects`
    (stage `llm-batch-import`) with the reason; the other lines are still recorded.
    """
    results_path = Path(results_path)
    lines, rejections = _read_result_lines(results_path)
    exported = {
        row["call_key"]: row
        for row in warehouse.rows(
            "SELECT * FROM llm_batch_requests WHERE call_key IN (SELECT unnest(?::VARCHAR[])) "
            "QUALIFY row_number() OVER (PARTITION BY call_key ORDER BY created_at DESC) = 1",
            [[line["custom_id"] for _, line in lines]],
        )
    }
    recorder = CallRecorder(warehouse, run_id)
    validators: dict[str, ReplyValidator] = {}
    statuses: Counter[str] = Counter()
    for line_no, line in lines:
        request = exported.get(line["custom_id"])
        if request is None:
            rejections.append(
                Rejection(
                    stage=IMPORT_STAGE,
                    source_file=str(results_path),
                    source_row=line_no,
                    record_id=line["custom_id"],
                    field="custom_id",
                    reason="unknown_custom_id",
                    detail="no `forge llm export-batch` recorded this custom_id in this warehouse",
                    raw=json.dumps(line)[:RAW_LIMIT],
                )
            )
            continue
        schema_text = request["reply_schema"]
        if schema_text not in validators:
            validators[schema_text] = ReplyValidator(json.loads(schema_text))
        row = row_from_result(request, line, validators[schema_text], run_id)
        statuses[row["status"]] += 1
        recorder.add(row)
    recorder.flush()
    if rejections:
        now = utc_now()
        warehouse.write_partition(
            "rejects",
            f"stage={IMPORT_STAGE}/{recorder.run_part}-{secrets.token_hex(3)}",
            [r.to_row(run_id, now) for r in rejections],
        )
    return BatchImportSummary(
        lines=len(lines) + sum(r.reason == "invalid_line" for r in rejections),
        recorded=recorder.rows_written,
        by_status={s: statuses[s] for s in CALL_STATUSES if statuses[s]},
        rejected=len(rejections),
        path=str(results_path),
    )


def _read_result_lines(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[Rejection]]:
    if not path.is_file():
        raise InputFormatError(path, "batch results file not found")
    lines: list[tuple[int, dict[str, Any]]] = []
    rejections: list[Rejection] = []
    with open(path, encoding="utf-8") as handle:
        for line_no, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
                problem = None
            except json.JSONDecodeError as exc:
                line, problem = None, f"not JSON: {exc}"
            if problem is None and (
                not isinstance(line, dict) or not isinstance(line.get("custom_id"), str)
            ):
                problem = "expected an object with a string custom_id"
            if problem is not None:
                rejections.append(
                    Rejection(
                        stage=IMPORT_STAGE,
                        source_file=str(path),
                        source_row=line_no,
                        reason="invalid_line",
                        detail=problem,
                        raw=text[:RAW_LIMIT],
                    )
                )
                continue
            lines.append((line_no, line))
    return lines, rejections


def row_from_result(
    request: dict[str, Any], line: dict[str, Any], validator: ReplyValidator, run_id: str
) -> dict[str, Any]:
    from openai.types.chat import ChatCompletion

    row: dict[str, Any] = {
        "call_key": request["call_key"],
        "item_key": request["item_key"],
        "prompt_name": request["prompt_name"],
        "prompt_version": request["prompt_version"],
        "model": request["model"],
        "backend": "openai",
        "endpoint": request["endpoint"],
        "origin": "batch-import",
        "params": request["params"],
        "seed": request["seed"],
        "messages": request["messages"],
        "response_format": "batch",
        "status": "invalid_output",
        "error": None,
        "attempts": 1,
        "run_id": run_id,
        "created_at": utc_now(),
    }
    response = line.get("response") or {}
    error = line.get("error")
    status_code = response.get("status_code")
    body = response.get("body")
    if error or status_code != 200 or not isinstance(body, dict):
        message = (error or {}).get("message") if isinstance(error, dict) else error
        if not message and isinstance(body, dict):
            inner = body.get("error")
            message = inner.get("message") if isinstance(inner, dict) else inner
        row.update(
            status="http_error",
            http_status=status_code,
            error=f"batch result error (HTTP {status_code}): {message or 'no body'}",
        )
        return row
    try:
        completion = ChatCompletion.model_validate(body)
    except ValueError as exc:
        row.update(error=f"batch result body is not a chat completion: {exc}", http_status=200)
        return row
    completion_into(row, validator, completion)
    return row
