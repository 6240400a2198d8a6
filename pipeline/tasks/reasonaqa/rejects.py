"""Recording what a task's input could not give (ties, unusable questions) in `rejects`.

Rows go to `rejects` partitions `stage=generate/source=<task>/split=<split>`, replaced
on every generation run of that split, so `SELECT reason, count(*) FROM rejects WHERE
stage = 'generate' GROUP BY 1` always describes the latest run.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from pipeline.sources.records import Rejection
from pipeline.storage.warehouse import utc_now

if TYPE_CHECKING:
    from pipeline.storage import Warehouse


class RejectLog:
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self._by_split: dict[str, list[Rejection]] = {}

    def touch(self, split: str) -> None:
        """Mark a split as processed (its partition is rewritten even when empty)."""
        self._by_split.setdefault(split, [])

    def add(
        self,
        clip: dict[str, Any],
        reason: str,
        detail: str,
        raw: str | None = None,
        split: str | None = None,
        field: str = "answer",
    ) -> None:
        self._by_split.setdefault(split or clip.get("split") or "none", []).append(
            Rejection(
                stage="generate",
                source=self.task_id,
                source_file=clip.get("source_file"),
                source_row=clip.get("source_row"),
                record_id=clip["clip_id"],
                field=field,
                reason=reason,
                detail=detail,
                raw=raw,
            )
        )

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(r.reason for rs in self._by_split.values() for r in rs).items()))

    def write(self, warehouse: Warehouse, run_id: str) -> None:
        now = utc_now()
        for split, rejections in sorted(self._by_split.items()):
            warehouse.write_partition(
                "rejects",
                f"stage=generate/source={self.task_id}/split={split}",
                [r.to_row(run_id, now) for r in rejections],
            )
