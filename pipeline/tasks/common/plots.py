"""PNG plots of one task's current items, written by `forge report` beside its Markdown.

Each `*_figure` function reads the warehouse and returns a matplotlib Figure (or None when
the task has nothing of that kind to plot, e.g. no measured pitch behind ReasonAQA), so
tests check axes, scales and lines on matplotlib's own objects; `write_task_plots` saves
the figures as `<out_dir>/<name>.png` and closes them. Matplotlib runs on the Agg backend
(no display needed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.tasks.common.records import SPLIT_ORDER

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

    from pipeline.storage import Warehouse

MIN_PITCH_GAP = 0.10  # the pitch task's minimum label gap (10 %), drawn on the gap plot
MAX_LABELS = 11
OTHER_LABELS = "(other labels)"
VALID_CURRENT = "FROM items_current WHERE task = ? AND validation_status = 'valid'"


def _figure(width: float = 7, height: float = 4) -> tuple[Figure, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    return figure, figure.add_subplot()


def label_balance_figure(warehouse: Warehouse, task: str) -> Figure | None:
    rows = warehouse.rows(
        f"SELECT split, coalesce(answer, '(none)') AS label, count(*) AS n {VALID_CURRENT} "
        "GROUP BY ALL",
        [task],
    )
    if not rows:
        return None
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["label"]] = totals.get(r["label"], 0) + r["n"]
    # Open vocabularies (animal names): the most frequent labels, the rest as one bar.
    top = sorted(totals, key=lambda label: (-totals[label], label))[:MAX_LABELS]
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        label = r["label"] if r["label"] in top else OTHER_LABELS
        counts[(r["split"], label)] = counts.get((r["split"], label), 0) + r["n"]
    labels = sorted(top) + ([OTHER_LABELS] if len(totals) > len(top) else [])
    splits = sorted({r["split"] for r in rows}, key=_split_key)
    figure, axis = _figure()
    width = 0.8 / len(labels)
    for index, label in enumerate(labels):
        axis.bar(
            [s + index * width for s in range(len(splits))],
            [counts.get((split, label), 0) for split in splits],
            width=width,
            label=label,
        )
    axis.set_xticks([s + 0.4 - width / 2 for s in range(len(splits))], splits)
    axis.set_xlabel("split")
    axis.set_ylabel("valid items")
    axis.set_title(f"{task}: label balance per split")
    axis.legend(fontsize=7, ncol=max(1, len(labels) // 10))
    return figure


def _task_pitch(warehouse: Warehouse, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Latest median f0 and voiced fraction of every clip the task's valid items use, as
    float arrays (NaN where unmeasured): 16 bytes a clip, where row dicts took ~200."""
    import numpy as np

    table = warehouse.query(
        "WITH used AS (SELECT DISTINCT unnest(clip_ids) AS clip_id "
        f"{VALID_CURRENT}) "
        "SELECT arg_max(p.median_f0_hz, p.measured_at)::DOUBLE AS f0, "
        "arg_max(p.voiced_fraction, p.measured_at)::DOUBLE AS voiced "
        "FROM clip_pitch p JOIN used USING (clip_id) GROUP BY p.clip_id",
        [task],
    )
    return tuple(  # type: ignore[return-value]
        np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
        for name in ("f0", "voiced")
    )


def pitch_figure(warehouse: Warehouse, task: str) -> Figure | None:
    import numpy as np

    f0, _voiced = _task_pitch(warehouse, task)
    values = f0[~np.isnan(f0) & (f0 != 0)]  # measured, non-zero pitch
    if not values.size:
        return None
    figure, axis = _figure()
    low, high = values.min(), values.max()
    bins = np.geomspace(low * 0.95, high * 1.05, 30)
    axis.hist(values, bins=bins, color="#4477aa")
    axis.set_xscale("log")
    axis.set_xlabel("median f0 (Hz, log scale)")
    axis.set_ylabel("clips")
    axis.set_title(f"{task}: measured pitch of the clips used ({len(values)})")
    return figure


def voiced_fraction_figure(warehouse: Warehouse, task: str) -> Figure | None:
    import numpy as np

    _f0, voiced = _task_pitch(warehouse, task)
    values = voiced[~np.isnan(voiced)]
    if not values.size:
        return None
    figure, axis = _figure()
    axis.hist(values, bins=20, range=(0, 1), color="#66aa55")
    axis.set_xlabel("voiced fraction")
    axis.set_ylabel("clips")
    axis.set_title(f"{task}: voiced fraction of the clips used ({len(values)})")
    return figure


def gap_figure(warehouse: Warehouse, task: str) -> Figure | None:
    import numpy as np

    # Arrays rather than row dicts: 9 bytes an item (pitch comparison has one per pair).
    table = warehouse.query(
        "SELECT gap, validation_status = 'valid' AS valid FROM ("
        "  SELECT TRY_CAST(json_extract(facts, '$.difference_percentage') AS DOUBLE) AS gap, "
        "  validation_status FROM items_current WHERE task = ? AND facts IS NOT NULL"
        ") WHERE gap IS NOT NULL",
        [task],
    )
    gaps = np.asarray(table.column("gap").to_numpy(zero_copy_only=False), dtype=np.float64)
    is_valid = np.asarray(table.column("valid").to_numpy(zero_copy_only=False), dtype=bool)
    valid, rejected = gaps[is_valid], gaps[~is_valid]
    if not valid.size and not rejected.size:
        return None

    figure, axis = _figure()
    # Gaps span orders of magnitude (wiki pairs reach 100x): log bins, zero gaps clipped.
    positive = gaps[gaps > 0]
    smallest = positive.min() if positive.size else MIN_PITCH_GAP
    largest = positive.max() if positive.size else MIN_PITCH_GAP
    low = min(smallest, MIN_PITCH_GAP) / 1.5
    bins = np.geomspace(low, max(largest, MIN_PITCH_GAP) * 1.5, 40)
    valid = np.maximum(valid, low)
    rejected = np.maximum(rejected, low)
    axis.set_xscale("log")
    if valid.size:
        axis.hist(valid, bins=bins, alpha=0.7, label=f"valid ({len(valid)})")
    if rejected.size:
        axis.hist(rejected, bins=bins, alpha=0.7, label=f"rejected ({len(rejected)})")
    axis.axvline(MIN_PITCH_GAP, color="red", linestyle="--", label="10 % minimum gap")
    axis.set_xlabel("pitch gap |p2 − p1| / p1 (log scale)")
    axis.set_ylabel("items")
    axis.set_title(f"{task}: pitch gap of the two clips")
    axis.legend(fontsize=8)
    return figure


