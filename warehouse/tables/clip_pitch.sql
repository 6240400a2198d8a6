-- clip_pitch: measured fundamental frequency per clip (pipeline.audio.pitch), one row per
-- (clip, analysis parameters). Clips that cannot be measured are recorded with a status,
-- never skipped. Partitions: data/clip_pitch/params=<params_key>/batch=<hash of clip ids>.parquet
-- Kept in step with pipeline.audio.pitch.PitchRecord.
CREATE TABLE clip_pitch (
    clip_id          VARCHAR NOT NULL,
    status           VARCHAR NOT NULL,  -- ok | too_little_voiced | missing | unreadable | silent | too_short
    median_f0_hz     DOUBLE,            -- median f0 over voiced frames (NULL unless some are voiced)
    voiced_fraction  DOUBLE,            -- voiced frames / all frames: the confidence of the median
    voiced_frames    BIGINT,
    frames           BIGINT,
    method           VARCHAR NOT NULL,  -- analysis method and version, e.g. yin-cmndf-44k-v2 (older rows: librosa-pyin)
    params           VARCHAR NOT NULL,  -- JSON of the analysis parameters
    params_key       VARCHAR NOT NULL,  -- short hash of method + params (the cache key)
    detail           VARCHAR,           -- why a clip was not measured
    run_id           VARCHAR NOT NULL,
    measured_at      TIMESTAMPTZ NOT NULL
);
