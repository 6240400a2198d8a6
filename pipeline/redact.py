"""The secrets of this process, and removing them from anything stored, exported or logged.

What counts as a secret:

* the values of the environment variables that hold keys: `OPENAI_API_KEY`, the variable
  an `LLMConfig.api_key_env` names (registered by the config), and any variable whose
  name ends in `_API_KEY`, `_TOKEN`, `_SECRET` or `_PASSWORD`;
* credentials in endpoint URLs (`scheme://user:password@host`): those of
  `$OPENAI_BASE_URL` and of any URL handed to `remember_url_credentials`, as
  `user:password`, as the password alone, and as the base64 `Authorization: Basic` value
  httpx sends for them;
* text shaped like a credential wherever it appears: `Bearer <token>`, OpenAI-style
  `sk-...` keys, `api_key=...`, and `user:password@` inside any URL.

Values shorter than 8 characters, or that look like paths or flags, are not treated as
secrets: replacing them everywhere would corrupt ordinary data.

`redact_text` cleans one string; `redact_table` cleans every string (nested ones too) of
an Arrow table and is what the warehouse writer calls on each batch, so rows stored in
Parquet, and exports read from them, cannot carry a secret. `install_log_redaction`
cleans every log record of the process (importing this module installs it).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 8
SECRET_ENV_VARS = ("OPENAI_API_KEY",)
SECRET_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
URL_ENV_VARS = ("OPENAI_BASE_URL",)

# (pattern, replacement). Written in the syntax Python's `re` and RE2 (Arrow) share, so
# text and tables are cleaned by the same rules. Token lengths are floors that keep
# ordinary words ("a flag bearer marching") out.
_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{16,}", r"\1" + REDACTED),
    (r"\bsk-[A-Za-z0-9_-]{16,}", REDACTED),
    (r"(?i)(\bapi[_-]?key[\"'=:\s]+)[A-Za-z0-9._-]{8,}", r"\1" + REDACTED),
    (r"(?i)(\b[a-z][a-z0-9+.-]*://)[^\s/@:]+:[^\s/@]+@", r"\1" + REDACTED + "@"),
)
_COMPILED = tuple((re.compile(p), r) for p, r in _PATTERNS)

_registered_env: set[str] = set()
_registered_values: set[str] = set()
_lock = threading.Lock()


def register_secret_env(name: str) -> None:
    """Treat the value of variable `name` as a secret (read when redacting, not now)."""
    with _lock:
        _registered_env.add(name)


def remember_url_credentials(url: str | None) -> None:
    """Treat the credentials inside `url` (if any) as secrets for the rest of the process."""
    values = _url_secrets(url)
    if values:
        with _lock:
            _registered_values.update(values)


def strip_userinfo(url: str) -> str:
    """`url` without `user:password@`; everything else (path, query) unchanged."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=host).geturl()


def known_secrets() -> list[str]:
    """The exact secret values to remove, longest first (so no partial leftovers)."""
    found: set[str] = set()
    with _lock:
        names = set(SECRET_ENV_VARS) | _registered_env
        found |= _registered_values
    names |= {n for n in os.environ if n.upper().endswith(SECRET_ENV_SUFFIXES)}
    for name in names:
        value = os.environ.get(name)
        if value and _looks_secret(value):
            found.add(value)
    for name in URL_ENV_VARS:
        found |= _url_secrets(os.environ.get(name))
    return sorted(found, key=len, reverse=True)


def redact_text(text: str) -> str:
    """`text` with every known secret and credential-shaped token replaced."""
    for secret in known_secrets():
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _COMPILED:
        text = pattern.sub(replacement, text)
    return text


