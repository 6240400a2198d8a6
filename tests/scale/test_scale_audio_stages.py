"""Audio stages: the pitch stage measures only clips a pitch task can pair (and says how
many it skipped), and pitch + CLAP embeddings on a real Dask cluster of worker processes
(`LocalCluster(processes=True)` given to the build by its address) equal the local runner."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from flows.build import build_flow
from flows.stages.audio import pitch_selection, pitch_stage
from flows.stages.params import BuildParams
from pipeline.storage import Warehouse
from pipeline.storage.warehouse import utc_now

pytestmark = pytest.mark.usefixtures("prefect_harness")


def categorise(wh: Warehouse, broad_of: dict[str, tuple[str | None, str]]) -> None:
    """`clip_categories` rows as step (a) writes them: clip → (broad, status)."""
    wh.write_partition(
        "clip_categories",
        "generation=test/splits=all",
        [
            {
                "clip_id": clip_id,
                "category": f"{broad}/thing" if broad else None,
                "broad": broad,
                "status": status,
                "prompt_name": "auditorybench/categorize",
                "prompt_version": "test",
                "model": "offline-rules",
                "llm_call_key": None,
                "run_id": "test",
                "categorized_at": utc_now(),
            }
            for clip_id, (broad, status) in broad_of.items()
        ],
    )


def test_pitch_stage_measures_only_pairable_and_uncategorised_clips(
    sample_warehouse: Warehouse,
) -> None:
    laion = [
        r["clip_id"]
        for r in sample_warehouse.rows(
            "SELECT clip_id FROM clips WHERE source = 'laion630k' ORDER BY 1"
        )
    ]
    assert len(laion) >= 6
    music, environment, declined, uncategorised = laion[0], laion[1], laion[2], laion[3]
    animals = laion[4:]
    categorise(
        sample_warehouse,
        {
            music: ("music", "ok"),
            environment: ("environment", "ok"),
            declined: (None, "declined"),
            **{clip: ("animal", "ok") for clip in animals},
        },
    )
    selection = pitch_selection(sample_warehouse)
    assert [r["clip_id"] for r in selection["usable"]] == sorted([music, environment])
    assert [r["clip_id"] for r in selection["uncategorised"]] == [uncategorised]
    assert {r["clip_id"] for r in selection["not_usable"]} == {declined, *animals}

    report = pitch_stage(str(sample_warehouse.root), "test-pitch", ["auditorybench-pitch"])
    assert report.counts["skipped_not_usable"] == 1 + len(animals)
    assert report.counts["measured_uncategorised"] == 1
    measured = sample_warehouse.rows("SELECT DISTINCT clip_id FROM clip_pitch ORDER BY 1")
    assert [r["clip_id"] for r in measured] == sorted([music, environment, uncategorised])
    assert report.counts["measured"] == 3

    # A rerun reuses the batch (Prefect cache): no second measurement row for any clip.
    pitch_stage(str(sample_warehouse.root), "test-pitch-2", ["auditorybench-pitch"])
    assert sample_warehouse.rows("SELECT count(*) AS n FROM clip_pitch")[0]["n"] == 3


def audio_results(root: Path) -> tuple[list[dict], list[dict]]:
    wh = Warehouse(root)
    pitch = wh.rows(
        "SELECT clip_id, status, median_f0_hz, voiced_fraction, params_key FROM clip_pitch "
        "ORDER BY clip_id"
    )
    embeddings = wh.rows(
        "SELECT clip_id, checkpoint, n_crops, embedding FROM clip_embeddings ORDER BY clip_id"
    )
    return pitch, embeddings


def test_pitch_and_embeddings_on_dask_worker_processes_equal_the_local_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import Client, LocalCluster
    from prefect.settings import PREFECT_API_URL

    from pipeline.clap.tiny import save_tiny_hf_clap

    tasks = ["auditorybench-animal", "auditorybench-pitch"]
    base = tmp_path / "base"
    # Animal generation categorises the LAION clips (step a); nothing is measured yet.
    build_flow(
        BuildParams(
            warehouse=str(base),
            tasks=["auditorybench-animal"],
            stages=["ingest", "generate"],
            llm={"backend": "offline"},
        )
    )
    assert Warehouse(base).rows("SELECT count(*) AS n FROM clip_pitch")[0]["n"] == 0
    checkpoint = save_tiny_hf_clap(tmp_path / "tiny-clap")
    local_root, dask_root = tmp_path / "local", tmp_path / "dask"
    shutil.copytree(base, local_root)
    shutil.copytree(base, dask_root)

    def audio_build(root: Path, runner: dict) -> None:
        build_flow(
            BuildParams(
                warehouse=str(root),
                tasks=tasks,
                stages=["pitch", "embeddings"],
                llm={"backend": "offline"},
                clap={"backend": "hf", "checkpoint": str(checkpoint)},
                runner=runner,
            )
        )

    audio_build(local_root, {"runner": "local"})
    # Worker processes report their task runs to the same (test) Prefect server.
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    with (
        LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        audio_build(dask_root, {"runner": "dask", "dask_address": cluster.scheduler_address})
        worker_pids = set(client.run(os.getpid).values())
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids

    local_pitch, local_embeddings = audio_results(local_root)
    dask_pitch, dask_embeddings = audio_results(dask_root)
    assert local_pitch and local_embeddings
    assert dask_pitch == local_pitch
    assert [r["clip_id"] for r in dask_embeddings] == [r["clip_id"] for r in local_embeddings]
    for ours, theirs in zip(dask_embeddings, local_embeddings, strict=True):
        assert ours["embedding"] == pytest.approx(theirs["embedding"], abs=1e-6)
