"""Record models for the `clips` and `rejects` tables (see warehouse/tables/*.sql)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SourceName = Literal["audiocaps", "clotho", "clotho-aqa", "laion630k"]
Split = Literal["train", "dev", "test"]
RAW_LIMIT = 500


class QAPair(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str
    answer: str
    confidence: str | None = None


class ClipRecord(BaseModel):
    """A clip as a loader produced it, before ingest adds run lineage."""

    model_config = ConfigDict(extra="forbid")

    clip_id: str
    source: SourceName
    split: Split | None
    source_split: str | None = None
    audio_path: str
    audio_root: str | None = None
    captions: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    title: str | None = None
    description: str | None = None
    duration_s: float | None = None
    license: str | None = None
    url: str | None = None
    qa: list[QAPair] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)
    source_file: str
    source_row: int | None = None

    def to_row(self, run_id: str, ingested_at: datetime) -> dict[str, Any]:
        row = self.model_dump()
        row["extra"] = json.dumps(self.extra, sort_keys=True, ensure_ascii=False)
        row["run_id"] = run_id
        row["ingested_at"] = ingested_at
        return row


class Rejection(BaseModel):
    """One refused input row or field, with a machine-readable reason."""

    model_config = ConfigDict(extra="forbid")

    stage: str = "ingest"
    source: str | None = None
    source_file: str | None = None
    source_row: int | None = None
    record_id: str | None = None
    field: str | None = None
    reason: str
    action: Literal["row_rejected", "field_dropped"] = "row_rejected"
    detail: str | None = None
    raw: str | None = None

    def to_row(self, run_id: str, rejected_at: datetime) -> dict[str, Any]:
        row = self.model_dump()
        if row["raw"] is not None:
            row["raw"] = row["raw"][:RAW_LIMIT]
        row["run_id"] = run_id
        row["rejected_at"] = rejected_at
        return row
