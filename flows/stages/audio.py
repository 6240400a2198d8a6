"""Audio stages: pitch per clip and CLAP embeddings per clip, in batches of clips.

These are the CPU/GPU-heavy stages; their batches are Prefect tasks submitted to the
flow's task runner (`--runner local|dask`, see flows.runners), so a Dask cluster spreads
them over its workers. Each batch task loads its model through the library's per-process
cache (`pipeline.clap.load_scorer`), so a worker loads the model once, not once per batch.

A batch's cache key covers the clip rows it reads (id, audio root and path), the code and
the model config: a rerun with nothing changed decodes no audio at all.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from flows.stages.artifacts import StageReport, publish, summary_row
from flows.stages.cache import code_fingerprint, key_from_parameter, results_dir, stage_key
from pipeline.storage import Warehouse

CLIP_BATCH = 200
PITCH_CODE = ("pipeline/audio",)
EMBEDDING_CODE = ("pipeline/audio", "pipeline/clap")


def batches(items: list[Any], size: int = CLIP_BATCH) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def clip_rows(warehouse: Warehouse, clip_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """(clip_id, audio_root, audio_path) of the given clips (all clips when None), sorted."""
    if clip_ids is None:
        return warehouse.rows("SELECT clip_id, audio_root, audio_path FROM clips ORDER BY clip_id")
    return warehouse.rows(
        "SELECT clip_id, audio_root, audio_path FROM clips "
        "WHERE list_contains(?, clip_id) ORDER BY clip_id",
        [clip_ids],
    )


def item_clip_ids(warehouse: Warehouse, tasks: list[str]) -> list[str]:
    """Clips used by the current items of `tasks`."""
    rows = warehouse.rows(
        "SELECT DISTINCT unnest(clip_ids) AS clip_id FROM items_current "
        "WHERE list_contains(?, task) ORDER BY 1",
        [tasks],
    )
    return [r["clip_id"] for r in rows]


PITCH_TASK = "auditorybench-pitch"
PITCH_POOL_SQL = (
    "source = 'laion630k'"  # the clips the pitch task pairs (pipeline.tasks.auditorybench)
)
# The stage's selection rule. A LAION clip whose latest `clip_categories` row puts it in a
# broad category the pitch task pairs (pitch_comparison.PITCH_BROAD: music, object,
# environment) is measured; a clip categorised otherwise (animal, declined, an unusable
# reply) is skipped as not usable. Categories come from generation (step a), which runs
# after this stage, so a clip with no category yet is measured too: generation could pair
# it, and measuring it here keeps the work on the task runner. `clip_pitch` is keyed by
# clip and parameters, so results stay valid whichever side measured them.
PITCH_SELECTION_SQL = f"""
WITH latest AS (
    SELECT clip_id, arg_max(broad, categorized_at) AS broad,
           arg_max(status, categorized_at) AS status
    FROM clip_categories GROUP BY clip_id
)
SELECT c.clip_id, c.audio_root, c.audio_path,
       CASE WHEN l.clip_id IS NULL THEN 'uncategorised'
            WHEN l.status = 'ok' AND list_contains(?, l.broad) THEN 'usable'
            ELSE 'not_usable' END AS pitch_use
