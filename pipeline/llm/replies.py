"""Request bodies and reply handling shared by live calls and Batch-API results.

A chat completion becomes one `llm_calls` status (see `records.CALL_STATUSES`):

- no choices, or an empty message → `empty_reply`;
- `message.refusal` set, or `finish_reason=content_filter` → `refused` (the model declined);
- text that is not JSON, or JSON that fails the template's schema → `truncated` when the
  reply stopped at `max_tokens` (`finish_reason=length`), else `invalid_output`;
- otherwise `ok` with the validated object in `parsed`. A reply cut at `max_tokens` that
  still parses and validates is `ok`: nothing was lost that the schema needs.

Refusal-class transport failures (the endpoint as a whole cannot serve the run) are named
by `refusal_cause()`: connection refused, DNS failure, HTTP 401, 403 and 404. Their cause
strings are meant for a person ("connection refused", "HTTP 401 unauthorized",
"model 'x' not found (HTTP 404)").
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
import socket
import time
from typing import Any

from pipeline.llm.config import LLMConfig
from pipeline.llm.prompts import PromptTemplate
from pipeline.llm.schema import ReplyValidationError, ReplyValidator

# Statuses a reply (as opposed to the transport) can end in, short of `ok`.
REPAIRABLE_STATUSES = ("invalid_output", "truncated")


def completion_into(row: dict[str, Any], validator: ReplyValidator, completion: Any) -> None:
    """Fill a call row from a chat completion (an openai object): status, output, usage.

    Token counts are added to what the row already holds, so a retried or repaired call
    records the tokens of all its attempts.
    """
    usage = getattr(completion, "usage", None)
    if usage is not None:
        row["prompt_tokens"] = (row.get("prompt_tokens") or 0) + (usage.prompt_tokens or 0)
        row["completion_tokens"] = (row.get("completion_tokens") or 0) + (
            usage.completion_tokens or 0
        )
    row["http_status"] = 200
    choices = getattr(completion, "choices", None) or []
    if not choices:
        row.update(status="empty_reply", error="the reply has no choices", raw_output=None)
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
    if not content or not content.strip():
        row.update(status="empty_reply", error="empty reply")
        return
    cut = choice.finish_reason == "length"
    try:
        reply = parse_json_reply(content)
    except ValueError as exc:
        if cut:
            row.update(status="truncated", error=f"reply cut at max_tokens, not JSON: {exc}")
        else:
            row.update(status="invalid_output", error=f"reply is not JSON: {exc}")
        return
    validate_into(row, validator, reply, content)
    if cut and row["status"] != "ok":
        row.update(status="truncated", error=f"reply cut at max_tokens; {row['error']}")


def validate_into(row: dict[str, Any], validator: ReplyValidator, reply: Any, raw: str) -> None:
    """Mark a call row ok (with the parsed reply) or invalid_output (with the reasons)."""
    row["raw_output"] = raw
    try:
        parsed = validator.validate(reply)
    except ReplyValidationError as exc:
        row.update(status="invalid_output", error=f"reply does not match the schema: {exc}")
        return
    row.update(status="ok", parsed=json.dumps(parsed, ensure_ascii=False), error=None)


def repair_messages(messages: list[dict[str, str]], reply: str, error: str) -> list[dict[str, str]]:
    """The conversation for one repair attempt: the bad reply and what is wrong with it."""
    return [
        *messages,
        {"role": "assistant", "content": reply},
        {
            "role": "user",
            "content": "Your reply is not valid: "
            + error
            + "\nReply again with only the corrected JSON object.",
        },
    ]


def schema_is_strict_compatible(schema: Any) -> bool:
    """OpenAI strict mode needs every object closed and every property required."""
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object":
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required", [])) != set(props):
            return False
        return all(schema_is_strict_compatible(s) for s in props.values())
    if schema.get("type") == "array":
        return schema_is_strict_compatible(schema.get("items"))
    return True


def request_body(config: LLMConfig, item: Any, mode: str) -> dict[str, Any]:
    """The chat-completions body of one prepared request (`engine._Prepared`), the same for
    live calls and Batch-API lines."""
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
                "strict": schema_is_strict_compatible(template.schema),
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


def mentions_response_format(exc: Any) -> bool:
    text = error_text(exc).lower()
    return "response_format" in text or "json_schema" in text


def error_text(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:2000]
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message)[:2000]


_HTTP_REFUSALS = {401: "HTTP 401 unauthorized", 403: "HTTP 403 forbidden"}


def http_refusal_cause(code: int, model: str, message: str) -> str | None:
    """The human cause of a refusal-class HTTP status, None for any other status."""
    if code in _HTTP_REFUSALS:
        return _HTTP_REFUSALS[code]
    if code == 404:
        if "model" in message.lower():
            return f"model '{model}' not found (HTTP 404)"
        return "HTTP 404 not found (check the base URL, e.g. a missing /v1)"
    return None


def connection_cause(exc: BaseException) -> str | None:
    """'connection refused' / 'DNS lookup failed' when a connection error is one of those
    (found along the exception chain), None for other connection failures (resets, ...)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "DNS lookup failed"
        text = str(current).lower()
        if "connection refused" in text or "connect call failed" in text:
            return "connection refused"
        if "name or service not known" in text or "nodename nor servname" in text:
            return "DNS lookup failed"
        if "temporary failure in name resolution" in text:
            return "DNS lookup failed"
        current = current.__cause__ or current.__context__
    return None


def retry_after_s(headers: Any) -> float | None:
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
