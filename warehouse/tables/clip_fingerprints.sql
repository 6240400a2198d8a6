-- clip_fingerprints: a content fingerprint per clip (pipeline.audio.fingerprint), robust to
-- re-encoding (sample rate, codec, gain). Unreadable clips are recorded with a status.
-- Partitions: data/clip_fingerprints/method=<method>/batch=<hash of clip ids>.parquet
-- Kept in step with pipeline.audio.fingerprint.FingerprintRecord.
CREATE TABLE clip_fingerprints (
    clip_id       VARCHAR NOT NULL,
    method        VARCHAR NOT NULL,  -- e.g. band-energy-diff-v1
    status        VARCHAR NOT NULL,  -- ok | missing | unreadable | silent | too_short
    bits          VARCHAR,           -- 256 bits as 64 hex digits (NULL unless ok)
    informative   BOOLEAN NOT NULL,  -- enough strong energy changes to link clips on
    strong_share  DOUBLE,            -- share of differences above the strength margin
    detail        VARCHAR,           -- why a clip has no fingerprint
    run_id        VARCHAR NOT NULL,
    computed_at   TIMESTAMPTZ NOT NULL
);
