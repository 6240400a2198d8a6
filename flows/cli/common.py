"""Options and error handling shared by every `forge` command."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from pipeline.errors import ForgeError

F = TypeVar("F", bound=Callable[..., Any])


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


def user_errors(func: F) -> F:
    """Print a ForgeError as one clear line on stderr and exit 2, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ForgeError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
