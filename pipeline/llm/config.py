"""LLM settings: which backend, which endpoint and model, how hard to push it.

The API key is deliberately NOT a field: it is read from the environment only when the
HTTP client is created (`api_key_from_env()`), so it never appears in a config dump, a
repr, a Prefect parameter or the warehouse. `redact()` removes it (and anything that
looks like a bearer token) from error text before that text is logged or recorded.

Credentials in the endpoint URL (`http://user:password@host/v1`, sent by httpx as
`Authorization: Basic`) stay in memory only: `base_url` is serialised, dumped and shown
without them, so Prefect parameters, cache keys and the warehouse never hold them. A URL
without credentials takes them from `$OPENAI_BASE_URL` when that names the same endpoint,
which is how a deployment's worker gets them (see `pipeline.redact`).
"""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from pipeline.errors import ForgeError
from pipeline.llm.prompts import SanitizeLimits
from pipeline.redact import (
    REDACTED,
    redact_text,
    register_secret_env,
    remember_url_credentials,
    strip_userinfo,
)

BASE_URL_ENV = "OPENAI_BASE_URL"
API_KEY_ENV = "OPENAI_API_KEY"
MODEL_ENV = "FORGE_LLM_MODEL"
OFFLINE_MODEL = "offline-rules"
# Local servers (vLLM, Ollama, llama.cpp) accept any key; the openai client needs one.
PLACEHOLDER_API_KEY = "not-needed"

Backend = Literal["offline", "openai"]
Mode = Literal["live", "batch"]
OutputMode = Literal["auto", "json_schema", "json_object"]


