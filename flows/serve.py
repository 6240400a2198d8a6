"""`forge serve`: the simple deployment path, `flow.serve` without a work pool.

Serves the same four deployments as `prefect.yaml` (build, regenerate, export, train)
from this process; runs are started from the UI or `prefect deployment run`, e.g.
`prefect deployment run 'build/served' --param params='{"tasks": ["nlar"]}'`.
"""

from __future__ import annotations

from typing import Any

from prefect import serve

# A name of its own: `prefect deploy --all` registers the same flows as `<flow>/default` on
# a work pool, and serving under that name updates those deployments in place; their runs
# then fail to load the flow (`FileNotFoundError: <repo>/None` in load_flow_from_flow_run).
DEPLOYMENT_NAME = "served"


def served_flows() -> list[Any]:
    """The flows behind the deployments, in the order of prefect.yaml."""
    from flows.build import build_flow
    from flows.regenerate import regenerate_flow
    from flows.stages.publish import export_stage
    from flows.train import train_flow

    return [build_flow, regenerate_flow, export_stage, train_flow]


def serve_all(limit: int | None = None) -> None:
    deployments = [
        f.to_deployment(name=DEPLOYMENT_NAME, tags=["auditory-forge"]) for f in served_flows()
    ]
    serve(*deployments, limit=limit)
