"""Configuration checks that run before any flow or Prefect server starts.

Each check raises a ForgeError (printed as one `error:` line, exit status 2) that says
what was looked for and how to fix it. The module imports nothing heavy (no Prefect,
torch or task code): `forge` must reject a bad configuration in well under 2 s. Names it
mirrors from heavier modules (stage names, task ids, CLAP environment variables, build
parameter keys) are checked against their sources by tests/cli/test_preflight.py.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import ForgeError

# flows.stages.params.STAGES (importing it loads Prefect and every stage).
STAGES = ("ingest", "pitch", "generate", "embeddings", "score", "filter", "export", "report")
# pipeline.tasks.TASKS keys (importing it loads every task package).
TASKS = ("auditorybench-animal", "auditorybench-pitch", "nlar", "reasonaqa")
# flows.stages.params.BuildParams fields.
BUILD_PARAM_KEYS = (
    "warehouse",
    "sources",
    "tasks",
    "stages",
    "llm",
    "generate",
    "clap",
    "filter",
    "export",
    "runner",
    "train",
)
# pipeline.clap.config (importing it loads torch through the package).
CLAP_BACKEND_ENV = "FORGE_CLAP_BACKEND"
CLAP_CHECKPOINT_ENV = "FORGE_CLAP_CHECKPOINT"
HOSTED_LLM_HOSTS = ("api.openai.com",)
# torch.save writes a zip archive (torch >= 1.6) or, in the legacy format, a pickle
# stream that starts with the protocol-2 opcode 0x80 0x02.
_LEGACY_TORCH_MAGIC = b"\x80\x02"


def existing_path(path: Path | str, option: str, *, kind: str = "any") -> Path:
    """`path` resolved; an error naming the option when it does not exist."""
    resolved = Path(path).expanduser().resolve()
    if kind == "dir" and not resolved.is_dir():
        found = "a file" if resolved.exists() else "nothing"
        raise ForgeError(f"{option} {path}: expected a folder, found {found} at {resolved}")
    if kind == "file" and not resolved.is_file():
        found = "a folder" if resolved.exists() else "nothing"
        raise ForgeError(f"{option} {path}: expected a file, found {found} at {resolved}")
    if not resolved.exists():
        raise ForgeError(f"{option} {path}: no such file or folder ({resolved})")
    return resolved


def check_stages(stages: Iterable[str]) -> list[str]:
    stages = list(stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ForgeError(
            f"unknown stage {', '.join(map(repr, unknown))}; --stage takes one of "
            f"{', '.join(STAGES)}"
        )
    return stages


def check_tasks(tasks: Iterable[str]) -> list[str]:
    tasks = list(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ForgeError(
            f"unknown task {', '.join(map(repr, unknown))}; --task takes one of {', '.join(TASKS)}"
        )
    return tasks


def check_llm(backend: str | None = None, model: str | None = None, **overrides: Any) -> Any:
    """The LLMConfig the command will use, and its API key's presence for hosted endpoints.

    The key itself is never read into the config (pipeline.llm reads it when the client is
    created); here only its presence is checked, so a missing key fails before any work."""
    from pipeline.llm import LLMConfig

    config = LLMConfig.from_env(backend=backend, model=model, **overrides)
    if config.backend == "offline":
        return config
    host = urlsplit(config.base_url or "https://api.openai.com/v1").hostname or ""
    if host in HOSTED_LLM_HOSTS and not os.environ.get(config.api_key_env):
        raise ForgeError(
            f"the LLM endpoint {host} needs an API key: set {config.api_key_env}, or point "
            "OPENAI_BASE_URL at your own server (vLLM, Ollama), or use --backend offline"
        )
    return config


def check_clap(backend: str | None = None, checkpoint: str | None = None) -> None:
    """A configured CLAP checkpoint must exist and look like one (no torch import here)."""
    checkpoint = checkpoint or os.environ.get(CLAP_CHECKPOINT_ENV)
    backend = backend or os.environ.get(CLAP_BACKEND_ENV)
    if not checkpoint:
        return  # not configured: stages mark items unscored and say so
    if backend is None:
        backend = "laion" if checkpoint.endswith((".pt", ".ckpt", ".pth")) else "hf"
    if backend not in ("laion", "hf"):
        raise ForgeError(f"{CLAP_BACKEND_ENV}={backend!r}: choose 'laion' or 'hf'")
    path = Path(checkpoint).expanduser()
    how = (
        f"set {CLAP_CHECKPOINT_ENV} to a LAION .pt file (laion) or a transformers ClapModel "
        "folder (hf), or unset it to leave items unscored"
    )
    if backend == "laion":
        if not path.is_file():
            raise ForgeError(
                f"CLAP checkpoint {checkpoint}: no such file ({path.resolve()}); {how}"
            )
        check_torch_checkpoint(path, how)
        return
    looks_like_hub_id = "/" in checkpoint and not checkpoint.startswith((".", "/", "~"))
    if path.is_dir():
        check_model_dir(path, "CLAP checkpoint folder", how)
    elif not looks_like_hub_id:
        raise ForgeError(f"CLAP checkpoint {checkpoint}: no such folder ({path.resolve()}); {how}")


def check_torch_checkpoint(path: Path, how: str) -> None:
    with open(path, "rb") as handle:
        head = handle.read(4)
    if zipfile.is_zipfile(path) or head.startswith(_LEGACY_TORCH_MAGIC):
        return
    raise ForgeError(
        f"CLAP checkpoint {path}: not a PyTorch checkpoint (neither a torch.save zip archive "
        f"nor a legacy pickle; {path.stat().st_size} bytes); {how}"
    )


def check_model_dir(path: Path, what: str, how: str) -> None:
    """A transformers model folder: a readable config.json and a weights file."""
    config = path / "config.json"
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ForgeError(f"{what} {path}: no config.json in it; {how}") from None
    except (OSError, ValueError) as exc:
        raise ForgeError(f"{what} {path}: config.json is unreadable ({exc}); {how}") from None
    weights = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
    if not any((path / name).is_file() for name in weights):
        raise ForgeError(f"{what} {path}: no weights ({' or '.join(weights)}); {how}")


def check_build_params_file(path: Path) -> dict[str, Any]:
    """The JSON of `forge build --params`: readable, an object, only known keys."""
    resolved = existing_path(path, "--params", kind="file")
    try:
        data = json.loads(resolved.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ForgeError(f"--params {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ForgeError(f"--params {path}: expected a JSON object of build parameters")
    unknown = sorted(set(data) - set(BUILD_PARAM_KEYS))
    if unknown:
        raise ForgeError(
            f"--params {path}: unknown key {', '.join(map(repr, unknown))}; known keys: "
            f"{', '.join(BUILD_PARAM_KEYS)}"
        )
    return data
