"""The warehouse cache of CLAP embeddings: clips (`clip_embeddings`) and texts (`text_embeddings`).

A clip is decoded and embedded once per (backend, checkpoint, crop policy); every later
task, scoring run or retrieval index reads the stored vector. Clips whose audio cannot be
used are recorded in `audio_failures` with the reason and are not retried while their
audio location is unchanged (pass `retry_failures=True` after fixing files). Each call
appends one partition holding only what was missing, so reruns are cheap and idempotent.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipeline import progress
from pipeline.audio.io import AudioLoadError, describe_location
from pipeline.clap.scorer import ClapScorer
from pipeline.clap.stream import Decoder, StreamTimer, embed_clip_stream
from pipeline.storage import Warehouse, new_run_id
from pipeline.storage import schema as schemas
from pipeline.storage.warehouse import utc_now

EMBED_STAGE = "clap-embed"
_WRITE_BATCH = 512


class ClipEmbeddingRecord(BaseModel):
    """A row of `clip_embeddings` (warehouse/tables/clip_embeddings.sql)."""

    model_config = ConfigDict(extra="forbid")

    clip_id: str
    backend: str
    checkpoint: str
    crop_policy: str
    n_crops: int
    audio_seconds: float | None
    embedding: list[float]
    run_id: str
    computed_at: datetime


class TextEmbeddingRecord(BaseModel):
    """A row of `text_embeddings` (warehouse/tables/text_embeddings.sql)."""

    model_config = ConfigDict(extra="forbid")

    text: str
    backend: str
    checkpoint: str
    embedding: list[float]
    run_id: str
    computed_at: datetime


class AudioFailureRecord(BaseModel):
    """A row of `audio_failures` (warehouse/tables/audio_failures.sql)."""

    model_config = ConfigDict(extra="forbid")

    clip_id: str
    stage: str
    audio_location: str | None
    reason: str
    detail: str | None
    run_id: str
    failed_at: datetime


class EmbeddingSummary(BaseModel):
    backend: str
    checkpoint: str
    crop_policy: str
    requested: int = 0
    cached: int = 0
    computed: int = 0
    failed: int = 0
    known_failures: int = 0
    decoded: int = 0
    failures_by_reason: dict[str, int] = Field(default_factory=dict)
    model_busy_fraction: float = 0.0


def model_key(*parts: str) -> str:
    """A partition-safe key for (backend, checkpoint[, crop policy])."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _run_partition(prefix: str, run_id: str) -> str:
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return f"{prefix}/run={safe_run}-{secrets.token_hex(3)}"


def _vector_column(table: str, vectors: np.ndarray) -> pa.Array:
    kind = schemas.table(table).arrow.field("embedding").type
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, type=kind)


def _matrix(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    values = column.flatten() if len(column) else pa.array([], pa.float32())
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)


# ---- clips ---------------------------------------------------------------------------


