"""CLAP stages: score the current valid items of each task, then filter them by a policy.

Scores land in `clap_scores` and decisions in `item_filters` (pipeline.clap); one Prefect
task per dataset task, submitted to the flow's task runner (local threads or Dask). The
scorer is loaded inside the task through the library's per-process cache, so each
worker loads it once. Without a configured checkpoint, scoring is not run (stated in the
stage's artifact and log) and the filter marks items `unscored` with that reason.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from flows.runs import current_run_id
from flows.stages.artifacts import StageReport, publish, summary_row
from flows.stages.audio import _not_configured
from flows.stages.cache import (
    code_fingerprint,
    key_from_parameter,
    results_dir,
    stage_key,
    tables_fingerprint,
)
from pipeline.storage import Warehouse

CLAP_CODE = ("pipeline/clap", "pipeline/audio")
SCORE_READS = ("item_records", "clip_embeddings")
FILTER_READS = ("item_records", "clap_scores")


@task(name="score-task", cache_key_fn=key_from_parameter, persist_result=True)
def score_one(warehouse: str, task_id: str, clap_config: Any, run_id: str, cache_key: str) -> Any:
    from pipeline.clap import load_scorer
    from pipeline.clap.score import score_task

    return score_task(Warehouse(warehouse), task_id, load_scorer(clap_config), run_id)


@flow(name="stage-score")
def score_stage(
    warehouse: str, run_id: str | None, tasks: list[str], clap_config: Any | None
) -> StageReport:
    """Score the tasks' current valid items with `clap_config` (None: not run, said so; the
    filter stage then marks the items unscored). `run_id` None: this flow run's id."""
    wh = Warehouse(warehouse)
    run_id = run_id or current_run_id()
    if clap_config is None:
        return _not_configured("score")
    runner = score_one.with_options(result_storage=results_dir(wh))
    futures = []
    for task_id in tasks:
        key = stage_key(
            "score",
            wh,
            task=task_id,
            clap=clap_config,
            items=tables_fingerprint(wh, ("item_records",), f"task={task_id}/"),
            embeddings=tables_fingerprint(wh, ("clip_embeddings",)),
            code=code_fingerprint(*CLAP_CODE),
        )
        futures.append(runner.submit(str(wh.root), task_id, clap_config, run_id, key))
    summaries = [f.result() for f in futures]
    report = StageReport(
        stage="score",
        rows=[summary_row(s, stage="score") for s in summaries],
        counts={
            s.task: {"scored": s.items_scored, "unscored": s.items_unscored} for s in summaries
        },
        summaries=summaries,
    )
    return publish(
        report, f"CLAP scores per task ({clap_config.backend}: {clap_config.checkpoint})."
    )


@task(name="filter-task", cache_key_fn=key_from_parameter, persist_result=True)
def filter_one(
    warehouse: str, task_id: str, policy: Any, configured: bool, run_id: str, cache_key: str
) -> Any:
    wh = Warehouse(warehouse)
    if not configured:  # no scores to apply a policy to: every item unscored, with the how-to
        from pipeline.clap.config import NOT_CONFIGURED
        from pipeline.clap.filter import mark_unscored

        return mark_unscored(wh, task_id, NOT_CONFIGURED, run_id)
    from pipeline.clap.filter import filter_task

    return filter_task(wh, task_id, policy, run_id)


@flow(name="stage-filter")
def filter_stage(
    warehouse: str,
    run_id: str | None,
    tasks: list[str],
    policy: Any,
    clap_config: Any | None,
    scored: bool | None = None,
) -> StageReport:
    """Apply `policy` to the tasks' CLAP scores (the latest scoring run of each task).

    `scored` says whether there are scores to filter; default: whether `clap_config` is set
    (a build without CLAP marks every item `unscored` with the how-to, even if an older run
    left scores). `forge filter` passes True: the policy applies to the stored scores.
    `run_id` None: this flow run's id."""
    wh = Warehouse(warehouse)
    run_id = run_id or current_run_id()
    configured = clap_config is not None if scored is None else scored
    runner = filter_one.with_options(result_storage=results_dir(wh))
    summaries = []
    for task_id in tasks:
        key = stage_key(
            "filter",
            wh,
            task=task_id,
            policy=policy,
            clap=clap_config,
            items=tables_fingerprint(wh, ("item_records",), f"task={task_id}/"),
            scores=tables_fingerprint(wh, ("clap_scores",), f"task={task_id}"),
            scored=configured,
            code=code_fingerprint(*CLAP_CODE),
        )
        args = (str(wh.root), task_id, policy, configured, run_id, key)
        summary = runner(*args)
        if summary.items and summary.run_id != latest_decision_run(wh, task_id):
            # Cached, but another run (another policy) has decided since: decide again, or
            # `items` would keep showing that other run's decisions.
            summary = runner.with_options(refresh_cache=True)(*args)
        summaries.append(summary)
    report = StageReport(
        stage="filter",
        rows=[summary_row(s, stage="filter") for s in summaries],
        counts={s.task: filter_counts(s) for s in summaries},
        summaries=summaries,
    )
    return publish(report, "CLAP filter decisions per task: kept / dropped / unscored by reason.")


def latest_decision_run(warehouse: Warehouse, task_id: str) -> str | None:
    """The run id of the task's latest filter decisions (what `items` shows now)."""
    rows = warehouse.rows(
        "SELECT run_id FROM item_filters WHERE task = ? ORDER BY decided_at DESC LIMIT 1",
        [task_id],
    )
    return rows[0]["run_id"] if rows else None


def make_policy(name: str | None, params: dict[str, Any]) -> Any:
    """The policy object `filter_task` takes, from a name and its parameters."""
    from pipeline.clap.filter import make_policy as build

    return build(name, **params)


def filter_counts(summary: Any) -> dict[str, Any]:
    data = summary.model_dump(mode="json")
    return {k: v for k, v in data.items() if k in ("kept", "dropped", "unscored", "items")}
