-- clips: one row per source clip, normalised across corpora.
-- Stored as data/clips/source=<source>.parquet (one partition per ingested source);
-- the catalog exposes it as the view `clips`. Kept in step with pipeline.sources.records.ClipRecord.
CREATE TABLE clips (
    clip_id       VARCHAR NOT NULL,  -- source-prefixed and stable, e.g. 'clotho:rain_on_roof.wav'
    source        VARCHAR NOT NULL,  -- audiocaps | clotho | clotho-aqa | laion630k
    split         VARCHAR,           -- normalised: train | dev | test (NULL when the source has none)
    source_split  VARCHAR,           -- the source's own split name (development, val, ...)
    audio_path    VARCHAR NOT NULL,  -- relative to audio_root; 'shard.tar#member' inside a tar shard
    audio_root    VARCHAR,           -- absolute audio root used at ingest time
    captions      VARCHAR[],
    tags          VARCHAR[],
    title         VARCHAR,
    description   VARCHAR,
    duration_s    DOUBLE,
    license       VARCHAR,
    url           VARCHAR,
    qa            STRUCT(question VARCHAR, answer VARCHAR, confidence VARCHAR)[],
    extra         VARCHAR,           -- JSON object of source-specific fields (youtube_id, sound_id, ...)
    source_file   VARCHAR NOT NULL,  -- input file the row came from
    source_row    BIGINT,            -- first data row (1-based, header excluded) in source_file
    run_id        VARCHAR NOT NULL,
    ingested_at   TIMESTAMPTZ NOT NULL
);
