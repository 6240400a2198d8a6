"""CLAP sections for reports: score histograms (PNG) and kept/dropped counts per policy.

`forge report` (and the build's report stage) call `clap_report(warehouse, task, out_dir)`,
which returns Markdown referencing the PNGs it wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.storage import Warehouse


def score_histograms(warehouse: Warehouse, task: str, out_dir: Path) -> list[Path]:
    """One PNG per (backend, checkpoint) scored for `task`: primary vs caption vs other scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, ((backend, checkpoint), kinds) in enumerate(sorted(groups.items()), start=1):
        figure, axis = plt.subplots(figsize=(7, 4))
        for kind in ("generated text", "clip caption", "other texts"):
            if kinds.get(kind):
                axis.hist(
                    kinds[kind],
                    bins=40,
                    range=(-1, 1),
                    alpha=0.55,
                    label=f"{kind} ({len(kinds[kind])})",
                )
        axis.set_xlabel("CLAP cosine score")
        axis.set_ylabel("pairs")
        axis.set_title(f"{task}: {backend} {Path(checkpoint).name}", fontsize=10)
        axis.legend(fontsize=8)
        figure.tight_layout()
        path = out_dir / f"clap_scores_{task}_{index}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
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