def prompt_versions_figure(warehouse: Warehouse, task: str) -> Figure | None:
    rows = warehouse.rows(
        "SELECT prompt_name || '@' || prompt_version AS version, items, valid, rejected "
        "FROM prompt_versions WHERE task = ? ORDER BY first_created_at",
        [task],
    )
    if not rows:
        return None
    figure, axis = _figure()
    names = [r["version"] for r in rows]
    axis.barh(names, [r["valid"] for r in rows], label="valid", color="#4477aa")
    axis.barh(
        names,
        [r["rejected"] for r in rows],
        left=[r["valid"] for r in rows],
        label="rejected",
        color="#cc6677",
    )
    axis.set_xlabel("items")
    axis.set_ylabel("prompt version")
    axis.set_title(f"{task}: items per prompt version (all versions)")
    axis.legend(fontsize=8)
    figure.subplots_adjust(left=0.35)
    return figure


def rejection_reasons_figure(warehouse: Warehouse, task: str) -> Figure | None:
    rows = warehouse.rows(
        "SELECT reason, count(*) AS n FROM (SELECT unnest(validation_reasons) AS reason "
        "FROM items_current WHERE task = ? "
        "UNION ALL SELECT 'review: ' || coalesce(r.reason, '') FROM item_review_latest r "
        "JOIN items_current i USING (item_id) WHERE i.task = ? AND r.decision = 'reject') "
        "GROUP BY 1 ORDER BY n, reason",
        [task, task],
    )
    if not rows:
        return None
    figure, axis = _figure(7, max(3, 0.35 * len(rows) + 1))
    axis.barh([r["reason"] for r in rows], [r["n"] for r in rows], color="#cc6677")
    axis.set_xlabel("items")
    axis.set_ylabel("reason")
    axis.set_title(f"{task}: why items were rejected")
    figure.subplots_adjust(left=0.35)
    return figure


def tokens_figure(warehouse: Warehouse, task: str) -> Figure | None:
    """Tokens (and cost, where llm_calls records one) of the calls behind the task's items."""
    columns = {r["column_name"] for r in warehouse.rows("DESCRIBE llm_calls")}
    cost = "sum(c.cost_usd)" if "cost_usd" in columns else "NULL"
    rows = warehouse.rows(
        "SELECT i.prompt_name AS prompt, sum(c.prompt_tokens) AS prompt_tokens, "
        f"sum(c.completion_tokens) AS completion_tokens, {cost} AS cost "
        "FROM items_current i JOIN llm_calls c ON c.call_key = i.llm_call_key "
        "WHERE i.task = ? GROUP BY 1 ORDER BY 1",
        [task],
    )
    rows = [r for r in rows if r["prompt_tokens"] or r["completion_tokens"]]
    if not rows:
        return None
    figure, axis = _figure()
    names = [r["prompt"] for r in rows]
    axis.bar(names, [r["prompt_tokens"] or 0 for r in rows], label="prompt tokens")
    axis.bar(
        names,
        [r["completion_tokens"] or 0 for r in rows],
        bottom=[r["prompt_tokens"] or 0 for r in rows],
        label="completion tokens",
    )
    total_cost = sum(r["cost"] or 0 for r in rows)
    axis.set_xlabel("prompt")
    axis.set_ylabel("tokens")
    title = f"{task}: LLM tokens"
    axis.set_title(title + (f" (cost ${total_cost:.4f})" if total_cost else ""))
    axis.legend(fontsize=8)
    return figure


PLOTS: dict[str, Callable[[Warehouse, str], Figure | None]] = {
    "label_balance": label_balance_figure,
    "pitch_hz": pitch_figure,
    "pitch_gap": gap_figure,
    "voiced_fraction": voiced_fraction_figure,
    "prompt_versions": prompt_versions_figure,
    "rejection_reasons": rejection_reasons_figure,
    "llm_tokens": tokens_figure,
}


def write_task_plots(warehouse: Warehouse, task: str, out_dir: Path) -> list[Path]:
    """Save every plot that applies to `task` as `<out_dir>/<name>.png`; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in PLOTS.items():
        figure = make(warehouse, task)
        if figure is None:
            continue
        path = out_dir / f"{name}.png"
        save_png(figure, path)
        paths.append(path)
    return paths


def save_png(figure: Figure, path: Path) -> None:
    """Save atomically (temp file + rename): the viewer may be serving the old one."""
    import os

    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial.png")
    figure.savefig(tmp, dpi=100, bbox_inches="tight")
    os.replace(tmp, path)


def _split_key(split: str) -> int:
    return SPLIT_ORDER.index(split) if split in SPLIT_ORDER else 99


def plot_facts(path: Path) -> dict[str, Any]:
    """Name and size of a written plot, for reports and artifacts."""
    return {"plot": path.stem, "file": str(path), "bytes": path.stat().st_size}
