"""Loading checkpoint files without running code that may hide in them.

A `.pt` file is a pickle: a plain `torch.load(..., weights_only=False)` calls whatever
function the file names (a payload's `os.system` runs before anything fails), and
checkpoints come from the internet. Every checkpoint in the project is read through
`load_checkpoint`, which:

* reads `.safetensors` files with `safetensors.torch.load_file` (tensors only, no pickle);
* reads everything else with `torch.load(weights_only=True)`: torch's restricted
  unpickler builds tensors, dict/OrderedDict/list/tuple/set, numbers, strings and None,
  and refuses any other global with `pickle.UnpicklingError` naming it ("Unsupported
  global: GLOBAL os.system"); extra globals are allowed only per call, through
  `torch.serialization.safe_globals` (never the process-wide `add_safe_globals`);
* refuses the rest with one line that says how to convert the file.

Facts relied on (checked by tests/security/test_checkpoints.py):

* LAION CLAP's trainer (`src/laion_clap/training/main.py` in LAION-AI/CLAP) saves
  `{"epoch", "name", "state_dict", "optimizer"}` (or one `<part>_optimizer` per part) and
  `"scaler"` when AMP is on: tensors, numbers, strings and containers only, so its `.pt`
  files load weights-only without any allow-listing.
* The training loop's resume file holds the NumPy RNG state, a tuple with a `uint32`
  array; pickled arrays need `numpy._core.multiarray._reconstruct`, `numpy.ndarray` and
  `numpy.dtype` (and the array's dtype class): `NUMPY_ARRAYS`.
"""

from __future__ import annotations

import pickle
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import ForgeError, MissingArtifactError

# What a pickled NumPy array (e.g. `np.random.get_state()`) needs, nothing more.
NUMPY_ARRAYS: tuple[Any, ...] = (
    np._core.multiarray._reconstruct,
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
)
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_CONVERT = "python -m pipeline.storage.checkpoints {src} {dst}"
_CONVERTED_SUFFIX = ".weights.pt"


class UnsafeCheckpointError(ForgeError):
    """A checkpoint needs code to load (a pickled object that is not plain data)."""


def load_checkpoint(
    path: Path | str, *, what: str = "checkpoint", allow: Sequence[Any] = ()
) -> Any:
    """The contents of a checkpoint file, loaded on the CPU without executing code from it.

    `allow`: extra classes/functions the file may reference (e.g. `NUMPY_ARRAYS`).
    Raises MissingArtifactError when absent, UnsafeCheckpointError when the file names
    anything else, ForgeError when it is not a checkpoint at all.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(what, str(path), "check the path")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ForgeError(f"{path}: not a readable {what}: {_first_line(exc)}") from None
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSUPPORTED_GLOBAL.search(str(exc))
        if found is None:
            raise ForgeError(f"{path}: not a readable {what}: {_first_line(exc)}") from None
        dst = path.with_name(path.stem + _CONVERTED_SUFFIX)
        raise UnsafeCheckpointError(
            f"{path}: refused to load this {what}: it references {found.group(1)}, which "
            "could run code; if you trust where it came from, convert its tensors once with "
            f"`{_CONVERT.format(src=path, dst=dst)}` and use {dst.name}"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise ForgeError(f"{path}: not a readable {what}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def convert_checkpoint(src: Path, dst: Path) -> int:
    """Write the tensors of a TRUSTED checkpoint as a file that loads weights-only; returns
    how many: `{"state_dict": tensors}` via torch.save, or safetensors when `dst` ends in
    `.safetensors`.

    This is the one place that unpickles with code execution allowed: it exists for a file
    the user has decided to trust, run by hand. It keeps `state_dict` (or the top-level
    dict of tensors) with any DataParallel `module.` prefix, as LAION's loader expects.
    """
    payload = torch.load(src, map_location="cpu", weights_only=False)
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise ForgeError(f"{src}: no state_dict (a dict of tensors) in the checkpoint")
    tensors = {k: v.contiguous().clone() for k, v in state.items() if torch.is_tensor(v)}
    if not tensors:
        raise ForgeError(f"{src}: the state_dict holds no tensors")
    tmp = dst.with_name(f".{dst.name}.partial")
    if dst.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(tmp))
    else:
        torch.save({"state_dict": tensors}, tmp)
    tmp.replace(dst)
    return len(tensors)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(
            "usage: python -m pipeline.storage.checkpoints TRUSTED.pt OUT.weights.pt"
            " (or OUT.safetensors)"
        )
        return 2
    src, dst = Path(argv[0]), Path(argv[1])
    try:
        count = convert_checkpoint(src, dst)
    except Exception as exc:  # a command run by hand: one line, not a traceback
        print(f"error: {src}: {exc}", file=sys.stderr)
        return 2
    print(f"{dst}: {count} tensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
