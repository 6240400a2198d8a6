"""laion-clap's own `CLAP_Module` (hook.py), importable offline — for parity tests only.

`import laion_clap` loads three tokenizers from the hub at import time
(training/data.py), imports torchvision and wget (neither installed here, neither used
by the audio path), and `CLAP_Module.__init__` builds its text tower with
`from_pretrained('roberta-base')`. Those calls are stubbed here while the package
imports and while one module is constructed; everything the audio embedding runs
(`get_audio_embedding_from_filelist` / `_from_data`: librosa.load at 48 kHz, int16
quantisation, `get_audio_features`, the model) is laion-clap's own code.
"""

from __future__ import annotations

import copy
import sys
import types
from typing import Any

import pytest

from pipeline.clap.laion_model import import_laion_clap_module

_STUB_MODULES = (
    "torchvision",
    "torchvision.datasets",
    "torchvision.transforms",
    "torchvision.ops",
    "torchvision.ops.misc",
    "wget",
)


def _unusable(name: str) -> type:
    def _fail(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"{name} is stubbed in parity tests")

    return type(name.rsplit(".", 1)[-1], (), {"__init__": _fail})


def import_hook(tokenizer: Any) -> types.ModuleType:
    """laion_clap.hook, with hub tokenizers replaced by `tokenizer` during its import."""
    if "laion_clap.hook" in sys.modules:
        return sys.modules["laion_clap.hook"]
    import transformers

    import_laion_clap_module()  # the model code, through the project's own importer
    with pytest.MonkeyPatch.context() as patch:
        for name in _STUB_MODULES:
            if name not in sys.modules:
                module = types.ModuleType(name)
                module.__getattr__ = lambda attr, _n=name: _unusable(f"{_n}.{attr}")  # type: ignore[method-assign]
                patch.setitem(sys.modules, name, module)
        for cls in ("BertTokenizer", "RobertaTokenizer", "BartTokenizer"):
            patch.setattr(
                getattr(transformers, cls),
                "from_pretrained",
                classmethod(lambda *_a, **_k: tokenizer),
            )
        import laion_clap.hook as hook  # only importable under these stubs
    return hook


def reference_module(model: Any, tokenizer: Any) -> Any:
    """A real `CLAP_Module` (unfused HTSAT-tiny, as for 630k-audioset-best.pt) whose model is
    `model` — the very weights the project's scorer holds."""
    hook = import_hook(tokenizer)
    factory = sys.modules["clap_module.factory"]
    model_cfg = copy.deepcopy(factory._MODEL_CONFIGS["HTSAT-tiny"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hook, "create_model", lambda *_a, **_k: (model, model_cfg))
        patch.setattr(
            hook.RobertaTokenizer, "from_pretrained", classmethod(lambda *_a, **_k: tokenizer)
        )
        module = hook.CLAP_Module(enable_fusion=False, device="cpu", amodel="HTSAT-tiny")
    assert module.model is model
    return module
