-- rejects: every input row (or field) a loader or validator refused, with the reason.
-- Nothing is dropped silently: `SELECT reason, count(*) FROM rejects GROUP BY 1` accounts
-- for everything that did not make it. Kept in step with pipeline.sources.records.Rejection.
CREATE TABLE rejects (
    stage        VARCHAR NOT NULL,   -- ingest | generate | validate | score | ...
    source       VARCHAR,            -- corpus or task the input belongs to
    source_file  VARCHAR,
    source_row   BIGINT,             -- 1-based data row, header excluded
    record_id    VARCHAR,            -- clip_id / item_id when one could be derived
    field        VARCHAR,
    reason       VARCHAR NOT NULL,   -- machine-readable code, e.g. duplicate_id, unsafe_audio_path
    action       VARCHAR NOT NULL,   -- row_rejected | field_dropped
    detail       VARCHAR,            -- human-readable explanation
    raw          VARCHAR,            -- the offending input, truncated to 500 characters
    run_id       VARCHAR NOT NULL,
    rejected_at  TIMESTAMPTZ NOT NULL
);
