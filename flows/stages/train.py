"""Launching training at the end of `build`: a deployment when the server has one, else a
subflow. Either way the train run is told which build produced its data (`dataset_run_id`)
and records the generation versions it trained on (issue 7's model card and `models`)."""

from __future__ import annotations

from typing import Any

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
        flow_run = run_deployment(name=train.deployment, parameters=parameters, timeout=None)
        state = flow_run.state
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
