"""Task runners for the heavy stages (audio decoding, pitch, CLAP embeddings and scoring).

`local` runs tasks in a thread pool inside the flow's process. `dask` hands them to a
Dask cluster through prefect-dask: a temporary local cluster by default, or an existing
one given its scheduler address (`tcp://host:8786`). Models are loaded once per worker
process, not once per task: the CLAP scorer comes from `pipeline.clap.load_scorer`,
which keeps a module-level cache keyed by its config.

Ray is the alternative (`prefect-ray`'s `RayTaskRunner(address="ray://head:10001")`);
it is not installed here, see docs/readme/orchestration.md.
"""

from __future__ import annotations

from typing import Literal

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, Field

RunnerName = Literal["local", "dask"]


class RunnerConfig(BaseModel):
    """Where the heavy stages' tasks run."""

    model_config = ConfigDict(extra="forbid")

    runner: RunnerName = "local"
    dask_address: str | None = Field(
        default=None,
        description="Scheduler address of an existing Dask cluster; None starts a local one.",
    )
    dask_workers: int = Field(default=2, ge=1, description="Workers of the local cluster.")
    dask_processes: bool = Field(
        default=False,
        description="Local cluster workers as processes (True) or threads in this process.",
    )
    threads: int = Field(default=2, ge=1, description="Threads of the local runner.")


def task_runner(config: RunnerConfig) -> TaskRunner:
    """The Prefect task runner `config` asks for."""
    if config.runner == "local":
        return ThreadPoolTaskRunner(max_workers=config.threads)
    from prefect_dask import DaskTaskRunner

    if config.dask_address:
        return DaskTaskRunner(address=config.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": config.dask_workers,
            "threads_per_worker": 1,
            "processes": config.dask_processes,
            "dashboard_address": None,
        }
    )
