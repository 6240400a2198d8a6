"""Stored CLAP audio embeddings equal the reference libraries' own calls on the same weights.

References, called directly (tiny random models, identical objects on both sides):

* laion (unfused): laion-clap's `CLAP_Module.get_audio_embedding_from_filelist`, i.e.
  `librosa.load(path, sr=48000)` + `get_audio_embedding_from_data`'s quantisation,
  repeatpad and rand_trunc (its README path);
* hf unfused / fused: `librosa.load(path, sr=48000)` → `ClapProcessor(audio=...,
  sampling_rate=48000)` → `ClapModel.get_audio_features`, one clip per call as the
  transformers docs show (truncation `rand_trunc` / `fusion`, padding `repeatpad`).

Our side is the full stored path: files → `ensure_clip_embeddings` (thread-pool decode,
batches of mixed clips) → `clip_embeddings` → `load_clip_embeddings`. Clips up to 10 s
use the default `mean` policy (one crop: the policy only matters for longer clips);
25 s clips use the `reference` policy, compared with the reference call made right after
`np.random.seed(SEED)`; the default `mean` policy on a long clip is checked to be the
mean of the reference calls on each of its crops (`test_mean_policy_is_the_mean_of_crops`).
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from laion_reference import import_hook, reference_module

from pipeline.clap import ClapConfig, ClapScorer
from pipeline.clap.crops import crop_starts
from pipeline.clap.embeddings import ensure_clip_embeddings, load_clip_embeddings
from pipeline.clap.scorer import HfClapScorer, LaionClapScorer, quantise_int16
from pipeline.clap.tiny import (
    TINY_HF_CHECKPOINT_ID,
    TINY_HF_FUSED_CHECKPOINT_ID,
    TINY_LAION_CHECKPOINT_ID,
    build_tiny_hf_parts,
    build_tiny_laion_parts,
    build_tiny_tokenizer,
)
from pipeline.storage import Warehouse

SEED = 1234
MIN_COSINE = 0.99999
DURATIONS = (1.0, 3.0, 7.0, 10.0, 25.0)
RATES = (16_000, 44_100, 48_000)
CHANNELS = (1, 2)
ALL_CASES = [(d, r, c) for d in DURATIONS for r in RATES for c in CHANNELS]
# Every backend meets every case. The fused set adds the extractor's corner case of a clip
# at most one hop (480 samples) longer than the window: its mel is stacked four times.
LAION_CASES = ALL_CASES
FUSED_CASES = [*ALL_CASES, (10.004, 48_000, 1)]
CASES = {"laion": LAION_CASES, "hf": ALL_CASES, "hf-fused": FUSED_CASES}


def clip_id(case: tuple[float, int, int]) -> str:
    seconds, rate, channels = case
    return f"parity:{seconds:g}s-{rate}hz-{channels}ch"


def _signal(case: tuple[float, int, int]) -> np.ndarray:
    """A different harmonic tone + noise with a moving envelope per case: (samples, channels)."""
    seconds, rate, channels = case
    rng = np.random.default_rng(zlib.crc32(clip_id(case).encode()))
    t = np.arange(round(seconds * rate)) / rate
    f0 = rng.uniform(120, 900)
    tone = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 0.7) * t) ** 2
    left = 0.25 * envelope * tone / 2.3 + 0.05 * rng.standard_normal(t.shape)
    if channels == 1:
        return left[:, None]
    return np.stack([left, 0.6 * left + 0.1 * rng.standard_normal(t.shape)], axis=1)


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("parity-audio")
    files = {}
    for case in sorted(set(ALL_CASES + LAION_CASES + FUSED_CASES)):
        path = folder / f"{clip_id(case).split(':')[1]}.wav"
        sf.write(path, _signal(case).astype(np.float32), case[1], subtype="FLOAT")
        files[clip_id(case)] = path
    return files


@pytest.fixture(scope="module")
def parity_warehouse(
    tmp_path_factory: pytest.TempPathFactory, clip_files: dict[str, Path]
) -> Warehouse:
    warehouse = Warehouse(tmp_path_factory.mktemp("parity") / "warehouse")
    now = datetime.now(UTC)
    rows = [
        {
            "clip_id": cid,
            "source": "parity",
            "audio_path": path.name,
            "audio_root": str(path.parent),
            "source_file": "parity",
            "run_id": "parity",
            "ingested_at": now,
        }
        for cid, path in clip_files.items()
    ]
    warehouse.write_partition("clips", "source=parity", rows)
    return warehouse


def _stored(warehouse: Warehouse, scorer: ClapScorer, cases: list[Any]) -> dict[str, np.ndarray]:
    ids = [clip_id(c) for c in cases]
    summary = ensure_clip_embeddings(warehouse, scorer, ids, "parity-run")
    assert summary.failed == 0, summary.failures_by_reason
    stored_ids, vectors = load_clip_embeddings(
        warehouse, scorer.backend, scorer.checkpoint_id, ids, scorer.crop_policy
    )
    assert sorted(stored_ids) == sorted(ids)
    return dict(zip(stored_ids, vectors, strict=True))


def _ours(warehouse: Warehouse, make: Any, cases: list[Any]) -> dict[str, np.ndarray]:
    """Stored embeddings: default policy for clips up to 10 s, seeded reference beyond."""
    short = [c for c in cases if c[0] <= 10]
    long = [c for c in cases if c[0] > 10]
    default = make(ClapConfig(backend="hf", checkpoint="x", device="cpu", batch_size=4))
    reference = make(
        ClapConfig(
            backend="hf", checkpoint="x", device="cpu", crop_policy="reference", crop_seed=SEED
        )
    )
    assert default.crop_policy != reference.crop_policy
    return {**_stored(warehouse, default, short), **_stored(warehouse, reference, long)}


def _hf_reference(model: Any, processor: Any, path: Path) -> np.ndarray:
    audio, _ = librosa.load(path, sr=48_000)
    np.random.seed(SEED)
    inputs = processor(audio=audio, sampling_rate=48_000, return_tensors="pt")
    with torch.inference_mode():
        vector = model.get_audio_features(**inputs).pooler_output[0].numpy()
    return vector / np.linalg.norm(vector)


@pytest.fixture(scope="module", params=["laion", "hf", "hf-fused"])
def backend_cosines(
    request: pytest.FixtureRequest, parity_warehouse: Warehouse, clip_files: dict[str, Path]
) -> tuple[str, dict[str, float]]:
    """(backend, {clip_id: cosine of stored vs reference embedding})."""
    if request.param == "laion":
        model, tokenizer, _ = build_tiny_laion_parts(seed=0)
        reference = reference_module(model, tokenizer)
        cases = LAION_CASES

        def make(config: ClapConfig) -> ClapScorer:
            values = {**config.model_dump(), "backend": "laion"}
            return LaionClapScorer(ClapConfig(**values), model, tokenizer, TINY_LAION_CHECKPOINT_ID)

        def expected(path: Path) -> np.ndarray:
            np.random.seed(SEED)
            with torch.inference_mode():
                return reference.get_audio_embedding_from_filelist([str(path)])[0]

    else:
        fused = request.param == "hf-fused"
        model, processor = build_tiny_hf_parts(seed=0, fused=fused)
        checkpoint = TINY_HF_FUSED_CHECKPOINT_ID if fused else TINY_HF_CHECKPOINT_ID
        cases = CASES[request.param]

        def make(config: ClapConfig) -> ClapScorer:
            return HfClapScorer(config, model, processor, checkpoint)

        def expected(path: Path) -> np.ndarray:
            return _hf_reference(model, processor, path)

    ours = _ours(parity_warehouse, make, cases)
    cosines = {}
    for case in cases:
        want = expected(clip_files[clip_id(case)])
        cosines[clip_id(case)] = float(np.dot(ours[clip_id(case)], want) / np.linalg.norm(want))
    return request.param, cosines


def test_stored_embeddings_equal_the_reference_calls(
    backend_cosines: tuple[str, dict[str, float]],
) -> None:
    backend, cosines = backend_cosines
    assert set(cosines) == {clip_id(c) for c in CASES[backend]}
    below = {cid: round(cos, 7) for cid, cos in cosines.items() if cos < MIN_COSINE}
    assert not below, f"{backend}: cosine < {MIN_COSINE} for {below}"


def test_mean_policy_is_the_mean_of_crops(clip_files: dict[str, Path]) -> None:
    """Default policy on a 25 s clip: each evenly spread crop embedded like a clip of its own
    by the reference call, then averaged — compared exactly, crop by crop."""
    model, processor = build_tiny_hf_parts(seed=0, fused=True)
    scorer = HfClapScorer(
        ClapConfig(backend="hf", checkpoint="x", device="cpu"), model, processor, "x"
    )
    path = clip_files[clip_id((25.0, 44_100, 2))]
    audio, _ = librosa.load(path, sr=48_000)
    starts = crop_starts(audio.shape[0], 480_000, scorer.config.max_crops)
    assert len(starts) == 3 and starts[-1] == audio.shape[0] - 480_000
    crops = []
    for start in starts:
        inputs = processor(
            audio=audio[start : start + 480_000], sampling_rate=48_000, return_tensors="pt"
        )
        assert inputs["is_longer"].tolist() == [[True]], "a lone short clip is marked longer"
        with torch.inference_mode():
            vector = model.get_audio_features(**inputs).pooler_output[0].numpy()
        crops.append(vector / np.linalg.norm(vector))
    mean = np.mean(crops, axis=0)
    ours = scorer.embed_waveforms([audio])[0]
    assert float(np.dot(ours, mean / np.linalg.norm(mean))) >= MIN_COSINE


def test_reference_policy_depends_on_the_seed(clip_files: dict[str, Path]) -> None:
    model, processor = build_tiny_hf_parts(seed=0)
    audio, _ = librosa.load(clip_files[clip_id((25.0, 48_000, 1))], sr=48_000)
    embeddings = []
    for seed in (SEED, SEED + 1):
        config = ClapConfig(
            backend="hf", checkpoint="x", device="cpu", crop_policy="reference", crop_seed=seed
        )
        scorer = HfClapScorer(config, model, processor, "x")
        assert scorer.crop_policy == f"rand_trunc:10s:seed{seed}:repeatpad"
        embeddings.append(scorer.embed_waveforms([audio])[0])
    assert float(np.dot(*embeddings)) < 0.99999, "another seed must pick another crop"


def test_int16_quantisation_is_laion_clap_s_bit_for_bit() -> None:
    hook = import_hook(build_tiny_tokenizer())  # laion-clap's own functions, as hook.py uses them
    rng = np.random.default_rng(5)
    # Values a rounding quantiser would move to the next step: (k + 0.5..0.99) / 32767.
    steps = rng.integers(-32766, 32766, 4000) + rng.uniform(0.5, 0.99, 4000)
    audio = np.concatenate([steps / 32767.0, rng.uniform(-1.5, 1.5, 4000)]).astype(np.float32)
    expected = hook.int16_to_float32(hook.float32_to_int16(audio))
    np.testing.assert_array_equal(quantise_int16(torch.from_numpy(audio)).numpy(), expected)
    assert not np.array_equal(np.round(np.clip(audio, -1, 1) * 32767) / 32767, expected)
