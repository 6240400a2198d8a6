"""The CLAP step as one call: score a task if a checkpoint is configured, else say so.

With no checkpoint configured (and none obtainable) the task's current items are marked
`unscored` with the one-line how-to (`NOT_CONFIGURED`) and the caller's run goes on.
"""

from __future__ import annotations

from pydantic import BaseModel

from pipeline.clap.config import NOT_CONFIGURED, ClapConfig
from pipeline.clap.filter import FilterSummary, mark_unscored
from pipeline.clap.score import ScoreSummary, score_task
from pipeline.clap.scorer import load_scorer
from pipeline.storage import Warehouse


class ClapScoreRun(BaseModel):
    task: str
    configured: bool
    message: str | None = None
    score: ScoreSummary | None = None
    unscored: FilterSummary | None = None


def score_or_mark_unscored(
    warehouse: Warehouse, task: str, config: ClapConfig | None, run_id: str
) -> ClapScoreRun:
    """Score `task` with the configured CLAP; without one, mark its items unscored.

    A configured checkpoint that cannot be found still raises MissingArtifactError: a
    wrong path is a mistake to fix, not a reason to skip scoring.
    """
    if config is None:
        return ClapScoreRun(
            task=task,
            configured=False,
            message=NOT_CONFIGURED,
            unscored=mark_unscored(warehouse, task, NOT_CONFIGURED, run_id),
        )
    scorer = load_scorer(config)
    return ClapScoreRun(
        task=task, configured=True, score=score_task(warehouse, task, scorer, run_id)
    )
