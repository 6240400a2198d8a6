"""CLAP retrieval index: audio embeddings of candidate clips, queried with `"{span} sound"`.

The index is the warehouse's `clip_embeddings` for one CLAP (backend, checkpoint); the
query goes through the same CLAP's text tower; similarity is cosine (both sides are
L2-normalised by the scorer, normalised again here so a stored vector cannot skew it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pipeline.errors import MissingArtifactError
from pipeline.storage import Warehouse
from pipeline.training.data import Example


class TextEmbedder(Protocol):
    """The part of `pipeline.clap.ClapScorer` retrieval needs."""

    backend: str
    checkpoint_id: str

    def embed_text(self, texts: list[str]) -> np.ndarray: ...


def span_query(span: str) -> str:
    return f"{span.strip()} sound"


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


@dataclass
class RetrievalIndex:
    backend: str
    checkpoint_id: str
    clip_ids: list[str]
    embeddings: np.ndarray  # (n, audio_dim), L2-normalised
    crop_policy: str | None = None

    def __post_init__(self) -> None:
        self.embeddings = _normalise(self.embeddings)
        self._row = {clip_id: row for row, clip_id in enumerate(self.clip_ids)}

    @property
    def audio_dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return len(self.clip_ids)

    def embedding(self, clip_id: str) -> np.ndarray | None:
        row = self._row.get(clip_id)
        return None if row is None else self.embeddings[row]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows and cosine scores for each query vector, best first."""
        if not self.clip_ids:
            raise MissingArtifactError(
                "retrieval index clips",
                f"clip_embeddings for {self.backend}:{self.checkpoint_id}",
                "compute clip embeddings with the CLAP stage (`forge` build / score) first",
            )
        scores = _normalise(queries) @ self.embeddings.T
        k = min(k, scores.shape[1])
        # argpartition finds the k best in linear time; only those k are then sorted.
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        return top, np.take_along_axis(scores, top, axis=1)

    def retrieve(
        self, scorer: TextEmbedder, spans: Sequence[str], k: int = 1
    ) -> list[list[tuple[str, float]]]:
        if not spans:
            return []
        rows, scores = self.search(scorer.embed_text([span_query(s) for s in spans]), k)
        return [
            [(self.clip_ids[r], float(s)) for r, s in zip(row, score, strict=True)]
            for row, score in zip(rows, scores, strict=True)
        ]

    def metadata(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "checkpoint_id": self.checkpoint_id,
            "clips": len(self.clip_ids),
            "audio_dim": self.audio_dim,
            "crop_policy": self.crop_policy,
            "query_template": span_query("{span}"),
            "similarity": "cosine",
            "source": "warehouse table clip_embeddings",
        }


def build_index(
    warehouse: Warehouse, scorer: Any, needed_clip_ids: Sequence[str], run_id: str | None = None
) -> RetrievalIndex:
    """Compute missing embeddings of the items' clips, then index every embedded clip."""
    from pipeline.clap.embeddings import ensure_clip_embeddings

    if needed_clip_ids:
        ensure_clip_embeddings(warehouse, scorer, sorted(set(needed_clip_ids)), run_id)
    return load_index(warehouse, scorer)


def load_index(warehouse: Warehouse, scorer: Any) -> RetrievalIndex:
    """Every clip with a stored embedding for this scorer (backend, checkpoint, crop policy)."""
    from pipeline.clap.embeddings import load_clip_embeddings

    clip_ids, embeddings = load_clip_embeddings(
        warehouse, scorer.backend, scorer.checkpoint_id, crop_policy=scorer.crop_policy
    )
    return RetrievalIndex(
        scorer.backend, scorer.checkpoint_id, list(clip_ids), embeddings, scorer.crop_policy
    )


def retrieval_recall(
    index: RetrievalIndex, scorer: TextEmbedder, examples: Sequence[Example], ks: Sequence[int]
) -> dict[str, float]:
    """Recall@k of each (gold span → its own source clip) pair whose clip is in the index."""
    spans: list[str] = []
    targets: list[str] = []
    for example in examples:
        for span, clip_id in zip(example.spans, example.clip_ids, strict=False):
            if span and index.embedding(clip_id) is not None:
                spans.append(span)
                targets.append(clip_id)
    out: dict[str, float] = {"queries": float(len(spans)), "index_clips": float(len(index))}
    if not spans:
        return out
    rows, _ = index.search(scorer.embed_text([span_query(s) for s in spans]), max(ks))
    for k in ks:
        hits = sum(
            target in {index.clip_ids[r] for r in row[:k]}
            for target, row in zip(targets, rows, strict=True)
        )
        out[f"recall@{k}"] = hits / len(spans)
    return out
