"""`report_task`: the quality numbers of one task's current items, computed with SQL.

Everything here is read from the views `items_current` (current generation) so the same
numbers can be re-derived by hand with `forge sql`. Counts and the gap histogram are SQL
aggregates and the task's extra sections read streamed rows (pipeline.tasks.common.
streaming), so a report's memory does not grow with the number of items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from pipeline.tasks.common.generate import get_task
from pipeline.tasks.common.leakage import LeakageSummary, leakage_summary
from pipeline.tasks.common.records import SPLIT_ORDER
from pipeline.tasks.common.streaming import SPLIT_RANK_SQL, SortedRows, scan_rows
from pipeline.tasks.common.validators import DUPLICATE_EXACT, DUPLICATE_NORMALIZED

if TYPE_CHECKING:
    from pipeline.storage import Warehouse

NORMALIZED_SQL = "regexp_replace(strip_accents(lower({expr})), '[^a-z0-9]+', '', 'g')"
GAP_BINS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 4.0)
# Index of the last bin whose lower edge the gap reaches (below the first edge: bin 0).
GAP_BIN_SQL = (
    "CASE "
    + " ".join(
        f"WHEN gap >= {low!r} THEN {index}" for index, low in reversed(list(enumerate(GAP_BINS)))
    )
    + " ELSE 0 END"
)

CROSS_SPLIT_DUPLICATES_SQL = """
SELECT count(*) AS n FROM (
    SELECT {normalized} AS text
    FROM items_current
    WHERE task = ? AND validation_status = 'valid' AND {expr} IS NOT NULL
    GROUP BY 1
    HAVING text <> '' AND count(DISTINCT split) > 1
)
"""


class SplitReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split: str
    items: int = 0
    valid: int = 0
    rejected: int = 0
    duplicates_exact: int = 0
    duplicates_normalized: int = 0
    unlabeled_valid: int = 0  # valid items without an answer: must stay 0
    labels: dict[str, int] = Field(default_factory=dict)
    rejects_by_reason: dict[str, int] = Field(default_factory=dict)
    gap_histogram: dict[str, int] = Field(default_factory=dict)  # valid items by label gap


class TaskReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str
    generation_versions: list[str] = Field(default_factory=list)
    splits: list[SplitReport] = Field(default_factory=list)
    cross_split_duplicates: int = 0
    leakage: LeakageSummary = Field(default_factory=LeakageSummary)  # sounds across splits
    extra_sections: list[tuple[str, str]] = Field(default_factory=list)

    def split(self, name: str) -> SplitReport:
        return next(s for s in self.splits if s.split == name)

    def markdown(self) -> str:
        lines = [f"# Task report: {self.task}", ""]
        lines.append(f"Generation versions: {', '.join(self.generation_versions) or 'none'}")
        lines.append(f"Cross-split duplicates among valid items: **{self.cross_split_duplicates}**")
        lines += [
            "",
            "| split | items | valid | rejected | dup exact | dup normalized | unlabeled |",
        ]
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for s in self.splits:
            lines.append(
                f"| {s.split} | {s.items} | {s.valid} | {s.rejected} | {s.duplicates_exact} "
                f"| {s.duplicates_normalized} | {s.unlabeled_valid} |"
            )
        lines += ["", "## Label balance (valid items)", ""]
        for s in self.splits:
            total = sum(s.labels.values()) or 1
            shares = ", ".join(
                f"{label} {n} ({100 * n / total:.1f} %)" for label, n in s.labels.items()
            )
            lines.append(f"- {s.split}: {shares or 'no valid items'}")
        lines += ["", "## Rejects by reason", ""]
        for s in self.splits:
            reasons = ", ".join(f"{r} {n}" for r, n in s.rejects_by_reason.items())
            lines.append(f"- {s.split}: {reasons or 'none'}")
        if any(s.gap_histogram for s in self.splits):
            lines += ["", "## Label gap histogram (facts.difference_percentage, valid items)", ""]
            for s in self.splits:
                if not s.gap_histogram:
                    continue
                lines.append(f"{s.split}:")
                peak = max(s.gap_histogram.values()) or 1
                for label, n in s.gap_histogram.items():
                    bar = "#" * round(30 * n / peak)
                    lines.append(f"    {label:>12} | {n:6d} {bar}")
        for title, body in self.extra_sections:
            lines += ["", f"## {title}", "", body]
        return "\n".join(lines) + "\n"


def gap_bin_label(low: float, high: float | None) -> str:
    return f">= {low:.0%}" if high is None else f"{low:.0%}-{high:.0%}"


def report_task(warehouse: Warehouse, task_id: str) -> TaskReport:
    task = get_task(task_id)
    report = TaskReport(task=task_id)
    report.generation_versions = [
        r["generation_version"]
        for r in scan_rows(
            warehouse,
            "SELECT DISTINCT generation_version FROM items_current WHERE task = ? ORDER BY 1",
            [task_id],
        )
    ]
    counts = scan_rows(
        warehouse,
        """
        SELECT split, count(*) AS items,
               count(*) FILTER (WHERE validation_status = 'valid') AS valid,
               count(*) FILTER (WHERE list_contains(validation_reasons, ?)) AS dup_exact,
               count(*) FILTER (WHERE list_contains(validation_reasons, ?)) AS dup_normalized,
               count(*) FILTER (WHERE validation_status = 'valid'
                                AND (answer IS NULL OR trim(answer) = '')) AS unlabeled
        FROM items_current WHERE task = ? GROUP BY split
        """,
        [DUPLICATE_EXACT, DUPLICATE_NORMALIZED, task_id],
    )
    by_split = {
        r["split"]: SplitReport(
            split=r["split"],
            items=r["items"],
            valid=r["valid"],
            rejected=r["items"] - r["valid"],
            duplicates_exact=r["dup_exact"],
            duplicates_normalized=r["dup_normalized"],
            unlabeled_valid=r["unlabeled"],
        )
        for r in counts
    }
    if task.label_field:
        for r in scan_rows(
            warehouse,
            f"SELECT split, {task.label_field} AS label, count(*) AS n FROM items_current "
            "WHERE task = ? AND validation_status = 'valid' GROUP BY ALL ORDER BY split, n DESC, label",
            [task_id],
        ):
            by_split[r["split"]].labels[str(r["label"])] = r["n"]
    for r in scan_rows(
        warehouse,
        "SELECT split, reason, count(*) AS n FROM "
        "(SELECT split, unnest(validation_reasons) AS reason FROM items_current WHERE task = ?) "
        "GROUP BY ALL ORDER BY split, n DESC, reason",
        [task_id],
    ):
        by_split[r["split"]].rejects_by_reason[r["reason"]] = r["n"]
    for r in scan_rows(
        warehouse,
        f"""
        SELECT split, {GAP_BIN_SQL} AS bin, count(*) AS n FROM (
            SELECT split,
                   TRY_CAST(json_extract(facts, '$.difference_percentage') AS DOUBLE) AS gap
            FROM items_current
            WHERE task = ? AND validation_status = 'valid' AND facts IS NOT NULL
        ) WHERE gap IS NOT NULL GROUP BY ALL ORDER BY ALL
        """,
        [task_id],
    ):
        histogram = by_split[r["split"]].gap_histogram
        if not histogram:
            histogram.update({_bin(i): 0 for i in range(len(GAP_BINS))})
        histogram[_bin(r["bin"])] += r["n"]
    report.splits = sorted(
        by_split.values(),
        key=lambda s: SPLIT_ORDER.index(s.split) if s.split in SPLIT_ORDER else 99,
    )
    report.cross_split_duplicates = cross_split_duplicates(warehouse, task_id, task.dedup_sql)
    # Streamed: a task's sections read each valid row once (and may ask len()); in split
    # order then item_id, so per-split lines come out in the same order on every run.
    rows = SortedRows(
        warehouse,
        "SELECT * FROM items_current WHERE task = ? AND validation_status = 'valid'",
        [task_id],
        order_terms=(SPLIT_RANK_SQL, "split", "item_id"),
    )
    report.extra_sections = task.report_sections(rows)  # type: ignore[arg-type]
    report.leakage = leakage_summary(warehouse, task_id)
    report.extra_sections.append(("Sound leakage across splits", report.leakage.markdown()))
    return report


def cross_split_duplicates(warehouse: Warehouse, task_id: str, expr: str = "input") -> int:
    """Normalised texts that are valid in more than one split (must be 0)."""
    sql = CROSS_SPLIT_DUPLICATES_SQL.format(normalized=NORMALIZED_SQL.format(expr=expr), expr=expr)
    return int(scan_rows(warehouse, sql, [task_id])[0]["n"])


def _bin(index: int) -> str:
    high = GAP_BINS[index + 1] if index + 1 < len(GAP_BINS) else None
    return gap_bin_label(GAP_BINS[index], high)
