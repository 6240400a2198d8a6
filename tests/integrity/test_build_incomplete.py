"""One task ending with zero valid items does not fail the other tasks' export and report;
the build says it is incomplete (summary, runs row, exit code)."""

from __future__ import annotations

import json

import pytest
import typer

from flows.build import INCOMPLETE_EXIT_CODE, build_flow
from flows.cli.orchestration import print_build
from flows.stages.params import BuildParams
from pipeline.llm.scripted_server import ScriptedServer, schema_reply
from pipeline.storage import Warehouse

EMPTY_TASK = "nlar"  # the minimal schema replies name no event: every NLAR item is rejected
FULL_TASK = "auditorybench-animal"


@pytest.mark.usefixtures("prefect_harness")
def test_task_without_valid_items_leaves_the_others_built(sample_warehouse: Warehouse) -> None:
    with ScriptedServer(schema_reply) as server:
        params = BuildParams(
            warehouse=str(sample_warehouse.root),
            tasks=[EMPTY_TASK, FULL_TASK],
            stages=["generate", "export", "report"],
            llm={"backend": "openai", "model": "m", "base_url": server.base_url},
        )
        summary = build_flow(params)
    valid = {
        r["task"]: r["n"]
        for r in sample_warehouse.rows(
            "SELECT task, count(*) FILTER (WHERE validation_status = 'valid') AS n "
            "FROM items_current GROUP BY task"
        )
    }
    assert valid[EMPTY_TASK] == 0 and valid[FULL_TASK] > 0  # the premise of the test
    assert list(summary.incomplete) == [EMPTY_TASK]
    assert summary.exit_code == INCOMPLETE_EXIT_CODE != 0
    exported = summary.stages["export"].summaries
    assert {e.task for e in exported} == {FULL_TASK}
    assert all(p for e in exported for p in e.paths)
    assert [r.task for r in summary.stages["report"].summaries] == [FULL_TASK]
    (run,) = sample_warehouse.rows("SELECT status, counts FROM runs WHERE flow_name = 'build'")
    assert run["status"] == "completed"
    assert list(json.loads(run["counts"])["incomplete_tasks"]) == [EMPTY_TASK]
    # what `forge build` / `forge run` print and exit with
    with pytest.raises(typer.Exit) as exited:
        print_build(summary)
    assert exited.value.exit_code == INCOMPLETE_EXIT_CODE