def ensure_clip_embeddings(
    warehouse: Warehouse,
    scorer: ClapScorer,
    clip_ids: Sequence[str],
    run_id: str | None = None,
    *,
    retry_failures: bool = False,
    decoder: Decoder | None = None,
) -> EmbeddingSummary:
    """Embed the clips that have no stored vector for this scorer; record failures."""
    run_id = run_id or new_run_id()
    wanted = sorted(set(clip_ids))
    summary = EmbeddingSummary(
        backend=scorer.backend,
        checkpoint=scorer.checkpoint_id,
        crop_policy=scorer.crop_policy,
        requested=len(wanted),
    )
    if not wanted:
        return summary
    stored = set(
        _stored_clip_ids(
            warehouse, scorer.backend, scorer.checkpoint_id, scorer.crop_policy, wanted
        )
    )
    summary.cached = len(stored)
    clips = warehouse.rows(
        "SELECT clip_id, any_value(audio_root) AS audio_root, any_value(audio_path) AS audio_path "
        "FROM clips WHERE clip_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY clip_id",
        [[c for c in wanted if c not in stored]],
    )
    by_id = {row["clip_id"]: row for row in clips}
    known = {} if retry_failures else known_failures(warehouse, list(by_id))
    now = utc_now()
    failures: list[dict[str, Any]] = []
    todo: list[tuple[str, dict[str, Any]]] = []
    for clip_id in wanted:
        if clip_id in stored:
            continue
        row = by_id.get(clip_id)
        if row is None:
            failures.append(
                _failure_row(clip_id, None, "missing", "clip_id not in `clips`", run_id, now)
            )
            continue
        location = describe_location(row)
        if known.get(clip_id) == location:
            summary.known_failures += 1
            continue
        todo.append((clip_id, row))
    reasons: Counter[str] = Counter(f["reason"] for f in failures)
    timer = StreamTimer()
    key = model_key(scorer.backend, scorer.checkpoint_id, scorer.crop_policy)
    if todo:
        with (
            progress.step("clap embeddings", total=len(todo), unit="clip") as advance,
            warehouse.writer("clip_embeddings", _run_partition(f"model={key}", run_id)) as writer,
        ):
            batch: list[Any] = []
            for result in embed_clip_stream(
                scorer, todo, timer=timer, **({"decoder": decoder} if decoder else {})
            ):
                advance(1, failed=int(result.failure is not None))  # clips arrive per batch
                if result.failure is not None:
                    reasons[result.failure.reason] += 1
                    failures.append(
                        _failure_row(
                            result.clip_id,
                            result.failure.location,
                            result.failure.reason,
                            result.failure.detail,
                            run_id,
                            now,
                        )
                    )
                    continue
                batch.append(result)
                if len(batch) >= _WRITE_BATCH:
                    summary.computed += writer.write(_clip_table(scorer, batch, run_id))
                    batch.clear()
            summary.computed += writer.write(_clip_table(scorer, batch, run_id))
    if failures:
        warehouse.write_partition(
            "audio_failures", _run_partition(f"stage={EMBED_STAGE}", run_id), failures
        )
    summary.failed = len(failures)
    summary.decoded = timer.decoded
    summary.failures_by_reason = dict(reasons)
    summary.model_busy_fraction = round(timer.model_busy_fraction, 4)
    return summary


def _failure_row(
    clip_id: str,
    location: str | None,
    reason: str,
    detail: str,
    run_id: str,
    now: datetime,
) -> dict[str, Any]:
    return AudioFailureRecord(
        clip_id=clip_id,
        stage=EMBED_STAGE,
        audio_location=location,
        reason=reason,
        detail=detail,
        run_id=run_id,
        failed_at=now,
    ).model_dump()


