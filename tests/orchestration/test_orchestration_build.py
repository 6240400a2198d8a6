"""The `build` flow on the sample data: every stage, the runs table, artifacts, and a rerun
that does no repeated work (no Parquet file rewritten, no audio decoded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from flows.build import BuildSummary, build_flow
from flows.stages.cache import RESULTS_DIR
from flows.stages.params import STAGES as ALL_STAGES
from flows.stages.params import BuildParams
from pipeline.storage import Warehouse

pytestmark = pytest.mark.usefixtures("prefect_harness")

TASKS = ["auditorybench-animal", "auditorybench-pitch", "nlar", "reasonaqa"]
STAGES = list(ALL_STAGES)  # no CLAP configured: embeddings/score say so, filter marks unscored


def parquet_files(wh: Warehouse) -> dict[str, tuple[int, int]]:
    """Every data partition except the runs table's: path -> (size, mtime_ns)."""
    return {
        str(p.relative_to(wh.data_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in wh.data_dir.rglob("*.parquet")
        if p.relative_to(wh.data_dir).parts[0] != "runs" and p.name != "_schema.parquet"
    }


@pytest.fixture(scope="module")
def built(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> BuildSummary:
    root = tmp_path_factory.mktemp("build") / "warehouse"
    params = BuildParams(
        warehouse=str(root), tasks=TASKS, stages=STAGES, llm={"backend": "offline"}
    )
    return build_flow(params)


def test_build_runs_every_stage_on_the_samples(built: BuildSummary) -> None:
    wh = Warehouse(built.warehouse)
    assert list(built.stages) == STAGES
    ingest = built.stages["ingest"].counts
    assert (ingest["clips"], ingest["rejects"]) == (91, 2)
    # the sample's planted overlaps: the same Freesound id, a re-encoded copy, a Clotho file
    assert ingest["sound_groups"]["fingerprint_pairs"] >= 1
    assert wh.rows("SELECT count(*) AS n FROM clips")[0]["n"] == 91
    per_task = {
        r["task"]: r["valid"]
        for r in wh.rows(
            "SELECT task, count(*) FILTER (WHERE validation_status = 'valid') AS valid "
            "FROM items_current GROUP BY task"
        )
    }
    assert sorted(per_task) == TASKS
    assert all(n > 0 for n in per_task.values()), per_task
    # generate's counts are the items the warehouse holds
    assert built.stages["generate"].counts["valid"] == sum(per_task.values())
    # pitch was measured up front by the pitch stage, so generation measured nothing itself
    measured = wh.rows("SELECT count(DISTINCT clip_id) AS n FROM clip_pitch")[0]["n"]
    assert measured == built.stages["pitch"].counts["measured"] > 0
    # no CLAP configured: scoring says so and every valid item is `unscored` with the how-to
    assert "no CLAP checkpoint configured" in built.stages["score"].counts["not_run"]
    statuses = wh.rows(
        "SELECT DISTINCT filter_status, filter_reason FROM items_current "
        "WHERE validation_status = 'valid'"
    )
    assert [r["filter_status"] for r in statuses] == ["unscored"]
    assert "FORGE_CLAP_CHECKPOINT" in statuses[0]["filter_reason"]
    # ... and the exports still hold every valid item
    for task in TASKS:
        exported = sum(
            len(f.read_text().splitlines())
            for f in (wh.root / "exports" / task / "jsonl").glob("*.jsonl")
        )
        assert exported == per_task[task]
    # ... and each task's published format too (format 'native')
    native = {  # the published files' headers (the pitch wiki file has its own order)
        "auditorybench-animal": ("animal,description,sentence", "animal,description,sentence"),
        "auditorybench-pitch": ("sentence,answer,span1,span2", "span1,span2,sentence,answer"),
    }
    for task, (header, wiki_header) in native.items():
        files = sorted((wh.root / "exports" / task / "auditorybench-csv").glob("*.csv"))
        assert files
        for f in files:
            expected = wiki_header if f.stem.endswith("_wiki") else header
            assert f.read_text().splitlines()[0] == expected, f
    mellow = wh.root / "exports" / "reasonaqa" / "mellow-json"
    assert {f.name for f in mellow.glob("*.json")} == {"train.json", "val.json", "test.json"}
    assert list((wh.root / "exports" / "nlar" / "nlar-json").glob("nlar_*.json"))


def test_runs_table_records_the_build(built: BuildSummary) -> None:
    wh = Warehouse(built.warehouse)
    (run,) = wh.rows("SELECT * FROM runs WHERE run_id = ?", [built.run_id])
    assert run["flow_name"] == "build"
    assert run["status"] == "completed"
    assert run["model"] == "offline-rules" and run["llm_backend"] == "offline"
    assert run["clap_checkpoint"] is None
    assert sorted(run["tasks"]) == TASKS
    assert run["finished_at"] >= run["started_at"]
    assert run["code_version"] is None or len(run["code_version"].split("+")[0]) == 40
    generations = json.loads(run["generation_versions"])
    current = wh.rows("SELECT DISTINCT task, split, generation_version FROM items_current")
    assert {(r["task"], r["split"], r["generation_version"]) for r in current} == {
        (task, split, version)
        for task, splits in generations.items()
        for split, version in splits.items()
    }
    prompts = json.loads(run["prompt_versions"])
    assert "auditorybench/animal" in prompts and "nlar/qa" in prompts
    counts = json.loads(run["counts"])
    assert counts["ingest"]["clips"] == 91
    assert json.loads(run["parameters"])["tasks"] == TASKS
    # the run's LLM usage: every call it recorded, by prompt version
    (calls,) = wh.rows("SELECT count(*) AS n FROM llm_calls WHERE run_id = ?", [built.run_id])
    assert counts["llm"]["calls"] == calls["n"] > 0
    assert sum(p["calls"] for p in counts["llm"]["by_prompt"].values()) == calls["n"]


def test_stages_publish_artifacts_linked_by_the_build(built: BuildSummary) -> None:
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["build-summary"]))
        )
    summary = next(a for a in artifacts if built.run_id in str(a.data))
    for stage, report in built.stages.items():
        expected = {f"{stage}-counts", f"{stage}-summary"}
        if stage == "ingest":  # sound grouping runs within the ingest stage
            expected |= {"sound-groups-counts", "sound-groups-summary"}
        assert set(report.artifact_ids) == expected
        for key in report.artifact_ids:
            assert key in str(summary.data)
    assert any(row["stage"] == "generate" for row in built.stages["generate"].rows)