def redact_table(table: pa.Table) -> pa.Table:
    """Every string in `table` (lists and structs included) redacted; same schema.

    Columns without a match are returned as they are: detection is one vectorised regex
    pass per string column, so clean batches cost little.
    """
    secrets = known_secrets()
    detector = "|".join(
        f"(?:{p})" for p in [*(re.escape(s) for s in secrets), *(p for p, _ in _PATTERNS)]
    )
    columns = []
    changed = False
    for column in table.columns:
        if not _has_strings(column.type):
            columns.append(column)
            continue
        originals = column.chunks  # a new list of new wrappers on every access
        chunks = [_redact_array(chunk, secrets, detector) for chunk in originals]
        if all(a is b for a, b in zip(chunks, originals, strict=True)):
            columns.append(column)
            continue
        changed = True
        columns.append(pa.chunked_array(chunks, type=column.type))
    if not changed:
        return table
    return pa.Table.from_arrays(columns, schema=table.schema)


def _redact_array(array: pa.Array, secrets: list[str], detector: str) -> pa.Array:
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if not pc.any(pc.match_substring_regex(array, detector)).as_py():
            return array
        for secret in secrets:
            array = pc.replace_substring(array, secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            array = pc.replace_substring_regex(array, pattern, replacement)
        return array
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        child = array.values
        values = _redact_array(child, secrets, detector)
        if values is child:
            return array
        if array.offset:  # from_arrays cannot combine a null mask with sliced offsets
            array = array.take(pa.array(range(len(array)), type=pa.int64()))
            values = _redact_array(array.values, secrets, detector)
        return type(array).from_arrays(array.offsets, values, type=kind, mask=array.is_null())
    if pa.types.is_struct(kind):
        fields = [array.field(i) for i in range(kind.num_fields)]
        new_fields = [_redact_array(f, secrets, detector) for f in fields]
        if all(a is b for a, b in zip(new_fields, fields, strict=True)):
            return array
        return pa.StructArray.from_arrays(new_fields, fields=list(kind), mask=array.is_null())
    return array


def _has_strings(kind: pa.DataType) -> bool:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return True
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_strings(kind.value_type)
    if pa.types.is_struct(kind):
        return any(_has_strings(field.type) for field in kind)
    return False


def _looks_secret(value: str) -> bool:
    return (
        len(value) >= MIN_SECRET_CHARS
        and not any(ch.isspace() for ch in value)
        and not value.startswith(("/", ".", "~"))
        and value.lower() not in {"true", "false", "not-needed"}
    )


def _url_secrets(url: str | None) -> set[str]:
    if not url or "@" not in url:
        return set()
    parts = urlsplit(url)
    if parts.password is None:
        return set()
    user, password = unquote(parts.username or ""), unquote(parts.password)
    userinfo = f"{user}:{password}"
    values = {userinfo, base64.b64encode(userinfo.encode()).decode()}
    raw_userinfo = parts.netloc.rsplit("@", 1)[0]
    values.add(raw_userinfo)
    if _looks_secret(password):
        values.add(password)
    return {v for v in values if len(v) >= 4}


# ---- logs -------------------------------------------------------------------------------

_previous_factory = None


def _redacting_factory(*args: object, **kwargs: object) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)  # type: ignore[misc]
    redact_record(record)
    return record


def redact_record(record: logging.LogRecord) -> None:
    """Format the record's message now, redacted, and its traceback too."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: leave it to logging to report
        return
    record.msg, record.args = redact_text(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))


class RedactingFilter(logging.Filter):
    """For handlers configured elsewhere (e.g. a logging config file): redacts, never drops."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_log_redaction() -> None:
    """Redact every log record this process creates, whatever logger or handler.

    A record factory rather than a filter on the `pipeline`/`flows`/`prefect` loggers:
    logger filters do not see records propagated from child loggers, and handlers (Prefect
    adds its API handler, pytest its capture) come and go; every record passes through
    the factory. Idempotent.
    """
    global _previous_factory
    with _lock:
        current = logging.getLogRecordFactory()
        if current is _redacting_factory:
            return
        _previous_factory = current
        logging.setLogRecordFactory(_redacting_factory)


install_log_redaction()
