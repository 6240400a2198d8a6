-- clip_embeddings: one CLAP audio embedding per (clip, backend, checkpoint, crop policy).
-- Computed once and reused by every task and by retrieval (pipeline.clap.embeddings).
-- Partitions: data/clip_embeddings/model=<hash of backend+checkpoint+crop policy>/run=<run>.parquet
-- (each run appends only the vectors that were missing). Kept in step with
-- pipeline.clap.embeddings.ClipEmbeddingRecord.
CREATE TABLE clip_embeddings (
    clip_id        VARCHAR NOT NULL,
    backend        VARCHAR NOT NULL,  -- laion | hf
    checkpoint     VARCHAR NOT NULL,  -- checkpoint path / hub id / tiny-random-* id
    crop_policy    VARCHAR NOT NULL,  -- how the clip became model input, e.g. 'mean:10s:max6:repeatpad'
                                      -- or 'rand_trunc:10s:seed0:repeatpad' / 'fusion:10s:seed0:repeatpad'
                                      -- (reference crop, seeded); see pipeline.clap.crops
    n_crops        INTEGER NOT NULL,  -- crops embedded for this clip
    audio_seconds  DOUBLE,            -- decoded duration
    embedding      FLOAT[512] NOT NULL,  -- L2-normalised; cosine = array_inner_product
    run_id         VARCHAR NOT NULL,
    computed_at    TIMESTAMPTZ NOT NULL
);