def test_rerun_with_nothing_changed_does_no_repeated_work(
    built: BuildSummary, decode_counter: list[str]
) -> None:
    wh = Warehouse(built.warehouse)
    before = parquet_files(wh)
    llm_calls = wh.rows("SELECT count(*) AS n FROM llm_calls")[0]["n"]
    again = build_flow(
        BuildParams(
            warehouse=built.warehouse, tasks=TASKS, stages=STAGES, llm={"backend": "offline"}
        )
    )
    assert again.run_id != built.run_id
    assert decode_counter == []  # no audio decoded: pitch batches came from the cache
    assert parquet_files(wh) == before  # no table partition rewritten
    assert wh.rows("SELECT count(*) AS n FROM llm_calls")[0]["n"] == llm_calls
    assert again.stages["generate"].counts == built.stages["generate"].counts
    statuses = wh.rows("SELECT status, count(*) AS n FROM runs GROUP BY 1")
    assert statuses == [{"status": "completed", "n": 2}]
    assert any(Path(wh.root, RESULTS_DIR).iterdir())


def test_unknown_task_or_stage_fails_before_any_work(tmp_path: Path) -> None:
    from pipeline.errors import ForgeError

    with pytest.raises(ForgeError, match="unknown tasks"):
        build_flow(BuildParams(warehouse=str(tmp_path / "wh"), tasks=["nope"]))
    with pytest.raises(ForgeError, match="unknown stages"):
        build_flow(BuildParams(warehouse=str(tmp_path / "wh"), stages=["ingest", "bake"]))
    assert not (tmp_path / "wh" / "data" / "clips").exists() or not Warehouse(
        tmp_path / "wh"
    ).partitions("clips")
