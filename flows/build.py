"""The `build` flow: every stage in order, each a subflow, for a chosen set of tasks.

    ingest → pitch → generate (per task) → embeddings → score → filter → export → report
           → train (optional: the `train` deployment when the server has it, else a subflow)

Split assignment and dedup happen inside generate (pipeline.tasks). Every stage caches its
tasks on what they read (see flows.stages.cache), so rerunning `build` with nothing
changed does no repeated work, and rerunning after a failure redoes only what failed.
The run is recorded in the `runs` table, and the build publishes a Markdown artifact that
links every stage's artifacts.

A task that ends generation with zero valid current items does not stop the others: the
stages after generate (embeddings, score, filter, export, report) and training run for the
tasks that have items, the empty ones are listed in `BuildSummary.incomplete` (and in the
run's counts and the build artifact), and `BuildSummary.exit_code` is
INCOMPLETE_EXIT_CODE (3) instead of 0: the exit code for `forge build` and `forge run`.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, ConfigDict, Field

from flows.runners import task_runner
from flows.runs import current_run_id, finish_run, start_record, write_run
from flows.stages.artifacts import StageReport, artifact_link
from flows.stages.audio import embeddings_stage, pitch_stage, sound_groups_stage
from flows.stages.clap import filter_stage, score_stage
from flows.stages.generate import generate_stage
from flows.stages.ingest import ingest_stage
from flows.stages.params import STAGES, BuildParams
from flows.stages.publish import export_stage, report_stage
from flows.stages.train import launch_training
from pipeline.errors import ForgeError
from pipeline.storage import Warehouse


class BuildSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    warehouse: str
    tasks: list[str]
    stages: dict[str, StageReport] = Field(default_factory=dict)
    training: dict[str, Any] | None = None
    incomplete: dict[str, str] = Field(
        default_factory=dict, description="task -> why it has nothing to export"
    )

    @property
    def exit_code(self) -> int:
        """0 when every task has items; INCOMPLETE_EXIT_CODE when some task has none."""
        return INCOMPLETE_EXIT_CODE if self.incomplete else 0


INCOMPLETE_EXIT_CODE = 3  # the build finished, but some task has no valid items
# Stages that work on generated items: they skip tasks that have none.
ITEM_STAGES = ("embeddings", "score", "filter", "export", "report")


def tasks_without_valid_items(wh: Warehouse, tasks: list[str]) -> dict[str, str]:
    """task -> why it cannot be exported (no current items, or none of them valid)."""
    if not tasks:
        return {}
    rows = wh.rows(
        "SELECT task, count(*) AS items, "
        "count(*) FILTER (WHERE validation_status = 'valid') AS valid "
        "FROM items_current WHERE list_contains(?, task) GROUP BY task",
        [tasks],
    )
    found = {row["task"]: row for row in rows}
    empty: dict[str, str] = {}
    for task_id in tasks:
        row = found.get(task_id)
        if row is None:
            empty[task_id] = "no current items"
        elif not row["valid"]:
            empty[task_id] = f"0 valid of {row['items']} current items"
    return empty


def registered_tasks() -> list[str]:
    from pipeline.tasks import TASKS

    return sorted(TASKS)


def check_params(params: BuildParams) -> list[str]:
    """The tasks to build; unknown tasks or stages are errors before anything runs."""
    unknown_stages = [s for s in params.stages if s not in STAGES]
    if unknown_stages:
        raise ForgeError(f"unknown stages {unknown_stages}; choose from {', '.join(STAGES)}")
    known = registered_tasks()
    tasks = known if params.tasks is None else list(params.tasks)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ForgeError(f"unknown tasks {unknown}; registered: {', '.join(known) or 'none'}")
    return tasks


@flow(name="build", log_prints=True)
def build_flow(params: BuildParams | None = None) -> BuildSummary:
    """Build the datasets: ingest, features, generation, CLAP scoring/filtering, exports,
    reports, and optionally training. Parameters: see flows.params.BuildParams."""
    params = params or BuildParams()
    tasks = check_params(params)
    wh = Warehouse(params.warehouse)
    wh.ensure_catalog()
    run_id = current_run_id()
    llm_config = params.llm.config()
    clap_config = params.clap.config()
    record = start_record(run_id, "build", params, tasks, llm_config, clap_config)
    write_run(wh, record)
    summary = BuildSummary(run_id=run_id, warehouse=str(wh.root), tasks=tasks)
    try:
        run_stages(params, wh, run_id, tasks, llm_config, clap_config, summary)
        if params.train.enabled:
            summary.training = training_skipped(summary) or launch_training(
                params.train, wh, run_id
            )
    except BaseException as exc:
        finish_run(wh, record, "failed", stage_counts(summary), exc)
        publish_build_summary(summary, failed=exc)
        raise
    finish_run(wh, record, "completed", stage_counts(summary))
    publish_build_summary(summary)
    return summary


def training_skipped(summary: BuildSummary) -> dict[str, Any] | None:
    """Why training is skipped: every AuditoryBench task of this build has no valid items
    (AudioBERT trains on those); None when training should run."""
    built = [t for t in summary.tasks if t.startswith("auditorybench-")]
    if built and all(t in summary.incomplete for t in built):
        return {"mode": "skipped", "reason": f"no valid items for {', '.join(built)}"}
    return None


def run_stages(
    params: BuildParams,
    wh: Warehouse,
    run_id: str,
    tasks: list[str],
    llm_config: Any,
    clap_config: Any,
    summary: BuildSummary,
) -> None:
    root = str(wh.root)
    wanted = set(params.stages)
    heavy = task_runner(params.runner)
    log = get_run_logger()
    checked = False
    for stage in STAGES:
        if stage not in wanted:
            continue
        if stage in ITEM_STAGES and not checked:
            checked = True
            summary.incomplete = tasks_without_valid_items(wh, tasks)
            for task_id, why in summary.incomplete.items():
                log.warning("%s: %s; its later stages are skipped", task_id, why)
            tasks = [t for t in tasks if t not in summary.incomplete]
        log.info("stage %s", stage)
        if stage == "ingest":
            report = ingest_stage(root, run_id, params.sources)
            grouping = sound_groups_stage(root, run_id)  # splits follow sounds (see splits)
            report.counts["sound_groups"] = grouping.counts
            report.artifact_ids.update(grouping.artifact_ids)
        elif stage == "pitch":
            report = pitch_stage.with_options(task_runner=heavy)(root, run_id, tasks)
        elif stage == "generate":
            report = generate_stage(root, run_id, tasks, llm_config, params.generate)
        elif stage == "embeddings":
            report = embeddings_stage.with_options(task_runner=heavy)(
                root, run_id, tasks, clap_config
            )
        elif stage == "score":
            report = score_stage.with_options(task_runner=heavy)(root, run_id, tasks, clap_config)
        elif stage == "filter":
            report = filter_stage(root, run_id, tasks, filter_policy(params), clap_config)
        elif stage == "export":
            report = export_stage(root, tasks, params.export)
        else:
            report = report_stage(root, tasks)
        summary.stages[stage] = report


def filter_policy(params: BuildParams) -> Any:
    """The filter policy object pipeline.clap.filter expects, from the build parameters."""
    from flows.stages.clap import make_policy

    return make_policy(params.filter.policy, params.filter.params)


def stage_counts(summary: BuildSummary) -> dict[str, Any]:
    counts: dict[str, Any] = {name: report.counts for name, report in summary.stages.items()}
    if summary.incomplete:
        counts["incomplete_tasks"] = summary.incomplete
    if summary.training is not None:  # which model run this build's data trained
        trained = summary.training.get("summary") or {}
        counts["train"] = {
            "mode": summary.training.get("mode"),
            "flow_run_id": summary.training.get("flow_run_id"),
            "model_run_id": trained.get("run_id"),
        }
    return counts


def publish_build_summary(summary: BuildSummary, failed: BaseException | None = None) -> None:
    lines = [f"# build {summary.run_id}", ""]
    lines.append(f"Warehouse `{summary.warehouse}`; tasks: {', '.join(summary.tasks) or 'none'}.")
    if failed is not None:
        lines.append(f"\n**Failed**: {type(failed).__name__}: {failed}")
    for task_id, why in summary.incomplete.items():
        lines.append(f"\n**Incomplete**: {task_id}: {why}; not exported, reported or trained.")
    lines += ["", "| stage | counts | artifacts |", "|---|---|---|"]
    for name, report in summary.stages.items():
        links = ", ".join(artifact_link(k, v) for k, v in report.artifact_ids.items())
        counts = json.dumps(report.counts, default=str).replace("|", "\\|")
        lines.append(f"| {name} | {counts} | {links} |")
    if summary.training is not None:
        lines.append(f"\nTraining: {json.dumps(summary.training, default=str)}")
    create_markdown_artifact(
        key="build-summary",
        markdown="\n".join(lines) + "\n",
        description="Every stage of the build with its counts and artifact links.",
    )
