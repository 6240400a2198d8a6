"""The `runs` table: one row per orchestrated flow run, written at start and at end.

The row is the run's partition `runs/flow=<flow>/run=<run id>`: written with status
'running' when the run starts and replaced atomically with the final status, counts and
the dataset version (generation versions, prompt versions) when it ends. A run that fails
(a stage error, a full disk: one ForgeError naming the file that could not be written)
is recorded 'failed' with that first line as its error; only a run that was killed keeps
its 'running' row, which is how it shows up as unfinished in SQL.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from functools import cache
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

from pipeline.config import REPO_ROOT
from pipeline.llm.recording import run_usage
from pipeline.storage import Warehouse, new_run_id
from pipeline.storage.warehouse import utc_now

RunStatus = Literal["running", "completed", "failed"]


def current_run_id() -> str:
    """The Prefect flow run id when inside a flow run (so rows written by a run lead back to
    it in the UI), else a fresh id."""
    from prefect.runtime import flow_run

    return str(flow_run.get_id() or new_run_id())


class RunRecord(BaseModel):
    """One row of `runs` (warehouse/tables/runs.sql)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    flow_name: str
    parameters: str | None = None
    tasks: list[str] = Field(default_factory=list)
    prompt_versions: str | None = None
    generation_versions: str | None = None
    llm_backend: str | None = None
    model: str | None = None
    llm_endpoint: str | None = None
    clap_checkpoint: str | None = None
    code_version: str | None = None
    status: RunStatus = "running"
    error: str | None = None
    counts: str | None = None
    started_at: datetime = Field(default_factory=utc_now)
    finished_at: datetime | None = None
    recorded_at: datetime = Field(default_factory=utc_now)


def start_record(
    run_id: str,
    flow_name: str,
    params: BaseModel,
    tasks: list[str],
    llm_config: Any,
    clap_config: Any | None,
) -> RunRecord:
    """The `runs` row of a flow that is starting: what it was asked to do and with what."""
    return RunRecord(
        run_id=run_id,
        flow_name=flow_name,
        parameters=params.model_dump_json(),
        tasks=tasks,
        llm_backend=llm_config.backend,
        model=llm_config.model,
        llm_endpoint=endpoint_host(llm_config.base_url)
        if llm_config.backend != "offline"
        else None,
        clap_checkpoint=clap_config.checkpoint if clap_config else None,
        code_version=code_version(),
    )


def run_partition(flow_name: str, run_id: str) -> str:
    return f"flow={flow_name}/run={run_id}"


@cache
def code_version() -> str | None:
    """The checkout's git sha, with '+dirty' when tracked files are modified; None outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def endpoint_host(base_url: str | None) -> str | None:
    """Host[:port] of an endpoint URL: what the runs table and the concurrency limit name
    show (never the path or query, which could carry credentials)."""
    if not base_url:
        return None
    return urlparse(base_url).netloc.rsplit("@", 1)[-1] or None


def dataset_version(warehouse: Warehouse, tasks: list[str]) -> tuple[dict[str, Any], dict]:
    """The current item versions of `tasks`: ({task: {split: generation_version}},
    {prompt_name: [prompt_version, ...]}) read from `items_current`."""
    if not tasks:
        return {}, {}
    rows = warehouse.rows(
        "SELECT task, split, generation_version, prompt_name, prompt_version "
        "FROM items_current WHERE list_contains(?, task) "
        "GROUP BY ALL ORDER BY ALL",
        [tasks],
    )
    generations: dict[str, dict[str, str]] = {}
    prompts: dict[str, list[str]] = {}
    for row in rows:
        generations.setdefault(row["task"], {})[row["split"]] = row["generation_version"]
        if row["prompt_name"]:
            versions = prompts.setdefault(row["prompt_name"], [])
            if row["prompt_version"] not in versions:
                versions.append(row["prompt_version"])
    return generations, prompts


def write_run(warehouse: Warehouse, record: RunRecord) -> None:
    record.recorded_at = utc_now()
    warehouse.write_partition(
        "runs", run_partition(record.flow_name, record.run_id), [record.model_dump()]
    )


def finish_run(
    warehouse: Warehouse,
    record: RunRecord,
    status: RunStatus,
    counts: dict[str, Any],
    error: BaseException | None = None,
) -> RunRecord:
    """Replace the run's row with its final status, counts and dataset version. A failed
    run is recorded failed even when the dataset version cannot be read (the failure may
    be what broke the warehouse)."""
    try:
        generations, prompts = dataset_version(warehouse, record.tasks)
    except Exception:
        if status != "failed":
            raise
        generations, prompts = {}, {}
    try:  # tokens and cost of the LLM calls this run made (also when it failed)
        counts = {**counts, "llm": run_usage(warehouse, record.run_id)}
    except Exception:
        if status != "failed":
            raise
    record.status = status
    record.counts = json.dumps(counts, sort_keys=True, default=str)
    record.generation_versions = json.dumps(generations, sort_keys=True)
    record.prompt_versions = json.dumps(prompts, sort_keys=True)
    record.finished_at = utc_now()
    if error is not None:
        record.error = (str(error).strip().splitlines() or [type(error).__name__])[0][:500]
    write_run(warehouse, record)
    return record
