"""Requests, results, and the row models of the `llm_*` tables (kept in step with the DDL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CallStatus = Literal[
    "ok",
    "invalid_output",
    "truncated",
    "refused",
    "empty_reply",
    "http_error",
    "timeout",
    "unreachable",
    "prompt_too_large",
]
# ok: a validated reply. Reply problems: invalid_output (not JSON or fails the schema, after
# one repair attempt), truncated (cut at max_tokens, even after a retry with more room),
# refused (the model declined: `message.refusal` or content_filter), empty_reply (no
# choices or no text). Transport: http_error, timeout (the per-call deadline passed),
# unreachable (connection refused, DNS, other connection failures). prompt_too_large:
# the rendered prompt is over `max_prompt_chars`, so it was never sent.
CALL_STATUSES: tuple[str, ...] = CallStatus.__args__  # type: ignore[attr-defined]
TRANSPORT_FAILURES = frozenset({"http_error", "timeout", "unreachable"})


class LLMRequest(BaseModel):
    """One generation request: which template, with which variables, for which item."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_key: str = Field(description="the caller's key for the item (recorded, not hashed)")
    prompt: str = Field(description="template name, e.g. auditorybench/animal")
    variables: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = Field(None, description="default: LLMConfig.seed")


class LLMResult(BaseModel):
    """What came back for one request (from the endpoint, an offline rule, or the cache)."""

    model_config = ConfigDict(extra="forbid")

    item_key: str
    prompt_name: str
    prompt_version: str
    model: str
    backend: str
    status: CallStatus
    parsed: dict[str, Any] | None = None
    raw_output: str | None = None
    call_key: str
    error: str | None = None
    attempts: int = 0
    cached: bool = Field(False, description="answered from llm_calls without a new call")


class LLMCallRecord(BaseModel):
    """One row of `llm_calls` (warehouse/tables/llm_calls.sql)."""

    model_config = ConfigDict(extra="forbid")

    call_key: str
    item_key: str | None
    prompt_name: str
    prompt_version: str
    model: str
    backend: str
    endpoint: str | None
    origin: Literal["request", "batch-import", "offline-rule"]
    params: str | None
    seed: int | None
    messages: str | None
    response_format: str | None
    status: CallStatus
    error: str | None = None
    http_status: int | None = None
    finish_reason: str | None = None
    raw_output: str | None = None
    parsed: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    latency_s: float | None = None
    attempts: int | None = None
    run_id: str
    created_at: datetime


class LLMBatchRequestRecord(BaseModel):
    """One row of `llm_batch_requests` (warehouse/tables/llm_batch_requests.sql)."""

    model_config = ConfigDict(extra="forbid")

    call_key: str
    item_key: str | None
    prompt_name: str
    prompt_version: str
    model: str
    endpoint: str | None
    params: str | None
    seed: int | None
    messages: str | None
    reply_schema: str | None
    batch_file: str
    run_id: str
    created_at: datetime


class LLMBatchRecord(BaseModel):
    """One row of `llm_batches` (warehouse/tables/llm_batches.sql): a batch's state."""

    model_config = ConfigDict(extra="forbid")

    batch_key: str
    batch_id: str | None
    endpoint: str
    model: str
    input_path: str
    input_file_id: str | None
    output_file_id: str | None
    error_file_id: str | None
    state: str
    requests: int
    submission: int
    imported: bool
    run_id: str
    recorded_at: datetime
