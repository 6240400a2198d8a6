"""laion-clap's CLAP model, built offline: its model code imported without the package's
hub calls, its RoBERTa text tower built from a config instead of `from_pretrained`.

Facts about laion-clap 1.1.7 this relies on: `import laion_clap` runs `hook.py` and
`training/data.py`, which load three tokenizers from the hub at import time and import
torchvision (not installed here: no CPU wheel); the model code is the top-level package
`clap_module` (the package appends its own directory to `sys.path`); `create_model` calls
`RobertaModel.from_pretrained('roberta-base')` while building the text tower; HTSAT's
patch-embedding width tells HTSAT-tiny (96) from HTSAT-base (128).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

import torch

from pipeline.errors import ForgeError, MissingArtifactError

# laion-clap imports torchvision (image transforms, FrozenBatchNorm2d) without needing it for
# audio; no CPU torchvision wheel exists here. These stand-ins exist only while its modules
# import, and raise if any image code path is ever used.
_TORCHVISION_NAMES = {
    "torchvision.transforms": (
        "Normalize",
        "Compose",
        "RandomResizedCrop",
        "InterpolationMode",
        "ToTensor",
        "Resize",
        "CenterCrop",
    ),
    "torchvision.ops.misc": ("FrozenBatchNorm2d",),
}


def _unavailable(qualified: str) -> type:
    def _fail(*_args: object, **_kwargs: object) -> None:
        raise ImportError(f"{qualified} needs torchvision, which is not installed")

    return type(qualified.rsplit(".", 1)[-1], (), {"__init__": _fail})


def import_laion_clap_module() -> types.ModuleType:
    """laion-clap's `clap_module` package, imported without the package's `__init__`.

    `import laion_clap` runs `hook.py`, which loads three tokenizers from the hub at import
    time and imports torchvision; the model code itself (`clap_module`) needs neither.
    """
    if "clap_module" in sys.modules:
        return sys.modules["clap_module"]
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or not spec.submodule_search_locations:
        raise MissingArtifactError(
            "the laion-clap package",
            "an importable `laion_clap`",
            "install it with `pip install --no-deps laion-clap==1.1.7` (see Makefile)",
        )
    import transformers  # noqa: F401  (imported first: its torchvision probe must see the truth)
    from transformers import BartModel, BertModel, RobertaModel  # noqa: F401

    shims: list[str] = []
    if importlib.util.find_spec("torchvision") is None:
        for module_name, names in _TORCHVISION_NAMES.items():
            parts = module_name.split(".")
            for depth in range(1, len(parts) + 1):
                name = ".".join(parts[:depth])
                if name not in sys.modules:
                    sys.modules[name] = types.ModuleType(name)
                    shims.append(name)
                if depth > 1:
                    setattr(
                        sys.modules[".".join(parts[: depth - 1])],
                        parts[depth - 1],
                        sys.modules[name],
                    )
            for attr in names:
                setattr(sys.modules[module_name], attr, _unavailable(f"{module_name}.{attr}"))
    package_dir = spec.submodule_search_locations[0]
    if package_dir not in sys.path:
        sys.path.append(package_dir)  # laion-clap imports its model code as top-level `clap_module`
    try:
        import clap_module  # type: ignore[import-not-found]
        import clap_module.model  # type: ignore[import-not-found]
    finally:
        for name in shims:
            sys.modules.pop(name, None)
    return clap_module


def laion_audio_model(state: dict[str, torch.Tensor]) -> str:
    width = state["audio_branch.patch_embed.proj.weight"].shape[0]
    names = {96: "HTSAT-tiny", 128: "HTSAT-base"}
    if width not in names:
        raise ForgeError(f"unrecognised LAION CLAP audio tower (patch embedding width {width})")
    return names[width]


def roberta_config_from_state(state: dict[str, torch.Tensor], heads: int = 12) -> dict[str, Any]:
    """The RoBERTa text tower's shape, read from the checkpoint (roberta-base for LAION's)."""
    prefix = "text_branch."
    layers = {int(k.split(".")[3]) for k in state if k.startswith(prefix + "encoder.layer.")}
    return {
        "vocab_size": state[prefix + "embeddings.word_embeddings.weight"].shape[0],
        "hidden_size": state[prefix + "embeddings.word_embeddings.weight"].shape[1],
        "max_position_embeddings": state[prefix + "embeddings.position_embeddings.weight"].shape[0],
        "type_vocab_size": state[prefix + "embeddings.token_type_embeddings.weight"].shape[0],
        "num_hidden_layers": len(layers),
        "num_attention_heads": heads,
        "intermediate_size": state[prefix + "encoder.layer.0.intermediate.dense.weight"].shape[0],
        "layer_norm_eps": 1e-5,
        "pad_token_id": 1,
    }


def build_laion_model(
    text_config: dict[str, Any], audio_model: str = "HTSAT-tiny", *, skip_init: bool = False
) -> Any:
    """A laion-clap CLAP model whose RoBERTa tower is built from `text_config`, not the hub.

    laion-clap calls `RobertaModel.from_pretrained('roberta-base')` while constructing the
    model — a download whose weights the checkpoint overwrites anyway; we build the same
    architecture from a config instead, so loading works offline. `skip_init` skips
    HTSAT's truncated-normal initialisation (seconds on CPU) when a checkpoint will
    overwrite every weight anyway (the strict load below checks that it does).
    """
    from transformers import RobertaConfig, RobertaModel

    clap_module = import_laion_clap_module()
    model_module = sys.modules["clap_module.model"]

    class _RobertaFromConfig:
        @staticmethod
        def from_pretrained(_name: str) -> RobertaModel:
            return RobertaModel(RobertaConfig(**text_config), add_pooling_layer=True)

    htsat_module = sys.modules["clap_module.htsat"]
    original = model_module.RobertaModel, htsat_module.trunc_normal_
    model_module.RobertaModel = _RobertaFromConfig
    if skip_init:
        htsat_module.trunc_normal_ = lambda tensor, *args, **kwargs: tensor
    try:
        model, _ = clap_module.create_model(
            audio_model, "roberta", precision="fp32", device="cpu", enable_fusion=False
        )
    finally:
        model_module.RobertaModel, htsat_module.trunc_normal_ = original
    return model
