"""Options, error handling and the Prefect API hook shared by every `forge` command.

Errors: a ForgeError (or another error the user caused: invalid parameters, a missing
file) is printed as one `error:` line on stderr with exit status 2; anything else as one
line with exit status 1. `--debug` or FORGE_DEBUG=1 re-raises instead, so the traceback
shows. Prefect's console log lines keep their messages but lose the traceback of errors
the user caused (the Prefect UI still gets them).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer

from pipeline.errors import ForgeError

F = TypeVar("F", bound=Callable[..., Any])
DEBUG_ENV = "FORGE_DEBUG"


def _usage_error_types() -> tuple[type[Exception], ...]:
    """Click's exception base, and typer's vendored copy of it (typer >= 0.2x ships its
    own `typer._click`, whose exceptions are not click's)."""
    types: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as VendoredClickException
    except ImportError:
        pass
    else:
        types.append(VendoredClickException)
    return tuple(types)


USAGE_ERRORS = _usage_error_types()


class TaskId(StrEnum):
    animal = "auditorybench-animal"
    pitch = "auditorybench-pitch"
    reasonaqa = "reasonaqa"
    nlar = "nlar"


TaskOption = Annotated[TaskId, typer.Option("--task", help="Dataset task id.")]

WarehouseOption = Annotated[
    Path | None,
    typer.Option("--warehouse", help="Warehouse root (default: $FORGE_WAREHOUSE or ./warehouse)."),
]


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(text: object) -> str:
    """Collapse a message to one line (DuckDB and pydantic messages span several)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user caused, or None for anything else."""
    from pydantic import ValidationError

    if isinstance(exc, ForgeError):
        return one_line(exc)
    if isinstance(exc, ValidationError):
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}"
            for err in exc.errors()
        ]
        return f"invalid {exc.title} parameters: " + "; ".join(problems)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    return None


def report_error(exc: BaseException) -> int:
    """Print `exc` as one `error:` line; returns the exit status."""
    message = user_error_message(exc)
    if message is not None:
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        return 2
    typer.secho(
        f"error: unexpected {type(exc).__name__}: {one_line(exc)} "
        f"(rerun with --debug or {DEBUG_ENV}=1 for the traceback)",
        fg=typer.colors.RED,
        err=True,
    )
    return 1


def user_errors(func: F) -> F:
    """Errors as one clear line on stderr (see the module docstring), never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (*USAGE_ERRORS, typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
            raise  # usage errors and exits: `main` prints them
        except Exception as exc:
            if debug_enabled():
                raise
            sys.exit(report_error(exc))

    return wrapper  # type: ignore[return-value]


class _QuietUserErrorTracebacks(logging.Filter):
    """Drop the traceback from console log records whose exception the user caused."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and _caused_by_user(exc):
            record.exc_info = None
            record.exc_text = None
        return True


def _caused_by_user(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if user_error_message(current) is not None:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def quiet_console_tracebacks() -> None:
    """Install the filter on Prefect's console handlers (root logger), unless debugging."""
    if debug_enabled():
        return
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
            isinstance(f, _QuietUserErrorTracebacks) for f in handler.filters
        ):
            handler.addFilter(_QuietUserErrorTracebacks())


@contextlib.contextmanager
def flow_api() -> Iterator[None]:
    """Run the body against the Prefect API (the configured one, else forge's long-lived
    local server, started on first use). Call it after the command's configuration is
    checked: nothing is started for a command that fails its checks."""
    from flows.cli.progress import terminal_progress
    from flows.server import ensure_api, using_api

    target = ensure_api()
    with using_api(target), terminal_progress():
        quiet_console_tracebacks()
        yield
