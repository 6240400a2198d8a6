"""Both CLAP backends as tiny random models: shapes, norms, batching, loading, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.clap import ClapConfig, ClapScorer, load_scorer
from pipeline.clap.tiny import (
    TINY_HF_CHECKPOINT_ID,
    TINY_LAION_CHECKPOINT_ID,
    build_tiny_hf_clap,
    build_tiny_laion_clap,
    save_tiny_hf_clap,
    save_tiny_laion_clap,
)
from pipeline.errors import MissingArtifactError

TEXTS = ["a dog barks", "rain falls on a roof", "a piano plays a high note", "the wind blows"]


@pytest.fixture(scope="module")
def hf_scorer() -> ClapScorer:
    return build_tiny_hf_clap(seed=0)


@pytest.fixture(scope="module")
def laion_scorer() -> ClapScorer:
    return build_tiny_laion_clap(seed=0)


@pytest.fixture(scope="module", params=["hf", "laion"])
def scorer(request: pytest.FixtureRequest) -> ClapScorer:
    return request.getfixturevalue(f"{request.param}_scorer")


def _noise(n: int, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((n, round(48_000 * seconds)))).astype(np.float32)


CROPS = _noise(2, 10.0, seed=1)


@pytest.fixture(scope="module")
def batched(scorer: ClapScorer) -> np.ndarray:
    """The scorer's embeddings of CROPS in one batch (computed once: HTSAT is slow on CPU)."""
    return scorer.embed_audio(CROPS)


def test_shapes_and_unit_norm(scorer: ClapScorer, batched: np.ndarray) -> None:
    text = scorer.embed_text(TEXTS)
    audio = batched
    assert text.shape == (4, 512) and audio.shape == (2, 512)
    assert text.dtype == np.float32 and audio.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(audio[0], audio[1]), "different clips must embed differently"
    assert scorer.sample_rate == 48_000 and scorer.embedding_dim == 512
    assert scorer.checkpoint_id in (TINY_HF_CHECKPOINT_ID, TINY_LAION_CHECKPOINT_ID)


def test_batch_equals_one_by_one(scorer: ClapScorer, batched: np.ndarray) -> None:
    single = np.concatenate([scorer.embed_audio(CROPS[i : i + 1]) for i in range(2)])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    text_batched = scorer.embed_text(TEXTS)
    text_single = np.concatenate([scorer.embed_text([t]) for t in TEXTS])
    np.testing.assert_allclose(text_batched, text_single, atol=1e-5)


def test_hf_batched_mel_matches_the_feature_extractor(hf_scorer: ClapScorer) -> None:
    import torch

    crops = _noise(2, 10.0, seed=2)
    reference = hf_scorer.processor.feature_extractor(  # type: ignore[attr-defined]
        list(crops), sampling_rate=48_000, return_tensors="pt"
    )
    ours = hf_scorer.log_mel(torch.from_numpy(crops))  # type: ignore[attr-defined]
    assert ours.shape == reference["input_features"].shape
    assert float((ours - reference["input_features"]).abs().max()) < 1e-3
    with torch.inference_mode():
        expected = hf_scorer.model.get_audio_features(**reference).pooler_output.numpy()  # type: ignore[attr-defined]
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(hf_scorer.embed_audio(crops), expected, atol=1e-4)


