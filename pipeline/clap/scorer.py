"""One CLAP interface over two backends: `laion` (laion-clap .pt checkpoints) and `hf`.

Both return L2-normalised 512-d float32 embeddings for texts and for fixed-length
48 kHz mono crops; `ClapScorer.embed_waveforms` applies the crop policy
(`pipeline.clap.crops`) to clips of any length. Audio preprocessing follows the reference
calls (laion-clap `CLAP_Module.get_audio_embedding_from_data`, transformers
`ClapFeatureExtractor` + `ClapModel.get_audio_features`): repeatpad, int16 truncation
(laion), and for fused transformers checkpoints the extractor's `is_longer` rule as it
applies to one clip at a time — a clip alone in a batch is always `is_longer=True`
(a long clip by its own rule; a short one because the extractor marks one random clip
of an all-short batch). The model is loaded once per process
(`load_scorer` caches by config), runs under `torch.inference_mode`, on CUDA when present
with fp16/bf16 autocast, and computes log-mel features for a whole batch at once on the
model's device (the HF feature extractor does it clip by clip in numpy).

A checkpoint that cannot be found raises `MissingArtifactError`; nothing here ever
substitutes random weights (those come only from `pipeline.clap.tiny`, by name).
"""

from __future__ import annotations

import contextlib
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.clap.config import BACKEND_ENV, CHECKPOINT_ENV, TOKENIZER_ENV, ClapConfig
from pipeline.clap.crops import (
    PREPROCESSING,
    fusion_chunk_starts,
    make_crops,
    pool_crops,
    repeatpad,
)
from pipeline.clap.laion_model import (
    build_laion_model,
    laion_audio_model,
    roberta_config_from_state,
)
from pipeline.errors import ForgeError, MissingArtifactError
from pipeline.storage.checkpoints import load_checkpoint

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
    fused: bool = False

    def __init__(self, config: ClapConfig, checkpoint_id: str, device: torch.device) -> None:
        self.config = config
        self.checkpoint_id = checkpoint_id
        self.device = device
        self.crop_samples = round(config.crop_seconds * self.sample_rate)

    @property
    def crop_policy(self) -> str:
        """Identifies how clips became crops; part of the embedding cache key."""
        policy, detail = self.config.crop_policy, ""
        if policy == "mean":
            detail = f":max{self.config.max_crops}"
        elif policy == "reference":
            policy = "fusion" if self.fused else "rand_trunc"
            detail = f":seed{self.config.crop_seed}"
        return f"{policy}:{self.config.crop_seconds:g}s{detail}:{PREPROCESSING}"

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
        crop are repeatpadded or cut to it (use `embed_waveforms` for whole long clips)."""
        crops = np.asarray(crops, dtype=np.float32)
        if crops.ndim == 1:
            crops = crops[None, :]
        if crops.shape[1] != self.crop_samples:
            crops = np.stack([repeatpad(row, self.crop_samples) for row in crops])
        out = np.zeros((crops.shape[0], self.embedding_dim), dtype=np.float32)
        for start in range(0, crops.shape[0], self.config.batch_size):
            out[start : start + self.config.batch_size] = self.embed_crop_batch(
                crops[start : start + self.config.batch_size]
            )
        return out

    def embed_crop_batch(self, crops: np.ndarray) -> np.ndarray:
        """One forward pass over rows of `crops_for` output, all of one shape: one-crop-long
        waveforms (n, samples), or precomputed model features (n, ...); no re-batching."""
        batch = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)).to(
            self.device, non_blocking=True
        )
        with self._inference():
            return _normalised(self._embed_crop_batch(batch))

    def crops_for(self, waveform: np.ndarray) -> np.ndarray:
        """A mono clip's model inputs by the crop policy: (n, crop_samples) waveforms, or
        (1, ...) precomputed features where the reference builds them from the whole clip."""
        return make_crops(
            waveform,
            self.crop_samples,
            self.config.crop_policy,
            self.config.max_crops,
            self.config.crop_seed,
        )

    def embed_waveforms(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Whole mono clips at `sample_rate` (any lengths) → (n, 512), by the crop policy."""
        crops = [self.crops_for(w) for w in waveforms]
        if not crops:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        # Rows of one shape (waveform crops, or one kind of precomputed features) batch
        # together across clips; a clip's rows always share one shape.
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, clip_crops in enumerate(crops):
            by_shape.setdefault(clip_crops.shape[1:], []).append(index)
        out = np.zeros((len(crops), self.embedding_dim), dtype=np.float32)
        for indices in by_shape.values():
            flat = self.embed_rows(np.concatenate([crops[i] for i in indices]))
            start = 0
            for i in indices:
                out[i] = pool_crops(flat[start : start + len(crops[i])])
                start += len(crops[i])
        return out

    def embed_rows(self, rows: np.ndarray) -> np.ndarray:
        """`crops_for` output of any count → (n, 512), in batches of `batch_size`."""
        if rows.ndim == 2:
            return self.embed_audio(rows)
        out = np.zeros((rows.shape[0], self.embedding_dim), dtype=np.float32)
        for start in range(0, rows.shape[0], self.config.batch_size):
            out[start : start + self.config.batch_size] = self.embed_crop_batch(
                rows[start : start + self.config.batch_size]
            )
        return out

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
        self.n_mels = int(np.asarray(filters).shape[1])
        self.hop_length = int(extractor.hop_length)
        cpu_log_mel = BatchedLogMel(filters, extractor.fft_window_size, extractor.hop_length)
        self.log_mel = cpu_log_mel.to(self.device)
        # Whole-clip fused views are built in the decode threads, on the CPU.
        self._cpu_log_mel = cpu_log_mel if self.device.type == "cpu" else cpu_log_mel.cpu()

    def crops_for(self, waveform: np.ndarray) -> np.ndarray:
        if (
            self.fused
            and self.config.crop_policy == "reference"
            and waveform.shape[-1] > self.crop_samples
        ):
            return self.fusion_view(waveform)[None]
        return super().crops_for(waveform)

    def fusion_view(self, waveform: np.ndarray) -> np.ndarray:
        """(4, chunk frames, mels): the fused extractor's input for a clip longer than a crop —
        the whole log-mel shrunk to one chunk, then front, middle and back chunks drawn
        as after `np.random.seed(crop_seed)` (pipeline.clap.crops.fusion_chunk_starts)."""
        with torch.inference_mode():
            mel = self._cpu_log_mel(torch.from_numpy(np.asarray(waveform, np.float32))[None])[0, 0]
            chunk = self.crop_samples // self.hop_length + 1  # frames of one centred crop
            if mel.shape[0] == chunk:  # at most one hop longer: the whole clip is the chunk
                return mel.expand(4, -1, -1).numpy().copy()
            starts = fusion_chunk_starts(mel.shape[0], chunk, self.config.crop_seed)
            shrunk = torch.nn.functional.interpolate(
                mel[None, None], size=[chunk, self.n_mels], mode="bilinear", align_corners=False
            )[0, 0]
            views = [shrunk, *(mel[start : start + chunk] for start in starts)]
            return torch.stack(views).numpy()

    def _embed_text_batch(self, texts: list[str]) -> torch.Tensor:
        tokens = self.processor.tokenizer(
            texts, padding=True, truncation=True, max_length=77, return_tensors="pt"
        ).to(self.device)
        return self.model.get_text_features(**tokens).pooler_output

    def _embed_crop_batch(self, crops: torch.Tensor) -> torch.Tensor:
        if crops.ndim == 4:  # fused views precomputed from whole clips (`fusion_view`)
            mel = crops
        else:
            mel = self.log_mel(crops)
            if self.fused:
                mel = mel.expand(-1, 4, -1, -1)
        # Each row stands for one clip embedded on its own: fused, that is always
        # is_longer=True (see the module docstring); unfused models ignore the flag.
        is_longer = torch.full((crops.shape[0], 1), self.fused, device=self.device)
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
        crops = quantise_int16(crops)
        return self.model.get_audio_embedding([{"waveform": row} for row in crops])


def quantise_int16(waveforms: torch.Tensor) -> torch.Tensor:
    """laion-clap's int16 round trip (get_audio_embedding_from_data), bit for bit: clip to
    [-1, 1], scale by 32767 in float32, truncate toward zero as numpy's astype(np.int16)
    does, divide by 32767 in float64 and cast back to float32."""
    quantised = torch.trunc(waveforms.float().clamp(-1.0, 1.0) * 32767.0)
    return (quantised.double() / 32767.0).float()


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


def read_laion_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict without DataParallel prefixes, extra metadata) of a LAION .pt file."""
    # Weights-only: a .pt is a pickle and may come from anywhere (see storage.checkpoints).
    payload = load_checkpoint(path, what="LAION CLAP checkpoint")
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
    model = build_laion_model(text_config, laion_audio_model(state), skip_init=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ForgeError(
            f"{path}: checkpoint does not fit the {laion_audio_model(state)} CLAP model "
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
