"""Review decisions: a person accepts or rejects an item in the viewer.

Each decision is one row of `item_reviews`, written as its own Parquet partition
(`task=<task>/review=<time>-<token>`) through `Warehouse.write_partition`, so a decision
is either fully recorded or not at all and concurrent reviewers never rewrite each other.
The latest decision per item counts (view `item_review_latest`); exports leave out items
whose latest decision is a rejection.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.errors import ForgeError

if TYPE_CHECKING:
    from pipeline.storage import Warehouse

ReviewDecision = Literal["accept", "reject"]
REVIEW_TABLE = "item_reviews"
MAX_REASON_CHARS = 500

# Items whose latest review is a rejection: exports and the report read this.
REJECTED_BY_REVIEW_SQL = "SELECT item_id FROM item_review_latest WHERE decision = 'reject'"


class ReviewRecord(BaseModel):
    """One row of `item_reviews` (warehouse/tables/item_reviews.sql)."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1)
    task: str = Field(min_length=1)
    decision: ReviewDecision
    reason: str | None = None
    reviewer: str = Field(min_length=1, max_length=100)
    generation_version: str | None = None
    run_id: str
    reviewed_at: datetime

    @field_validator("reason")
    @classmethod
    def _trim_reason(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        return value[:MAX_REASON_CHARS] or None


class ReviewError(ForgeError):
    """A review that cannot be recorded (unknown item, missing reason, bad reviewer name)."""


def record_review(
    warehouse: Warehouse,
    item_id: str,
    decision: str,
    reviewer: str,
    reason: str | None,
    run_id: str,
) -> ReviewRecord:
    """Append one decision for an existing item; a rejection needs a reason."""
    from pipeline.storage.warehouse import utc_now

    rows = warehouse.rows(
        "SELECT task, generation_version FROM items WHERE item_id = ? LIMIT 1", [item_id]
    )
    if not rows:
        raise ReviewError(f"unknown item_id {item_id!r}")
    if decision not in ("accept", "reject"):
        raise ReviewError(f"decision must be 'accept' or 'reject', not {decision!r}")
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise ReviewError("a review needs a reviewer name")
    if decision == "reject" and not (reason or "").strip():
        raise ReviewError("a rejection needs a reason")
    record = ReviewRecord(
        item_id=item_id,
        task=rows[0]["task"],
        decision=decision,  # type: ignore[arg-type]
        reason=reason,
        reviewer=reviewer,
        generation_version=rows[0]["generation_version"],
        run_id=run_id,
        reviewed_at=utc_now(),
    )
    stamp = record.reviewed_at.strftime("%Y%m%dT%H%M%S%f")
    partition = f"task={record.task}/review={stamp}-{secrets.token_hex(4)}"
    warehouse.write_partition(REVIEW_TABLE, partition, [record.model_dump()])
    return record


def latest_review(warehouse: Warehouse, item_id: str) -> dict[str, Any] | None:
    rows = warehouse.rows("SELECT * FROM item_review_latest WHERE item_id = ?", [item_id])
    return rows[0] if rows else None


class ReviewSummary(BaseModel):
    """Review counts of one task and how they agree with the automatic filters."""

    model_config = ConfigDict(extra="forbid")

    task: str
    reviewed: int = 0
    accepted: int = 0
    rejected: int = 0
    agree: int = 0  # reviewer and automatic filters reached the same verdict
    by_automatic: list[dict[str, Any]] = Field(default_factory=list)
    reasons: dict[str, int] = Field(default_factory=dict)

    @property
    def agreement(self) -> float | None:
        return self.agree / self.reviewed if self.reviewed else None

    def markdown(self) -> str:
        lines = ["## Human review", ""]
        if not self.reviewed:
            return "\n".join([*lines, "_no item reviewed yet (`forge view`)_"]) + "\n"
        share = f"{100 * (self.agreement or 0):.1f} %"
        lines += [
            f"Reviewed items: **{self.reviewed}** (accepted {self.accepted}, rejected "
            f"{self.rejected}); agreement with the automatic filters: **{share}**.",
            "",
            "| decision | automatic filters | items | agree |",
            "|---|---|---:|---:|",
        ]
        for row in self.by_automatic:
            lines.append(
                f"| {row['decision']} | {row['automatic']} | {row['items']} | {row['agree']} |"
            )
        if self.reasons:
            lines += [
                "",
                "Rejection reasons: " + ", ".join(f"{r} {n}" for r, n in self.reasons.items()),
            ]
        return "\n".join(lines) + "\n"


def review_summary(warehouse: Warehouse, task_id: str) -> ReviewSummary:
    summary = ReviewSummary(task=task_id)
    summary.by_automatic = warehouse.rows(
        "SELECT decision, automatic, items, agree FROM review_agreement WHERE task = ?",
        [task_id],
    )
    for row in summary.by_automatic:
        summary.reviewed += row["items"]
        summary.agree += row["agree"]
        if row["decision"] == "accept":
            summary.accepted += row["items"]
        else:
            summary.rejected += row["items"]
    summary.reasons = {
        r["reason"]: r["n"]
        for r in warehouse.rows(
            "SELECT coalesce(reason, '(none)') AS reason, count(*) AS n FROM item_review_latest "
            "WHERE task = ? AND decision = 'reject' GROUP BY 1 ORDER BY n DESC, reason",
            [task_id],
        )
    }
    return summary