class LLMConfig(BaseModel):
    """Everything the engine needs except the API key (read at client creation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend = "offline"
    base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1"
    )
    model: str = OFFLINE_MODEL
    mode: Mode = Field(
        "live", description="live: chat-completion calls; batch: the OpenAI Batch API"
    )
    concurrency: int = Field(32, ge=1, le=4096, description="most calls in flight")
    adaptive_concurrency: bool = Field(
        True, description="AIMD below `concurrency`, driven by 429/503 and latency growth"
    )
    timeout_s: float = Field(
        120.0,
        gt=0,
        description="deadline of one HTTP attempt, from connecting to the last byte of the reply",
    )
    max_retries: int = Field(5, ge=0, description="retries after the first attempt")
    backoff_base_s: float = Field(1.0, ge=0, description="first retry waits about this long")
    backoff_max_s: float = Field(60.0, ge=0)
    retry_after_max_s: float = Field(300.0, ge=0, description="cap on a server's Retry-After")
    max_failures: int = Field(
        50, ge=1, description="failed calls after which a run stops sending and raises"
    )
    refusal_limit: int = Field(
        5,
        ge=1,
        description="refusal-class failures in a row (connection refused, DNS, HTTP 401/403/"
        "404) after which the run stops sending and raises LLMEndpointError",
    )
    max_failed_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="share of calls failing in transport (HTTP error, timeout, unreachable) "
        "above which the run stops and raises LLMEndpointError",
    )
    failed_share_min_calls: int = Field(
        20, ge=1, description="calls that must have finished before the share is judged mid-run"
    )
    max_prompt_chars: int = Field(
        32_000, ge=1, description="rendered prompts longer than this are not sent"
    )
    repair_attempts: int = Field(
        1, ge=0, le=3, description="re-asks with the validation error for a schema-invalid reply"
    )
    max_tokens_ceiling: int = Field(
        8192,
        ge=1,
        description="a reply cut at max_tokens is retried once with twice the room, up to this",
    )
    max_cost: float | None = Field(
        None, ge=0, description="stop sending before a run's cost would exceed this"
    )
    max_total_tokens: int | None = Field(
        None, ge=1, description="stop sending before a run's tokens would exceed this"
    )
    prices_file: str | None = Field(
        None, description="price table (JSON/YAML); default: $FORGE_LLM_PRICES"
    )
    batch_max_requests: int = Field(50_000, ge=1, description="requests per batch (API limit)")
    batch_max_bytes: int = Field(
        200 * 1024 * 1024, ge=1024, description="bytes per batch input file (API limit)"
    )
    batch_poll_s: float = Field(5.0, gt=0, description="first wait between batch polls")
    batch_poll_max_s: float = Field(300.0, gt=0, description="longest wait between polls")
    batch_resubmits: int = Field(
        2, ge=0, description="times requests of a failed/expired batch are submitted again"
    )
    batch_completion_window: str = "24h"
    seed: int = Field(0, description="seed for requests that do not set their own")
    send_seed: bool = Field(True, description="pass `seed` to the endpoint")
    output_mode: OutputMode = Field(
        "auto",
        description="auto: json_schema, falling back to json_object if the server rejects it",
    )
    flush_every: int = Field(200, ge=1, description="write finished calls every N results")
    flush_interval_s: float = Field(3.0, gt=0, description="... or at least this often")
    sanitize: SanitizeLimits = SanitizeLimits()
    api_key_env: str = Field(API_KEY_ENV, description="name of the variable holding the key")

    @field_validator("base_url")
    @classmethod
    def _credentials_stay_in_memory(cls, url: str | None) -> str | None:
        if url is None:
            return None
        url = with_env_credentials(url)
        remember_url_credentials(url)
        return url

    @field_validator("api_key_env")
    @classmethod
    def _key_variable_is_secret(cls, name: str) -> str:
        register_secret_env(name)
        return name

    @field_serializer("base_url")
    def _serialise_without_credentials(self, url: str | None) -> str | None:
        return strip_userinfo(url) if url else url

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, strip_userinfo(value) if name == "base_url" and value else value

    @model_validator(mode="after")
    def _offline_model_is_fixed(self) -> LLMConfig:
        if self.backend == "offline" and self.model != OFFLINE_MODEL:
            raise ValueError(
                f"the offline backend's model is always '{OFFLINE_MODEL}', not {self.model!r}"
            )
        if self.backend == "openai" and self.model == OFFLINE_MODEL:
            raise ValueError(
                f"backend 'openai' needs a model name: pass --model or set {MODEL_ENV}"
            )
        if self.backend == "offline" and self.mode == "batch":
            raise ValueError("batch mode needs an OpenAI-compatible backend, not offline rules")
        return self

    @classmethod
    def from_env(
        cls,
        backend: Backend | None = None,
        model: str | None = None,
        **overrides: Any,
    ) -> LLMConfig:
        """Backend 'openai' if OPENAI_BASE_URL or OPENAI_API_KEY is set, else 'offline'.

        `model` falls back to $FORGE_LLM_MODEL; the endpoint to $OPENAI_BASE_URL.
        """
        base_url = overrides.pop("base_url", None) or os.environ.get(BASE_URL_ENV) or None
        api_key_env = overrides.get("api_key_env", API_KEY_ENV)
        if backend is None:
            backend = "openai" if (base_url or os.environ.get(api_key_env)) else "offline"
        if backend == "offline":
            return _validated(cls, backend="offline", model=OFFLINE_MODEL, **overrides)
        model = model or os.environ.get(MODEL_ENV)
        if not model:
            raise ForgeError(
                f"an OpenAI-compatible endpoint is configured ({base_url or 'api.openai.com'}) "
                f"but no model: pass --model or set {MODEL_ENV}"
            )
        return _validated(cls, backend="openai", base_url=base_url, model=model, **overrides)

    def api_key_from_env(self) -> str:
        """The key for the HTTP client. Call only when creating the client; never store it."""
        key = os.environ.get(self.api_key_env)
        if key:
            return key
        if self.base_url is None:
            raise ForgeError(
                f"backend 'openai' without {BASE_URL_ENV} talks to api.openai.com and needs "
                f"${self.api_key_env}"
            )
        return PLACEHOLDER_API_KEY

    @property
    def endpoint(self) -> str:
        """The endpoint as recorded: scheme/host/path, without credentials or query."""
        if self.backend == "offline":
            return "offline"
        return public_url(self.base_url or "https://api.openai.com/v1")

    def redact(self, text: str) -> str:
        return redact(text, os.environ.get(self.api_key_env))


def with_env_credentials(url: str) -> str:
    """`url`, with the credentials of $OPENAI_BASE_URL when `url` has none and names the
    same endpoint (so parameters can carry the bare URL and the secret stays in the env)."""
    env_url = os.environ.get(BASE_URL_ENV)
    if not env_url or "@" in urlsplit(url).netloc or "@" not in urlsplit(env_url).netloc:
        return url
    return env_url if strip_userinfo(env_url).rstrip("/") == url.rstrip("/") else url


def _validated(cls: type[LLMConfig], **values: Any) -> LLMConfig:
    try:
        return cls(**values)
    except ValueError as exc:
        raise ForgeError(f"invalid LLM settings: {exc}") from None


def public_url(url: str) -> str:
    """`url` without user:password@ and without a query string (keys hide there too)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact(text: str, secret: str | None = None) -> str:
    """Remove `secret` (the API key), the process's known secrets and credential-shaped
    tokens (`pipeline.redact`) from text meant for logs/tables."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, REDACTED)
    return redact_text(text)
