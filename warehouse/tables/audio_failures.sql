-- audio_failures: clips whose audio could not be used, with the reason; they are skipped,
-- never silently dropped. `SELECT reason, count(*) FROM audio_failures GROUP BY 1`.
-- Partitions: data/audio_failures/stage=<stage>/run=<run>.parquet. Kept in step with
-- pipeline.clap.embeddings.AudioFailureRecord.
CREATE TABLE audio_failures (
    clip_id         VARCHAR NOT NULL,
    stage           VARCHAR NOT NULL,  -- e.g. clap-embed
    audio_location  VARCHAR,           -- audio_root/audio_path ('shard.tar#member' for tar members)
    reason          VARCHAR NOT NULL,  -- missing | unreadable | silent | too_short
    detail          VARCHAR,
    run_id          VARCHAR NOT NULL,
    failed_at       TIMESTAMPTZ NOT NULL
);
