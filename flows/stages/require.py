"""Stage entry points resolved by name, so a missing stage is one clear error, never a skip."""

from __future__ import annotations

import importlib
from typing import Any

from pipeline.errors import ForgeError


class MissingStageError(ForgeError):
    """A stage the build was asked to run has no library entry point installed."""


def entry_point(stage: str, module: str, name: str) -> Any:
    """`module.name`, or MissingStageError naming the stage and how to leave it out."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise MissingStageError(
            f"stage '{stage}' needs {module}.{name}, which cannot be imported ({exc}); "
            f"install/update the package or leave '{stage}' out of the build's stages"
        ) from exc
