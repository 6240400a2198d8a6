"""Launching training at the end of `build`: a deployment when the server has one, else a
subflow. Either way the train run is told which build produced its data (`dataset_run_id`)
and records the generation versions it trained on (model card and `models`).

A deployment run must be picked up by a worker: when none starts it within
`FORGE_TRAIN_START_TIMEOUT_S` seconds (default 120) the scheduled run is deleted (no
orphan left behind) and the build fails with one line saying how to start a worker.
Once started, the run is awaited to its end (training may take hours).
"""

from __future__ import annotations

import os
import time
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from flows.stages.params import TrainParams
from pipeline.errors import ForgeError
from pipeline.storage import Warehouse


def deployment_exists(name: str) -> bool:
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
        except ObjectNotFound:
            return False
    return True


def train_parameters(train: TrainParams, warehouse: Warehouse, dataset_run_id: str) -> dict:
    return {
        "warehouse": str(warehouse.root),
        "config": train.config,
        "samples": train.samples,
        "dataset_run_id": dataset_run_id,
    }


def launch_training(
    train: TrainParams, warehouse: Warehouse, dataset_run_id: str
) -> dict[str, Any]:
    """Run training on the warehouse's current items; returns how it ran and its outcome."""
    parameters = train_parameters(train, warehouse, dataset_run_id)
    log = get_run_logger()
    if deployment_exists(train.deployment):
        log.info("training: triggering deployment %s", train.deployment)
        # timeout=0: schedule and return at once; the start is awaited below with a bound.
        flow_run = run_deployment(name=train.deployment, parameters=parameters, timeout=0)
        state = wait_for_deployment_run(train.deployment, flow_run.id, start_timeout_s())
        if state is None or not state.is_completed():
            raise ForgeError(
                f"training deployment {train.deployment} ended {state.name if state else 'unknown'}"
                f" (flow run {flow_run.id})"
            )
        return {
            "mode": "deployment",
            "deployment": train.deployment,
            "flow_run_id": str(flow_run.id),
        }
    log.info("training: no deployment %s on this server, running the train flow", train.deployment)
    from flows.train import train_flow

    result = train_flow(**parameters)
    data = result.model_dump(mode="json") if hasattr(result, "model_dump") else result
    return {"mode": "subflow", "summary": data}


def start_timeout_s() -> float:
    raw = os.environ.get("FORGE_TRAIN_START_TIMEOUT_S", "120")
    try:
        value = float(raw)
    except ValueError:
        raise ForgeError(
            f"FORGE_TRAIN_START_TIMEOUT_S must be a number of seconds, not {raw!r}"
        ) from None
    return max(value, 0.0)


def wait_for_deployment_run(
    deployment: str, flow_run_id: UUID, start_timeout: float, poll_s: float = 1.0
) -> Any:
    """Final state of a deployment's flow run; deletes it and raises if no worker starts it."""
    deadline = time.monotonic() + start_timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            state = run.state
            if state is not None and state.is_final():
                return state
            waiting = state is None or state.is_scheduled() or state.is_pending()
            if waiting and time.monotonic() >= deadline:
                pool = (
                    run.work_pool_name or client.read_deployment_by_name(deployment).work_pool_name
                )
                client.delete_flow_run(flow_run_id)
                raise ForgeError(
                    f"training deployment {deployment}: no worker started flow run "
                    f"{flow_run_id} within {start_timeout:.0f} s, so it was deleted; start one "
                    f"(`prefect worker start --pool {pool or '<pool>'}`), raise "
                    "FORGE_TRAIN_START_TIMEOUT_S, or delete the deployment to train in-process"
                )
            time.sleep(poll_s)