def _clip_table(scorer: ClapScorer, results: list[Any], run_id: str) -> pa.Table:
    n = len(results)
    vectors = (
        np.stack([r.embedding for r in results])
        if results
        else np.zeros((0, scorer.embedding_dim), np.float32)
    )
    now = utc_now()
    return pa.table(
        {
            "clip_id": [r.clip_id for r in results],
            "backend": [scorer.backend] * n,
            "checkpoint": [scorer.checkpoint_id] * n,
            "crop_policy": [scorer.crop_policy] * n,
            "n_crops": pa.array([r.n_crops for r in results], pa.int32()),
            "audio_seconds": pa.array([r.audio_seconds for r in results], pa.float64()),
            "embedding": _vector_column("clip_embeddings", vectors),
            "run_id": [run_id] * n,
            "computed_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def _stored_clip_ids(
    warehouse: Warehouse, backend: str, checkpoint: str, crop_policy: str, clip_ids: list[str]
) -> list[str]:
    rows = warehouse.rows(
        "SELECT DISTINCT clip_id FROM clip_embeddings WHERE backend = ? AND checkpoint = ? "
        "AND crop_policy = ? AND clip_id IN (SELECT unnest(?::VARCHAR[]))",
        [backend, checkpoint, crop_policy, clip_ids],
    )
    return [r["clip_id"] for r in rows]


def known_failures(warehouse: Warehouse, clip_ids: list[str]) -> dict[str, str]:
    """clip_id → audio location of its latest recorded decode failure."""
    if not clip_ids:
        return {}
    rows = warehouse.rows(
        "SELECT clip_id, arg_max(audio_location, failed_at) AS location FROM audio_failures "
        "WHERE stage = ? AND clip_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY clip_id",
        [EMBED_STAGE, clip_ids],
    )
    return {r["clip_id"]: r["location"] for r in rows}


def clip_failure_reasons(warehouse: Warehouse, clip_ids: list[str]) -> dict[str, str]:
    """clip_id → 'reason: detail' of its latest decode failure."""
    if not clip_ids:
        return {}
    rows = warehouse.rows(
        "SELECT clip_id, arg_max(reason || ': ' || coalesce(detail, ''), failed_at) AS why "
        "FROM audio_failures WHERE stage = ? AND clip_id IN (SELECT unnest(?::VARCHAR[])) "
        "GROUP BY clip_id",
        [EMBED_STAGE, clip_ids],
    )
    return {r["clip_id"]: r["why"] for r in rows}


def load_clip_embeddings(
    warehouse: Warehouse,
    backend: str,
    checkpoint: str,
    clip_ids: Sequence[str] | None = None,
    crop_policy: str | None = None,
) -> tuple[list[str], np.ndarray]:
    """(clip ids, (n, 512) float32) of stored embeddings; the latest per clip when several."""
    where = ["backend = ?", "checkpoint = ?"]
    params: list[Any] = [backend, checkpoint]
    if crop_policy is not None:
        where.append("crop_policy = ?")
        params.append(crop_policy)
    if clip_ids is not None:
        where.append("clip_id IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(clip_ids))
    table = warehouse.query(
        "SELECT clip_id, arg_max(embedding, computed_at) AS embedding FROM clip_embeddings "
        f"WHERE {' AND '.join(where)} GROUP BY clip_id ORDER BY clip_id",
        params,
    )
    return table.column("clip_id").to_pylist(), _matrix(table.column("embedding"), 512)


# ---- texts ---------------------------------------------------------------------------


def embed_texts_cached(
    warehouse: Warehouse, scorer: ClapScorer, texts: Sequence[str], run_id: str | None = None
) -> tuple[dict[str, np.ndarray], int]:
    """({text: embedding} for every distinct text, number newly computed)."""
    wanted = sorted(set(texts))
    if not wanted:
        return {}, 0
    run_id = run_id or new_run_id()
    table = warehouse.query(
        "SELECT text, arg_max(embedding, computed_at) AS embedding FROM text_embeddings "
        "WHERE backend = ? AND checkpoint = ? AND text IN (SELECT unnest(?::VARCHAR[])) "
        "GROUP BY text",
        [scorer.backend, scorer.checkpoint_id, wanted],
    )
    found = dict(
        zip(
            table.column("text").to_pylist(),
            _matrix(table.column("embedding"), scorer.embedding_dim),
            strict=True,
        )
    )
    missing = [t for t in wanted if t not in found]
    if missing:
        vectors = scorer.embed_text(missing)
        n = len(missing)
        now = utc_now()
        warehouse.write_partition(
            "text_embeddings",
            _run_partition(
                f"model={model_key(scorer.backend, scorer.checkpoint_id)}", run_id or new_run_id()
            ),
            pa.table(
                {
                    "text": missing,
                    "backend": [scorer.backend] * n,
                    "checkpoint": [scorer.checkpoint_id] * n,
                    "embedding": _vector_column("text_embeddings", vectors),
                    "run_id": [run_id] * n,
                    "computed_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
                }
            ),
        )
        found.update(zip(missing, vectors, strict=True))
    return found, len(missing)


__all__ = [
    "AudioLoadError",
    "EmbeddingSummary",
    "embed_texts_cached",
    "ensure_clip_embeddings",
    "load_clip_embeddings",
]
