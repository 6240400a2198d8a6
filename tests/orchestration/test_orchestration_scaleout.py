"""Scale-out and regeneration: the scoring stages on a 2-worker local Dask cluster give the
local runner's scores (model loaded once per process); `forge regenerate` with a changed
template writes a new version beside the old one and the version views compare them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.build import build_flow
from flows.stages.params import BuildParams
from pipeline.storage import Warehouse

pytestmark = pytest.mark.usefixtures("prefect_harness")

TASKS = ["nlar", "auditorybench-animal"]


@pytest.fixture(scope="module")
def generated(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse with the samples ingested and two tasks generated (offline), unscored."""
    root = tmp_path_factory.mktemp("scaleout") / "warehouse"
    build_flow(
        BuildParams(
            warehouse=str(root),
            tasks=TASKS,
            stages=["ingest", "generate"],
            llm={"backend": "offline"},
        )
    )
    return root


def score_with(root: Path, runner: dict, checkpoint: Path) -> dict[tuple, float | None]:
    build_flow(
        BuildParams(
            warehouse=str(root),
            tasks=TASKS,
            stages=["embeddings", "score", "filter"],
            llm={"backend": "offline"},
            clap={"backend": "hf", "checkpoint": str(checkpoint)},
            runner=runner,
        )
    )
    rows = Warehouse(root).rows(
        "SELECT item_id, clip_id, text_role, score FROM clap_scores ORDER BY ALL"
    )
    return {(r["item_id"], r["clip_id"], r["text_role"]): r["score"] for r in rows}


def test_scoring_on_a_two_worker_dask_cluster_equals_the_local_runner(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.clap import scorer as scorer_module
    from pipeline.clap.tiny import save_tiny_hf_clap

    checkpoint = save_tiny_hf_clap(tmp_path / "tiny-clap")
    loads: list[str] = []
    original = scorer_module._load_hf

    def counting_load(config):  # type: ignore[no-untyped-def]
        loads.append(config.checkpoint)
        return original(config)

    monkeypatch.setattr(scorer_module, "_load_hf", counting_load)
    local_root, dask_root = tmp_path / "local", tmp_path / "dask"
    shutil.copytree(generated, local_root)
    shutil.copytree(generated, dask_root)

    local = score_with(local_root, {"runner": "local"}, checkpoint)
    dask = score_with(
        dask_root, {"runner": "dask", "dask_workers": 2, "dask_processes": False}, checkpoint
    )
    assert len(local) > 0 and local.keys() == dask.keys()
    scored = [k for k, v in local.items() if v is not None]
    assert scored, "no pair was scored"
    for key in local:
        if local[key] is None:
            assert dask[key] is None
        else:
            assert dask[key] == pytest.approx(local[key], abs=1e-5)
    # one load for the whole process: both runners' tasks (threads, Dask workers in this
    # process) took the scorer from pipeline.clap.load_scorer's cache
    assert loads == [str(checkpoint)]
    decided = Warehouse(dask_root).rows(
        "SELECT DISTINCT filter_status FROM items_current WHERE validation_status = 'valid'"
    )
    assert {r["filter_status"] for r in decided} <= {"kept", "dropped", "unscored"}
    (version,) = Warehouse(dask_root).rows(
        "SELECT DISTINCT generation_version AS v FROM items_current WHERE task = 'nlar' "
        "AND split = 'test'"
    )
    (diff,) = Warehouse(dask_root).rows(
        "SELECT * FROM version_diff('nlar', ?, ?)", [version["v"], version["v"]]
    )
    assert diff["scored_items"] > 0 and -1 <= diff["mean_clap_score"] <= 1


def test_regenerate_with_a_changed_template_keeps_the_old_version(
    generated: Path, tmp_path: Path
) -> None:
    from flows.cli import app
    from pipeline.config import default_prompts_dir

    root = tmp_path / "warehouse"
    shutil.copytree(generated, root)
    wh = Warehouse(root)
    (old,) = wh.rows(
        "SELECT DISTINCT generation_version FROM items_current WHERE task = 'nlar' AND split = 'test'"
    )
    old_files = set(wh.partitions("item_records"))
    prompts = tmp_path / "my_prompts"
    (prompts / "nlar").mkdir(parents=True)
    template = (default_prompts_dir() / "nlar" / "qa.j2").read_text()
    (prompts / "nlar" / "qa.j2").write_text(template + "\nKeep every question short.\n")

    result = CliRunner().invoke(
        app,
        [
            "regenerate",
            "--task",
            "nlar",
            "--prompts",
            str(prompts),
            "--split",
            "test",
            "--warehouse",
            str(root),
        ],
    )
    assert result.exit_code == 0, result.output
    assert old_files <= set(wh.partitions("item_records"))  # nothing overwritten
    versions = wh.rows(
        "SELECT split, generation_version, is_current, prompts FROM item_versions "
        "WHERE task = 'nlar' ORDER BY split, created_at"
    )
    test_versions = [v for v in versions if v["split"] == "test"]
    assert [v["is_current"] for v in test_versions] == [False, True]
    assert test_versions[0]["generation_version"] == old["generation_version"]
    new = test_versions[1]["generation_version"]
    assert new != old["generation_version"] and "nlar/qa@" in test_versions[1]["prompts"]
    # other splits were not regenerated: still one version each
    assert all(v["is_current"] for v in versions if v["split"] != "test")

    diff = wh.rows("SELECT * FROM version_diff('nlar', ?, ?)", [old["generation_version"], new])
    assert [d["side"] for d in diff] == ["a", "b"]
    assert diff[0]["items"] > 0 and diff[1]["items"] > 0
    changes = wh.rows(
        "SELECT change, count(*) AS n FROM version_changes('nlar', ?, ?) GROUP BY 1",
        [old["generation_version"], new],
    )
    assert sum(c["n"] for c in changes) >= diff[1]["items"]
    (run,) = wh.rows("SELECT status, tasks FROM runs WHERE flow_name = 'regenerate'")
    assert run == {"status": "completed", "tasks": ["nlar"]}
    assert f"{old['generation_version']} → {new}" in result.output
