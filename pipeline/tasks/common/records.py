"""Record models of the task stage: `ItemRecord` (one row of `item_records`) and summaries.

`ItemRecord` is kept in step with warehouse/tables/item_records.sql (a test compares the
field names and order with the DDL columns).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ItemSplit = Literal["train", "dev", "test", "wiki"]
SPLIT_ORDER: tuple[str, ...] = ("test", "dev", "train", "wiki")
"""Precedence when the same text occurs in several splits: the earlier split keeps it.

Test first, so a benchmark's test set is never thinned by a duplicate found in train."""

ValidationStatus = Literal["valid", "rejected"]


class ItemRecord(BaseModel):
    """One generated item, valid or rejected, exactly as stored in `item_records`."""

    model_config = ConfigDict(extra="forbid")

    item_id: str
    task: str
    subtask: str | None = None
    split: ItemSplit
    clip_ids: list[str] = Field(default_factory=list)
    input: str | None = None
    answer: str | None = None
    options: list[str] = Field(default_factory=list)
    spans: list[str] = Field(default_factory=list)
    focus: str | None = None
    facts: str | None = None
    generation_key: str | None = None
    generation_version: str
    prompt_name: str | None = None
    prompt_version: str | None = None
    model: str | None = None
    llm_call_key: str | None = None
    validation_status: ValidationStatus
    validation_reasons: list[str] = Field(default_factory=list)
    run_id: str
    created_at: datetime

    def facts_dict(self) -> dict[str, Any]:
        return json.loads(self.facts) if self.facts else {}


class GenerateSummary(BaseModel):
    """What one `generate_task` call produced, with counts SQL can confirm."""

    model_config = ConfigDict(extra="forbid")

    task: str
    run_id: str
    generation_version: str
    items: int = 0
    valid: int = 0
    rejected: int = 0
    valid_by_split: dict[str, int] = Field(default_factory=dict)
    rejected_by_split: dict[str, int] = Field(default_factory=dict)
    rejected_by_reason: dict[str, int] = Field(default_factory=dict)
    partitions: list[str] = Field(default_factory=list)
    notes: dict[str, Any] = Field(default_factory=dict)
    # Items whose LLM call failed (error, refusal, unusable reply): the next run resends
    # exactly those calls, so a summary with failed calls is never reused from the cache.
    failed_calls: int = 0
    failed_calls_by_split: dict[str, int] = Field(default_factory=dict)
    # The `generations` manifest partition that made this version current (None: not
    # current, e.g. a run that produced no items).
    completion: str | None = None