def test_long_clips_average_crops_and_short_clips_repeatpad(hf_scorer: ClapScorer) -> None:
    short = _noise(1, 3.0, seed=3)[0]
    # repeatpad: three whole repeats (9 s), then 1 s of zeros — never a partial repeat
    repeated = np.concatenate([np.tile(short, 3), np.zeros(48_000, np.float32)])
    np.testing.assert_array_equal(hf_scorer.crops_for(short)[0], repeated)
    np.testing.assert_allclose(
        hf_scorer.embed_waveforms([short]), hf_scorer.embed_audio(repeated[None]), atol=1e-5
    )
    # 10 s at 44.1 kHz resamples to 480,001 samples: one crop, not two near-copies
    assert hf_scorer.crops_for(_noise(1, 10.0, seed=5)[0].repeat(2)[:480_001]).shape == (1, 480_000)
    assert hf_scorer.crops_for(_noise(1, 10.2, seed=5)[0]).shape == (2, 480_000)
    long = _noise(1, 25.0, seed=4)[0]
    crops = hf_scorer.crops_for(long)
    assert crops.shape == (3, 480_000)
    np.testing.assert_array_equal(crops[-1], long[-480_000:])
    pooled = hf_scorer.embed_audio(crops).mean(axis=0)
    np.testing.assert_allclose(
        hf_scorer.embed_waveforms([long])[0], pooled / np.linalg.norm(pooled), atol=1e-5
    )


def test_saved_checkpoints_load_through_the_real_path(
    tmp_path: Path, scorer: ClapScorer, batched: np.ndarray
) -> None:
    if scorer.backend == "hf":
        checkpoint = save_tiny_hf_clap(tmp_path / "hf-clap", seed=0)
    else:
        checkpoint = save_tiny_laion_clap(tmp_path / "tiny-laion.pt", scorer=scorer)  # type: ignore[arg-type]
    config = ClapConfig(backend=scorer.backend, checkpoint=str(checkpoint))  # type: ignore[arg-type]
    loaded = load_scorer(config)
    assert load_scorer(config) is loaded, "one model per process and config"
    assert loaded.checkpoint_id == str(checkpoint) and loaded is not scorer
    np.testing.assert_allclose(loaded.embed_audio(CROPS), batched, atol=1e-5)
    np.testing.assert_allclose(loaded.embed_text(TEXTS), scorer.embed_text(TEXTS), atol=1e-5)


@pytest.mark.parametrize(
    ("backend", "checkpoint"),
    [
        ("laion", "models/630k-audioset-best.pt"),
        ("hf", "models/clap-htsat-unfused"),
        ("hf", "laion/clap-htsat-unfused"),
    ],
)
def test_missing_checkpoint_names_what_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, checkpoint: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingArtifactError) as error:
        load_scorer(ClapConfig(backend=backend, checkpoint=checkpoint))  # type: ignore[arg-type]
    message = str(error.value)
    assert checkpoint.split("/")[-1] in message
    assert "FORGE_CLAP_CHECKPOINT" in message and "FORGE_CLAP_BACKEND" in message
    assert "\n" not in message


def test_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ClapConfig.from_env() is None
    monkeypatch.setenv("FORGE_CLAP_CHECKPOINT", "/models/630k-audioset-best.pt")
    config = ClapConfig.from_env()
    assert config is not None and config.backend == "laion"
    monkeypatch.setenv("FORGE_CLAP_BACKEND", "hf")
    monkeypatch.setenv("FORGE_CLAP_CHECKPOINT", "laion/clap-htsat-unfused")
    config = ClapConfig.from_env(batch_size=4)
    assert config is not None and (config.backend, config.batch_size) == ("hf", 4)
    assert (config.crop_policy, config.crop_seed) == ("mean", 0)
    monkeypatch.setenv("FORGE_CLAP_CROP_POLICY", "reference")
    monkeypatch.setenv("FORGE_CLAP_CROP_SEED", "7")
    config = ClapConfig.from_env()
    assert config is not None and (config.crop_policy, config.crop_seed) == ("reference", 7)
    monkeypatch.setenv("FORGE_CLAP_CROP_POLICY", "random")
    with pytest.raises(ValueError, match="crop_policy"):
        ClapConfig.from_env()
    monkeypatch.delenv("FORGE_CLAP_CROP_POLICY")
    with pytest.raises(ValueError):
        ClapConfig(backend="hf", checkpoint="x", unknown_key=1)  # type: ignore[call-arg]
