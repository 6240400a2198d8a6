"""One CLAP interface over two backends: `laion` (laion-clap .pt checkpoints) and `hf`.

Both return L2-normalised 512-d float32 embeddings for texts and for fixed-length
48 kHz mono crops; `ClapScorer.embed_waveforms` applies the crop policy
(`pipeline.clap.crops`) to clips of any length. The model is loaded once per process
(`load_scorer` caches by config), runs under `torch.inference_mode`, on CUDA when present
with fp16/bf16 autocast, and computes log-mel features for a whole batch at once on the
model's device (the HF feature extractor does it clip by clip in numpy).

A checkpoint that cannot be found raises `MissingArtifactError`; nothing here ever
substitutes random weights (those come only from `pipeline.clap.tiny`, by name).
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import sys
import threading
import types
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.clap.config import BACKEND_ENV, CHECKPOINT_ENV, TOKENIZER_ENV, ClapConfig
from pipeline.clap.crops import make_crops, pool_crops, repeat_to_length
from pipeline.errors import ForgeError, MissingArtifactError

SAMPLE_RATE = 48_000
EMBEDDING_DIM = 512
_AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
_HOW_TO_PROVIDE = (
    f"set {BACKEND_ENV}=laion|hf and {CHECKPOINT_ENV} to a LAION .pt file or a transformers "
    "ClapModel directory (or a hub id already in the local Hugging Face cache)"
)


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ForgeError("CLAP device 'cuda' requested but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


class ClapScorer(ABC):
    """A loaded CLAP model. Subclasses implement `_embed_text_batch` and `_embed_crop_batch`."""

    backend: str
    sample_rate: int = SAMPLE_RATE
    embedding_dim: int = EMBEDDING_DIM

    def __init__(self, config: ClapConfig, checkpoint_id: str, device: torch.device) -> None:
        self.config = config
        self.checkpoint_id = checkpoint_id
        self.device = device
        self.crop_samples = round(config.crop_seconds * self.sample_rate)

    @property
    def crop_policy(self) -> str:
        """Identifies how clips became crops; part of the embedding cache key."""
        return (
            f"{self.config.crop_policy}:{self.config.crop_seconds:g}s"
            f"{f':max{self.config.max_crops}' if self.config.crop_policy == 'mean' else ''}"
        )

    # ---- public API ----------------------------------------------------------------

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 512) float32, L2-normalised."""
        out = np.zeros((len(texts), self.embedding_dim), dtype=np.float32)
        for start in range(0, len(texts), self.config.batch_size):
            chunk = list(texts[start : start + self.config.batch_size])
            with self._inference():
                out[start : start + len(chunk)] = _normalised(self._embed_text_batch(chunk))
        return out

    def embed_audio(self, crops: np.ndarray) -> np.ndarray:
        """(n, samples) float32 at `sample_rate` → (n, 512). Rows of another length than one
        crop are repeat-padded or cut to it (use `embed_waveforms` for whole long clips)."""
        crops = np.asarray(crops, dtype=np.float32)
        if crops.ndim == 1:
            crops = crops[None, :]
        if crops.shape[1] != self.crop_samples:
            crops = np.stack([repeat_to_length(row, self.crop_samples) for row in crops])
        out = np.zeros((crops.shape[0], self.embedding_dim), dtype=np.float32)
        for start in range(0, crops.shape[0], self.config.batch_size):
            out[start : start + self.config.batch_size] = self.embed_crop_batch(
                crops[start : start + self.config.batch_size]
            )
        return out

    def embed_crop_batch(self, crops: np.ndarray) -> np.ndarray:
        """One forward pass over exactly-one-crop-long rows; no re-batching."""
        batch = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).to(
            self.device, non_blocking=True
        )
        with self._inference():
            return _normalised(self._embed_crop_batch(batch))

    def crops_for(self, waveform: np.ndarray) -> np.ndarray:
        return make_crops(
            waveform, self.crop_samples, self.config.crop_policy, self.config.max_crops
        )

    def embed_waveforms(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Whole mono clips at `sample_rate` (any lengths) → (n, 512), by the crop policy."""
        crops = [self.crops_for(w) for w in waveforms]
        if not crops:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        flat = self.embed_audio(np.concatenate(crops))
        out, start = [], 0
        for clip_crops in crops:
            out.append(pool_crops(flat[start : start + len(clip_crops)]))
            start += len(clip_crops)
        return np.stack(out)

    # ---- backend hooks -------------------------------------------------------------

    @abstractmethod
    def _embed_text_batch(self, texts: list[str]) -> torch.Tensor: ...

    @abstractmethod
    def _embed_crop_batch(self, crops: torch.Tensor) -> torch.Tensor: ...

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        with torch.inference_mode():
            if self.device.type == "cuda" and self.config.amp_dtype in _AMP_DTYPES:
                with torch.autocast("cuda", dtype=_AMP_DTYPES[self.config.amp_dtype]):
                    yield
            else:
                yield


def _normalised(embeddings: torch.Tensor) -> np.ndarray:
    embeddings = torch.nn.functional.normalize(embeddings.float(), dim=-1)
    return embeddings.cpu().numpy().astype(np.float32, copy=False)


class BatchedLogMel(torch.nn.Module):
    """Log-mel features of a (batch, samples) tensor, equal to `ClapFeatureExtractor`'s.

    Same STFT (Hann 1024, hop 480, centred, reflect padding), power 2, the extractor's own
    filter bank and 10·log10 with floor 1e-10 — computed for the whole batch in one
    call on the model's device instead of per clip in numpy.
    """

    def __init__(self, mel_filters: np.ndarray, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True))
        self.register_buffer("filters", torch.from_numpy(np.asarray(mel_filters, np.float32).T))

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        with torch.autocast(waveforms.device.type, enabled=False):
            spec = torch.stft(
                waveforms.float(),
                n_fft=self.n_fft,
                hop_length=self.hop_length,
                window=self.window,
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()
            mel = torch.matmul(self.filters, power).clamp_min(1e-10)
            return (10.0 * torch.log10(mel)).transpose(1, 2).unsqueeze(1)


class HfClapScorer(ClapScorer):
    """transformers' ClapModel + ClapProcessor (tokenizer and mel settings)."""

    backend = "hf"

    def __init__(
        self,
        config: ClapConfig,
        model: Any,
        processor: Any,
        checkpoint_id: str,
        device: torch.device | None = None,
    ) -> None:
        super().__init__(config, checkpoint_id, device or resolve_device(config.device))
        self.model = model.eval().to(self.device)
        self.processor = processor
        extractor = processor.feature_extractor
        if extractor.sampling_rate != SAMPLE_RATE:
            raise ForgeError(
                f"CLAP checkpoint {checkpoint_id}: feature extractor rate "
                f"{extractor.sampling_rate} Hz, expected {SAMPLE_RATE}"
            )
        # Fused checkpoints use the HTK filter bank and four stacked mel views; unfused
        # ones the Slaney bank ("rand_trunc"), exactly as ClapFeatureExtractor chooses.
        self.fused = bool(model.config.audio_config.enable_fusion)
        filters = extractor.mel_filters if self.fused else extractor.mel_filters_slaney
        self.log_mel = BatchedLogMel(filters, extractor.fft_window_size, extractor.hop_length).to(
            self.device
        )

    def _embed_text_batch(self, texts: list[str]) -> torch.Tensor:
        tokens = self.processor.tokenizer(
            texts, padding=True, truncation=True, max_length=77, return_tensors="pt"
        ).to(self.device)
        return self.model.get_text_features(**tokens).pooler_output

    def _embed_crop_batch(self, crops: torch.Tensor) -> torch.Tensor:
        mel = self.log_mel(crops)
        if self.fused:
            mel = mel.expand(-1, 4, -1, -1)
        # A crop is exactly the model's window, so no clip counts as "longer".
        is_longer = torch.zeros((crops.shape[0], 1), dtype=torch.bool, device=self.device)
        return self.model.get_audio_features(input_features=mel, is_longer=is_longer).pooler_output


class LaionClapScorer(ClapScorer):
    """laion-clap's CLAP model (HTSAT audio tower, RoBERTa text tower) from a .pt checkpoint."""

    backend = "laion"

    def __init__(
        self,
        config: ClapConfig,
        model: Any,
        tokenizer: Any,
        checkpoint_id: str,
        device: torch.device | None = None,
    ) -> None:
        super().__init__(config, checkpoint_id, device or resolve_device(config.device))
        self.model = model.eval().to(self.device)
        self.tokenizer = tokenizer

    def _embed_text_batch(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=77, return_tensors="pt"
        )
        return self.model.get_text_embedding(
            {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
        )

    def _embed_crop_batch(self, crops: torch.Tensor) -> torch.Tensor:
        # laion-clap quantises to int16 before embedding (get_audio_embedding_from_data).
        crops = torch.round(crops.clamp(-1.0, 1.0) * 32767.0) / 32767.0
        return self.model.get_audio_embedding([{"waveform": row} for row in crops])


# ---- loading --------------------------------------------------------------------------

_SCORERS: dict[str, ClapScorer] = {}
_SCORERS_LOCK = threading.Lock()


def load_scorer(config: ClapConfig) -> ClapScorer:
    """The scorer for `config`, loaded once per process (thread-safe: stages run tasks in
    threads, and two concurrent loads would hold two copies of the model)."""
    key = config.model_dump_json()
    with _SCORERS_LOCK:
        if key not in _SCORERS:
            loader = _load_laion if config.backend == "laion" else _load_hf
            _SCORERS[key] = loader(config)
        return _SCORERS[key]


_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def _load_hf(config: ClapConfig) -> HfClapScorer:
    from transformers import ClapModel, ClapProcessor

    source = config.checkpoint
    local = Path(source).expanduser()
    if local.is_dir():
        source, local_only = str(local.resolve()), True
    elif _HUB_ID_RE.match(source) and not source.startswith((".", "/", "~")):
        local_only = False  # resolved from the HF cache; offline (HF_HUB_OFFLINE=1) never downloads
    else:
        raise MissingArtifactError(
            "CLAP checkpoint (hf backend)",
            f"a transformers ClapModel directory at {local.resolve()}",
            _HOW_TO_PROVIDE,
        )
    try:
        model = ClapModel.from_pretrained(source, local_files_only=local_only)
        processor = ClapProcessor.from_pretrained(source, local_files_only=local_only)
    except OSError as exc:
        raise MissingArtifactError(
            "CLAP checkpoint (hf backend)",
            f"{source!r} ({'directory' if local_only else 'hub id, local cache'}): "
            f"{str(exc).splitlines()[0]}",
            _HOW_TO_PROVIDE,
        ) from exc
    return HfClapScorer(config, model, processor, checkpoint_id=config.checkpoint)


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


def _laion_audio_model(state: dict[str, torch.Tensor]) -> str:
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


def read_laion_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict without DataParallel prefixes, extra metadata) of a LAION .pt file."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ForgeError(f"{path}: not a readable LAION CLAP checkpoint: {exc}") from exc
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not state:
        raise ForgeError(f"{path}: no state_dict in the checkpoint")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    # Older transformers kept position_ids as a buffer; current ones rebuild it.
    state.pop("text_branch.embeddings.position_ids", None)
    meta = payload.get("forge", {}) if isinstance(payload, dict) else {}
    return state, meta


def _load_laion(config: ClapConfig) -> LaionClapScorer:
    path = Path(config.checkpoint).expanduser()
    if not path.is_file():
        raise MissingArtifactError(
            "CLAP checkpoint (laion backend)", f"the file {path.resolve()}", _HOW_TO_PROVIDE
        )
    state, meta = read_laion_checkpoint(path)
    if any("fusion_model" in k for k in state):
        raise ForgeError(
            f"{path}: fusion checkpoints need torchaudio, which is not installed; use a "
            "non-fusion checkpoint (630k-audioset-best.pt) or the hf backend with "
            "laion/clap-htsat-fused"
        )
    text_config = meta.get("text_config") or roberta_config_from_state(state)
    model = build_laion_model(text_config, _laion_audio_model(state), skip_init=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ForgeError(
            f"{path}: checkpoint does not fit the {_laion_audio_model(state)} CLAP model "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )
    tokenizer = load_roberta_tokenizer(meta.get("tokenizer") or config.tokenizer, path)
    return LaionClapScorer(config, model, tokenizer, checkpoint_id=str(path.resolve()))


def load_roberta_tokenizer(source: str, checkpoint: Path) -> Any:
    from transformers import AutoTokenizer

    candidate = Path(source).expanduser()
    if not candidate.is_absolute() and (checkpoint.parent / source).is_dir():
        candidate = checkpoint.parent / source
    try:
        if candidate.is_dir():
            return AutoTokenizer.from_pretrained(str(candidate), local_files_only=True)
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise MissingArtifactError(
            "RoBERTa tokenizer for the laion CLAP backend",
            f"{source!r} (a directory, or a hub id in the local Hugging Face cache)",
            f"set {TOKENIZER_ENV} to a directory holding roberta-base's tokenizer files",
        ) from exc
