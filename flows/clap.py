"""CLAP flows: `clap-score` (raw scores for a task's items) and `clap-filter` (a policy).

Thin wiring over `pipeline.clap`; `forge score` and `forge filter` run these.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.ingest import current_run_id
from pipeline.clap.config import ClapConfig
from pipeline.clap.filter import FilterSummary, filter_task, make_policy
from pipeline.clap.stage import ClapScoreRun, score_or_mark_unscored
from pipeline.storage import Warehouse


@task(name="clap-score-task")
def score_task_run(
    warehouse: str, task_id: str, config: ClapConfig | None, run_id: str
) -> ClapScoreRun:
    return score_or_mark_unscored(Warehouse(warehouse), task_id, config, run_id)


@flow(name="clap-score")
def score_flow(
    task: str,
    warehouse: str | None = None,
    backend: str | None = None,
    checkpoint: str | None = None,
    batch_size: int | None = None,
    device: str | None = None,
) -> ClapScoreRun:
    """Score every current valid item of `task` (or mark them unscored if no CLAP is set)."""
    config = ClapConfig.from_env(
        backend=backend, checkpoint=checkpoint, batch_size=batch_size, device=device
    )
    result = score_task_run(str(Warehouse(warehouse).root), task, config, current_run_id())
    logger = get_run_logger()
    if result.score is None:
        logger.warning("%s: %s", task, result.message)
        create_table_artifact(
            key="clap-score",
            table=[{"task": task, "status": "not run", "reason": result.message}],
            description="CLAP scoring was not run.",
        )
    else:
        s = result.score
        logger.info(
            "%s: %d items scored, %d unscored; clips %d computed, %d cached, %d failed",
            task,
            s.items_scored,
            s.items_unscored,
            s.clips_computed,
            s.clips_cached,
            s.clips_failed,
        )
        create_table_artifact(
            key="clap-score",
            table=[s.model_dump(mode="json", exclude={"unscored_by_reason"})],
            description=f"CLAP scores for {task} ({s.backend}: {s.checkpoint}).",
        )
    return result


@flow(name="clap-filter")
def filter_flow(
    task: str,
    policy: str | None = None,
    threshold: float | None = None,
    margin: float | None = None,
    percentile: float | None = None,
    k: int | None = None,
    warehouse: str | None = None,
) -> FilterSummary:
    """Apply a filter policy to the stored scores of `task` (appends to item_filters)."""
    params = {
        name: value
        for name, value in (
            ("threshold", threshold),
            ("margin", margin),
            ("percentile", percentile),
            ("k", k),
        )
        if value is not None
    }
    summary = filter_task(
        Warehouse(warehouse), task, make_policy(policy, **params), current_run_id()
    )
    get_run_logger().info(
        "%s (%s): %d kept, %d dropped, %d unscored",
        task,
        summary.policy,
        summary.kept,
        summary.dropped,
        summary.unscored,
    )
    create_table_artifact(
        key="clap-filter",
        table=[summary.model_dump(mode="json", exclude={"unscored_by_reason", "policy_params"})],
        description=f"CLAP filter decisions for {task}.",
    )
    return summary
