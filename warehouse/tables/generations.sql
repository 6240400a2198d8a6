-- generations: completion manifests of item generations. A generation run writes its
-- item_records partitions first and its manifest last, as ONE file, so the manifest is
-- the atomic step that makes a version current. The latest manifest of a task (by
-- completed_at) names the version of every split at once; the view `items` marks exactly
-- those items `is_current`. A run that fails, is killed or hits a full disk writes no
-- manifest, and the previous manifest stays current. Before writing any item, a run also
-- records that it started (state 'started', split '*'): a task with such a row but no
-- manifest yet has nothing current, so the first generation of a task, killed halfway,
-- is not mistaken for items written before manifests existed (which stay current).
-- Partitions: data/generations/task=<task>/manifest=<manifest_id>.parquet (one per
-- completed run) and data/generations/task=<task>/started=<generation_version>.parquet.
-- Kept in step with pipeline.tasks.common.completion.GenerationRow.
CREATE TABLE generations (
    manifest_id        VARCHAR NOT NULL,  -- one per completed run; its rows became current together
    state              VARCHAR NOT NULL,  -- complete (a manifest row) | started (the run began writing)
    task               VARCHAR NOT NULL,
    split              VARCHAR NOT NULL,
    generation_version VARCHAR NOT NULL,  -- the version of this split while the manifest is current
    generated          BOOLEAN NOT NULL,  -- true: this run wrote the split; false: kept from the previous manifest (split-limited run)
    items              BIGINT,            -- items of (split, version), valid and rejected
    valid              BIGINT,
    failed_calls       BIGINT,            -- items whose LLM call failed (retried by the next run)
    run_id             VARCHAR NOT NULL,
    completed_at       TIMESTAMPTZ NOT NULL
);
