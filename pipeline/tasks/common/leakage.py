"""The leakage summary `forge report` shows: sound groups whose exported items sit in more
than one split (view `leakage`, warehouse/views/51_leakage.sql; must be 0), by how the
group was linked, per task, and how many items were rejected as `cross_corpus_leak`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from pipeline.tasks.common.splits import CROSS_CORPUS_LEAK
from pipeline.tasks.common.streaming import scan_rows

if TYPE_CHECKING:
    from pipeline.storage import Warehouse


class LeakageSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups_crossing_splits: int = 0  # over all tasks: must be 0
    task_groups_crossing_splits: int = 0  # this task's groups that cross (within or across tasks)
    by_link: dict[str, int] = Field(default_factory=dict)  # crossing groups by link kinds
    by_task: dict[str, int] = Field(default_factory=dict)
    linked_clips_by_kind: dict[str, int] = Field(default_factory=dict)  # clips, all groups
    rejected_items: int = 0  # this task's items rejected as cross_corpus_leak

    def markdown(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in self.linked_clips_by_kind.items()) or "none"
        lines = [
            f"Sound groups in more than one split (all tasks; must be 0): "
            f"**{self.groups_crossing_splits}**; of this task: {self.task_groups_crossing_splits}",
            f"Items rejected as `{CROSS_CORPUS_LEAK}`: {self.rejected_items}",
            f"Clips linked to another clip, by link kind: {kinds}",
        ]
        if self.by_link:
            lines.append(
                "Crossing groups by link: " + ", ".join(f"{k} {n}" for k, n in self.by_link.items())
            )
            lines.append(
                "Crossing groups by task: " + ", ".join(f"{k} {n}" for k, n in self.by_task.items())
            )
        return "\n".join(f"- {line}" for line in lines)


def leakage_summary(warehouse: Warehouse, task_id: str) -> LeakageSummary:
    summary = LeakageSummary()
    summary.groups_crossing_splits = scan_rows(
        warehouse, "SELECT count(DISTINCT sound_group) AS n FROM leakage"
    )[0]["n"]
    summary.task_groups_crossing_splits = scan_rows(
        warehouse, "SELECT count(DISTINCT sound_group) AS n FROM leakage WHERE task = ?", [task_id]
    )[0]["n"]
    summary.by_link = {
        r["linked_by"]: r["n"]
        for r in scan_rows(
            warehouse,
            "SELECT linked_by, count(DISTINCT sound_group) AS n FROM leakage "
            "GROUP BY 1 ORDER BY 2 DESC, 1",
        )
    }
    summary.by_task = {
        r["task"]: r["n"]
        for r in scan_rows(
            warehouse, "SELECT task, count(*) AS n FROM leakage GROUP BY 1 ORDER BY 1"
        )
    }
    summary.linked_clips_by_kind = {
        r["kind"]: r["n"]
        for r in scan_rows(
            warehouse,
            "SELECT kind, count(*) AS n FROM (SELECT unnest(string_split(linked_by, ',')) AS kind "
            "FROM sound_groups) WHERE kind <> 'self' GROUP BY 1 ORDER BY 1",
        )
    }
    summary.rejected_items = scan_rows(
        warehouse,
        "SELECT count(*) AS n FROM items_current WHERE task = ? "
        "AND list_contains(validation_reasons, ?)",
        [task_id, CROSS_CORPUS_LEAK],
    )[0]["n"]
    return summary
