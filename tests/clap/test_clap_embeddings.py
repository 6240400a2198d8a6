"""The embedding store: compute once, reuse across tasks, record unusable audio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio.io import load_clip_audio
from pipeline.clap import ClapScorer
from pipeline.clap.embeddings import (
    embed_texts_cached,
    ensure_clip_embeddings,
    load_clip_embeddings,
)
from pipeline.clap.tiny import build_tiny_hf_clap
from pipeline.storage import Warehouse
from pipeline.storage.warehouse import utc_now


@pytest.fixture(scope="module")
def scorer() -> ClapScorer:
    return build_tiny_hf_clap(seed=0)


class CountingDecoder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, location: object, sample_rate: int) -> np.ndarray:
        self.calls.append(str(location))
        return load_clip_audio(location, sample_rate)  # type: ignore[arg-type]


def _clip_ids(wh: Warehouse, source: str) -> list[str]:
    return [r["clip_id"] for r in wh.rows("SELECT clip_id FROM clips WHERE source = ?", [source])]


def test_second_run_decodes_nothing(sample_warehouse: Warehouse, scorer: ClapScorer) -> None:
    laion = _clip_ids(sample_warehouse, "laion630k")[:10]
    decoder = CountingDecoder()
    first = ensure_clip_embeddings(sample_warehouse, scorer, laion, "run-1", decoder=decoder)
    assert first.computed + first.failed == 10 and first.cached == 0
    assert len(decoder.calls) == first.decoded == 10
    ids, vectors = load_clip_embeddings(sample_warehouse, "hf", scorer.checkpoint_id, laion)
    assert len(ids) == first.computed and vectors.shape == (first.computed, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    # A second task over the same clips (plus two new ones) decodes only the new ones.
    more = [*laion, *_clip_ids(sample_warehouse, "clotho")[:2]]
    decoder.calls.clear()
    second = ensure_clip_embeddings(sample_warehouse, scorer, more, "run-2", decoder=decoder)
    assert second.cached == first.computed
    assert len(decoder.calls) == second.decoded == 2 + (10 - first.computed - first.failed)
    decoder.calls.clear()
    third = ensure_clip_embeddings(sample_warehouse, scorer, more, "run-3", decoder=decoder)
    assert decoder.calls == [] and third.decoded == 0 and third.computed == 0

    # The stored vector equals a fresh embedding of the same clip.
    row = sample_warehouse.rows("SELECT * FROM clips WHERE clip_id = ?", [ids[0]])[0]
    fresh = scorer.embed_waveforms([load_clip_audio(row, 48_000)])[0]
    np.testing.assert_allclose(vectors[0], fresh, atol=1e-5)


def write_clips(
    wh: Warehouse, audio_root: Path, files: dict[str, np.ndarray | bytes | None]
) -> None:
    """Clips rows for test audio: an array is written as a wav, bytes as they are, None not at all."""
    audio_root.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, content in files.items():
        if isinstance(content, np.ndarray):
            sf.write(audio_root / name, content, 48_000)
        elif isinstance(content, bytes):
            (audio_root / name).write_bytes(content)
        rows.append(
            {
                "clip_id": f"test:{name}",
                "source": "clotho",
                "audio_path": name,
                "audio_root": str(audio_root),
                "captions": [f"caption of {name}"],
                "source_file": "test",
                "run_id": "test",
                "ingested_at": utc_now(),
            }
        )
    wh.write_partition("clips", "source=test", rows)


def tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(round(48_000 * seconds)) / 48_000
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_unusable_audio_is_recorded_and_skipped(
    warehouse: Warehouse, scorer: ClapScorer, tmp_path: Path
) -> None:
    files = {
        "ok1.wav": tone(2.0, 440.0),
        "ok2.wav": tone(12.0, 220.0),
        "gone.wav": None,
        "corrupt.wav": b"RIFF not really audio",
        "silent.wav": np.zeros(48_000, np.float32),
        "short.wav": tone(0.01, 440.0),
    }
    write_clips(warehouse, tmp_path / "audio", files)
    ids = [f"test:{name}" for name in files] + ["test:not-ingested.wav"]
    summary = ensure_clip_embeddings(warehouse, scorer, ids, "run-f")
    assert summary.computed == 2 and summary.failed == 5
    assert summary.failures_by_reason == {
        "missing": 2,
        "unreadable": 1,
        "silent": 1,
        "too_short": 1,
    }
    recorded = {
        r["clip_id"]: r["reason"]
        for r in warehouse.rows("SELECT clip_id, reason FROM audio_failures")
    }
    assert recorded == {
        "test:gone.wav": "missing",
        "test:corrupt.wav": "unreadable",
        "test:silent.wav": "silent",
        "test:short.wav": "too_short",
        "test:not-ingested.wav": "missing",
    }
    # Known failures are not decoded again while their audio location is unchanged ...
    again = ensure_clip_embeddings(warehouse, scorer, ids, "run-g")
    assert again.decoded == 0 and again.known_failures == 4 and again.cached == 2
    # ... and are retried once the file is fixed, when asked to.
    sf.write(tmp_path / "audio" / "gone.wav", tone(1.0, 330.0), 48_000)
    fixed = ensure_clip_embeddings(warehouse, scorer, ids, "run-h", retry_failures=True)
    assert fixed.computed == 1 and fixed.decoded == 4


def test_text_embeddings_are_cached(warehouse: Warehouse, scorer: ClapScorer) -> None:
    texts = ["a dog barks", "rain falls", "a dog barks"]
    first, computed = embed_texts_cached(warehouse, scorer, texts, "run-t")
    assert computed == 2 and set(first) == {"a dog barks", "rain falls"}
    second, computed_again = embed_texts_cached(warehouse, scorer, [*texts, "wind"], "run-u")
    assert computed_again == 1
    np.testing.assert_allclose(second["a dog barks"], first["a dog barks"], atol=0)
    np.testing.assert_allclose(second["wind"], scorer.embed_text(["wind"])[0], atol=1e-6)


def test_embedding_reports_progress_per_clip(
    sample_warehouse: Warehouse, scorer: ClapScorer
) -> None:
    from pipeline import progress

    events: list[tuple[str, Any]] = []

    class Listener:
        def started(self, step_id: int, name: str, total: int | None, unit: str) -> None:
            events.append(("started", (name, total, unit)))

        def advanced(self, step_id: int, done: int, counters: dict[str, int]) -> None:
            events.append(("advanced", done))

        def finished(self, step_id: int) -> None:
            events.append(("finished", None))

    clips = _clip_ids(sample_warehouse, "clotho")[:4]
    with progress.listening(Listener()):
        summary = ensure_clip_embeddings(sample_warehouse, scorer, clips, "run-p")
    assert events[0] == ("started", ("clap embeddings", 4, "clip"))
    assert [done for kind, done in events if kind == "advanced"] == [1, 2, 3, 4]
    assert events[-1] == ("finished", None) and summary.computed + summary.failed == 4
