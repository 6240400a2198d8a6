"""Where things live: warehouse root, audio root, bundled resources.

Stage-specific settings (LLM, CLAP, training) live with their stage; this module only
answers path questions, so every command resolves them the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_BUNDLED = Path(__file__).resolve().parent / "_bundled"

WAREHOUSE_ENV = "FORGE_WAREHOUSE"
AUDIO_ROOT_ENV = "FORGE_AUDIO_ROOT"


def _resource_dir(name: str) -> Path:
    """A top-level resource folder (`prompts`, `warehouse`) in a checkout or an installed wheel."""
    in_checkout = REPO_ROOT / name
    if in_checkout.is_dir():
        return in_checkout
    return _BUNDLED / name


def default_prompts_dir() -> Path:
    return _resource_dir("prompts")


def sql_dir() -> Path:
    """Folder of the SQL that defines the catalog (`tables/*.sql`, `views/*.sql`)."""
    return _resource_dir("warehouse")


def resolve_warehouse(path: Path | str | None = None) -> Path:
    """`--warehouse DIR`, else `$FORGE_WAREHOUSE`, else `./warehouse`."""
    if path is not None:
        return Path(path).expanduser().resolve()
    env = os.environ.get(WAREHOUSE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (Path.cwd() / "warehouse").resolve()
