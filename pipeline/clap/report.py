"""CLAP sections for reports: score histograms (PNG) and kept/dropped counts per policy.

`forge report` (and the build's report stage) call `clap_report(warehouse, task, out_dir)`,
which returns Markdown referencing the PNGs it wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.storage import Warehouse

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def score_histogram_figures(warehouse: Warehouse, task: str) -> list[tuple[str, Figure]]:
    """One figure per (backend, checkpoint) scored for `task`: generated text vs caption vs
    other scores, on the observed score range (scales differ by checkpoint), with the
    threshold of the latest policy run on that checkpoint drawn and its kept/dropped counts
    in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = warehouse.rows(
        "SELECT backend, checkpoint, CASE WHEN is_primary THEN 'generated text' "
        "WHEN text_role LIKE 'caption%' THEN 'clip caption' ELSE 'other texts' END AS kind, "
        "score FROM clap_scores WHERE task = ? AND score IS NOT NULL",
        [task],
    )
    groups: dict[tuple[str, str], dict[str, list[float]]] = {}
    for row in rows:
        key = (row["backend"], row["checkpoint"])
        groups.setdefault(key, {}).setdefault(row["kind"], []).append(row["score"])
    policies = {(c["backend"], c["checkpoint"]): c for c in _latest_policy(warehouse, task)}
    figures = []
    for index, ((backend, checkpoint), kinds) in enumerate(sorted(groups.items()), start=1):
        figure = Figure(figsize=(7, 4))
        axis = figure.add_subplot()
        values = [v for scores in kinds.values() for v in scores]
        low, high = min(values), max(values)
        pad = max((high - low) * 0.05, 1e-3)
        for kind in ("generated text", "clip caption", "other texts"):
            if kinds.get(kind):
                axis.hist(
                    kinds[kind],
                    bins=40,
                    range=(low - pad, high + pad),
                    alpha=0.55,
                    label=f"{kind} ({len(kinds[kind])})",
                )
        policy = policies.get((backend, checkpoint))
        threshold = _threshold(policy)
        if policy is not None and threshold is not None:
            axis.axvline(
                threshold,
                color="red",
                linestyle="--",
                label=f"{policy['policy']} threshold {threshold:g}: kept {policy['kept']}, "
                f"dropped {policy['dropped']}",
            )
        axis.set_xlabel("CLAP cosine score (observed range)")
        axis.set_ylabel("pairs")
        axis.set_title(f"{task}: {backend} {Path(checkpoint).name}", fontsize=10)
        axis.legend(fontsize=8)
        figure.tight_layout()
        figures.append((f"clap_scores_{task}_{index}", figure))
    return figures


def _latest_policy(warehouse: Warehouse, task: str) -> list[dict[str, Any]]:
    """Per checkpoint: the latest policy run's name, params and kept/dropped counts."""
    return [
        c
        for c in filter_counts(warehouse, task)
        if c["checkpoint"]
        and c["policy_params"]
        == warehouse.rows(
            "SELECT arg_max(policy_params, decided_at) AS p FROM item_filters "
            "WHERE task = ? AND checkpoint = ?",
            [task, c["checkpoint"]],
        )[0]["p"]
    ]


def _threshold(policy: dict[str, Any] | None) -> float | None:
    if policy is None:
        return None
    try:
        value = json.loads(policy["policy_params"] or "{}").get("threshold")
    except (json.JSONDecodeError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def score_histograms(warehouse: Warehouse, task: str, out_dir: Path) -> list[Path]:
    """The score histograms saved as `<out_dir>/clap_scores_<task>_<n>.png`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, figure in score_histogram_figures(warehouse, task):
        path = out_dir / f"{name}.png"
        figure.savefig(path, dpi=100)
        paths.append(path)
    return paths


def filter_counts(warehouse: Warehouse, task: str | None = None) -> list[dict[str, Any]]:
    """Kept / dropped / unscored of the latest run of each (task, policy, params)."""
    return warehouse.rows(
        "WITH latest AS (SELECT task, policy, policy_params, arg_max(run_id, decided_at) AS run_id "
        "FROM item_filters WHERE task = coalesce(?, task) GROUP BY ALL) "
        "SELECT f.task, f.policy, f.policy_params, any_value(f.backend) AS backend, "
        "any_value(f.checkpoint) AS checkpoint, "
        "count(*) FILTER (WHERE filter_status = 'kept') AS kept, "
        "count(*) FILTER (WHERE filter_status = 'dropped') AS dropped, "
        "count(*) FILTER (WHERE filter_status = 'unscored') AS unscored "
        "FROM item_filters f JOIN latest USING (task, policy, policy_params, run_id) "
        "GROUP BY ALL ORDER BY f.task, f.policy, f.policy_params",
        [task],
    )


def clap_report(warehouse: Warehouse, task: str, out_dir: Path) -> str:
    """Markdown: counts per policy and links to the histograms written under `out_dir`."""
    lines = [f"### CLAP filter: {task}", ""]
    counts = filter_counts(warehouse, task)
    if counts:
        lines += [
            "| policy | params | backend | checkpoint | kept | dropped | unscored |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in counts:
            lines.append(
                f"| {c['policy']} | `{c['policy_params']}` | {c['backend'] or '-'} | "
                f"{c['checkpoint'] or '-'} | {c['kept']} | {c['dropped']} | {c['unscored']} |"
            )
    else:
        lines.append("_no filter decisions yet_")
    reasons = warehouse.rows(
        "SELECT filter_reason, count(*) AS n FROM items_current WHERE task = ? AND "
        "validation_status = 'valid' AND filter_status = 'unscored' GROUP BY 1 ORDER BY n DESC LIMIT 5",
        [task],
    )
    if reasons:
        lines += ["", "Unscored, by reason:", ""]
        lines += [f"- {r['n']}: {r['filter_reason'] or 'never filtered'}" for r in reasons]
    for path in score_histograms(warehouse, task, out_dir):
        lines += ["", f"![CLAP scores]({path.name})"]
    return "\n".join(lines) + "\n"
