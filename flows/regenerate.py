"""The `regenerate` flow: one task (optionally one split) with new prompt templates.

Renders with the templates in `prompts_dir` (they override the defaults by name), which
gives new prompt versions and so a new `generation_version`: the new items are written
beside the old ones, never over them. Validation runs inside generation; CLAP scoring
and filtering then run for this task, where cached scores of unchanged items are reused,
so only the new items cost work. The new version becomes current (`items.is_current`)
when its completion manifest is written, for every split of the task at once; with
`split`, the other splits keep their current version (see
pipeline.tasks.common.completion). A failed generation leaves the previous version
current. `item_versions`, `version_diff(...)` and `version_changes(...)` compare versions
(warehouse/views/30_versions.sql).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field

from flows.build import registered_tasks
from flows.runners import task_runner
from flows.runs import current_run_id, finish_run, start_record, write_run
from flows.stages.artifacts import StageReport
from flows.stages.audio import embeddings_stage
from flows.stages.clap import filter_stage, make_policy, score_stage
from flows.stages.generate import GenerateSettings, generate_stage
from flows.stages.params import RegenerateParams
from pipeline.errors import ForgeError
from pipeline.storage import Warehouse


class RegenerateSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    task: str
    split: str | None
    previous_versions: dict[str, str] = Field(default_factory=dict)  # split -> version
    current_versions: dict[str, str] = Field(default_factory=dict)
    stages: dict[str, StageReport] = Field(default_factory=dict)


def current_versions(wh: Warehouse, task: str) -> dict[str, str]:
    rows = wh.rows(
        "SELECT DISTINCT split, generation_version FROM items_current WHERE task = ?", [task]
    )
    return {r["split"]: r["generation_version"] for r in rows}


@flow(name="regenerate", log_prints=True)
def regenerate_flow(params: RegenerateParams) -> RegenerateSummary:
    """Regenerate `params.task` with the templates in `params.prompts_dir`."""
    if params.task not in registered_tasks():
        raise ForgeError(f"unknown task {params.task!r}; registered: {registered_tasks()}")
    if not Path(params.prompts_dir).is_dir():
        raise ForgeError(f"--prompts {params.prompts_dir}: not a folder of templates")
    wh = Warehouse(params.warehouse)
    wh.ensure_catalog()
    run_id = current_run_id()
    llm_config = params.llm.config()
    clap_config = params.clap.config()
    record = start_record(run_id, "regenerate", params, [params.task], llm_config, clap_config)
    write_run(wh, record)
    summary = RegenerateSummary(
        run_id=run_id,
        task=params.task,
        split=params.split,
        previous_versions=current_versions(wh, params.task),
    )
    settings = GenerateSettings(
        seed=params.seed,
        prompts_dir=str(Path(params.prompts_dir).resolve()),
        splits=[params.split] if params.split else None,
        retries=params.retries,
    )
    tasks = [params.task]
    heavy = task_runner(params.runner)
    root = str(wh.root)
    try:
        summary.stages["generate"] = generate_stage(root, run_id, tasks, llm_config, settings)
        summary.stages["embeddings"] = embeddings_stage.with_options(task_runner=heavy)(
            root, run_id, tasks, clap_config
        )
        summary.stages["score"] = score_stage.with_options(task_runner=heavy)(
            root, run_id, tasks, clap_config
        )
        summary.stages["filter"] = filter_stage(
            root,
            run_id,
            tasks,
            make_policy(params.filter.policy, params.filter.params),
            clap_config,
        )
    except BaseException as exc:
        finish_run(wh, record, "failed", _counts(summary), exc)
        raise
    summary.current_versions = current_versions(wh, params.task)
    finish_run(wh, record, "completed", _counts(summary))
    return summary


def _counts(summary: RegenerateSummary) -> dict:
    return {
        "previous_versions": summary.previous_versions,
        **{name: report.counts for name, report in summary.stages.items()},
    }
