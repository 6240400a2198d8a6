"""LLM settings: which backend, which endpoint and model, how hard to push it.

The API key is deliberately NOT a field: it is read from the environment only when the
HTTP client is created (`api_key_from_env()`), so it never appears in a config dump, a
repr, a Prefect parameter or the warehouse. `redact()` removes it (and anything that
looks like a bearer token) from error text before that text is logged or recorded.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.errors import ForgeError
from pipeline.llm.prompts import SanitizeLimits

BASE_URL_ENV = "OPENAI_BASE_URL"
API_KEY_ENV = "OPENAI_API_KEY"
MODEL_ENV = "FORGE_LLM_MODEL"
OFFLINE_MODEL = "offline-rules"
# Local servers (vLLM, Ollama, llama.cpp) accept any key; the openai client needs one.
PLACEHOLDER_API_KEY = "not-needed"

Backend = Literal["offline", "openai"]
OutputMode = Literal["auto", "json_schema", "json_object"]


class LLMConfig(BaseModel):
    """Everything the engine needs except the API key (read at client creation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend = "offline"
    base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1"
    )
    model: str = OFFLINE_MODEL
    concurrency: int = Field(32, ge=1, le=4096)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(5, ge=0, description="retries after the first attempt")
    backoff_base_s: float = Field(1.0, ge=0, description="first retry waits about this long")
    backoff_max_s: float = Field(60.0, ge=0)
    retry_after_max_s: float = Field(300.0, ge=0, description="cap on a server's Retry-After")
    max_failures: int = Field(
        50, ge=1, description="failed calls after which a run stops sending and raises"
    )
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


_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)(api[_-]?key[\"'=:\s]+)[A-Za-z0-9._-]{8,}"),
]
REDACTED = "[redacted]"


def redact(text: str, secret: str | None = None) -> str:
    """Remove `secret` (the API key) and key-shaped tokens from text meant for logs/tables."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(
            lambda m: (m.group(1) if m.groups() else "") + REDACTED,
            text,
        )
    return text