FROM clips c LEFT JOIN latest l USING (clip_id)
WHERE {PITCH_POOL_SQL.replace("source", "c.source")}
ORDER BY c.clip_id
"""


def pitch_selection(warehouse: Warehouse) -> dict[str, list[dict[str, Any]]]:
    """LAION clip rows by pitch use: `usable` and `uncategorised` (both measured by the
    stage) and `not_usable` (skipped); see PITCH_SELECTION_SQL."""
    from pipeline.tasks.auditorybench.pitch_comparison import PITCH_BROAD

    selection: dict[str, list[dict[str, Any]]] = {
        "usable": [],
        "not_usable": [],
        "uncategorised": [],
    }
    for row in warehouse.rows(PITCH_SELECTION_SQL, [list(PITCH_BROAD)]):
        selection[row.pop("pitch_use")].append(row)
    return selection


@task(name="pitch-batch", cache_key_fn=key_from_parameter, persist_result=True)
def pitch_batch(
    warehouse: str, clip_ids: list[str], pitch_config: Any, run_id: str, cache_key: str
) -> Any:
    from pipeline.audio.pitch import measure_clips

    return measure_clips(Warehouse(warehouse), clip_ids, run_id, pitch_config)


@flow(name="stage-pitch")
def pitch_stage(warehouse: str, run_id: str, tasks: list[str]) -> StageReport:
    """Measure the pitch of the clips the pitch task can pair (PITCH_SELECTION_SQL) up
    front, in batches on the task runner (so a Dask cluster shares the pitch work);
    generation then finds its clips measured. The summary counts the clips skipped as not
    usable and the uncategorised clips measured because no category was known yet.
    Not needed for other tasks: the stage reports that and does nothing."""
    wh = Warehouse(warehouse)
    if PITCH_TASK not in tasks:
        report = StageReport(stage="pitch", markdown=f"Not needed: {PITCH_TASK} not built.")
        return publish(report, "Pitch: not needed for the tasks of this build.")
    from pipeline.tasks import TASKS

    pitch_config = TASKS[PITCH_TASK].pitch_config
    runner = pitch_batch.with_options(result_storage=results_dir(wh))
    futures = []
    selection = pitch_selection(wh)
    to_measure = sorted(
        selection["usable"] + selection["uncategorised"], key=lambda r: r["clip_id"]
    )
    for batch in batches(to_measure):
        key = stage_key(
            "pitch", wh, clips=batch, pitch=pitch_config, code=code_fingerprint(*PITCH_CODE)
        )
        ids = [r["clip_id"] for r in batch]
        futures.append(runner.submit(str(wh.root), ids, pitch_config, run_id, key))
    summaries = [f.result() for f in futures]
    report = StageReport(
        stage="pitch",
        rows=[summary_row(s, batch=i) for i, s in enumerate(summaries)],
        counts={
            "measured": sum(s.measured for s in summaries),
            "cached": sum(s.cached for s in summaries),
            "skipped_not_usable": len(selection["not_usable"]),
            "measured_uncategorised": len(selection["uncategorised"]),
        },
    )
    return publish(report, "Pitch measured per batch of clips, by status.")


@task(name="embedding-batch", cache_key_fn=key_from_parameter, persist_result=True)
def embedding_batch(
    warehouse: str, clap_config: Any, clip_ids: list[str], run_id: str, cache_key: str
) -> Any:
    from pipeline.clap import load_scorer
    from pipeline.clap.embeddings import ensure_clip_embeddings

    return ensure_clip_embeddings(Warehouse(warehouse), load_scorer(clap_config), clip_ids, run_id)


@flow(name="stage-embeddings")
def embeddings_stage(
    warehouse: str, run_id: str, tasks: list[str], clap_config: Any | None
) -> StageReport:
    """CLAP audio embeddings of the clips the current items use (missing ones only)."""
    wh = Warehouse(warehouse)
    if clap_config is None:
        return _not_configured("embeddings")
    runner = embedding_batch.with_options(result_storage=results_dir(wh))
    futures = []
    for batch in batches(clip_rows(wh, item_clip_ids(wh, tasks))):
        key = stage_key(
            "embeddings", wh, clips=batch, clap=clap_config, code=code_fingerprint(*EMBEDDING_CODE)
        )
        ids = [r["clip_id"] for r in batch]
        futures.append(runner.submit(str(wh.root), clap_config, ids, run_id, key))
    summaries = [f.result() for f in futures]
    report = StageReport(
        stage="embeddings",
        rows=[summary_row(s, batch=i) for i, s in enumerate(summaries)],
        counts={
            "computed": sum(s.computed for s in summaries),
            "cached": sum(s.cached for s in summaries),
            "failed": sum(s.failed for s in summaries),
        },
    )
    return publish(report, "CLAP clip embeddings computed (or reused) and failures by reason.")


def _not_configured(stage: str) -> StageReport:
    from pipeline.clap.config import NOT_CONFIGURED

    get_run_logger().warning("%s: %s", stage, NOT_CONFIGURED)
    report = StageReport(
        stage=stage,
        rows=[{"stage": stage, "status": "not run", "reason": NOT_CONFIGURED}],
        markdown=f"Not run: {NOT_CONFIGURED}. Items stay `unscored`.",
        counts={"not_run": NOT_CONFIGURED},
    )
    return publish(report, f"{stage}: not run (no CLAP checkpoint configured).")


@flow(name="stage-sound-groups")
def sound_groups_stage(warehouse: str, run_id: str) -> StageReport:
    """Fingerprint the clips that have none yet, then regroup every clip into sounds
    (pipeline.tasks.common.sound_groups) and rewrite `sound_group_members`, so the
    `sound_groups` and `leakage` views describe what generation will split by."""
    from collections import Counter

    from pipeline.audio.fingerprint import fingerprint_clips
    from pipeline.tasks.common.sound_groups import compute_sound_groups, write_sound_groups

    wh = Warehouse(warehouse)
    counts: Counter[str] = Counter()
    for batch in batches(clip_rows(wh)):
        counts.update(fingerprint_clips(wh, [r["clip_id"] for r in batch], run_id))
    _, groups = compute_sound_groups(wh)
    write_sound_groups(wh, groups, run_id)
    linked = [c for c, kinds in groups.linked_by.items() if kinds]
    by_kind = Counter(kind for c in linked for kind in groups.linked_by[c])
    report = StageReport(
        stage="sound_groups",
        rows=[{"link": kind, "clips": n} for kind, n in sorted(by_kind.items())],
        counts={
            "fingerprints": dict(counts),
            "groups": len(set(groups.group_of.values())),
            "linked_clips": len(linked),
            **groups.notes,
        },
    )
    return publish(report, "Clips linked into sound groups, by link kind.")
