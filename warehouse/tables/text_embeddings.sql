-- text_embeddings: CLAP text embeddings cached by (text, backend, checkpoint).
-- Partitions: data/text_embeddings/model=<hash of backend+checkpoint>/run=<run>.parquet
-- (each run appends only the texts that were missing). Kept in step with
-- pipeline.clap.embeddings.TextEmbeddingRecord.
CREATE TABLE text_embeddings (
    text         VARCHAR NOT NULL,
    backend      VARCHAR NOT NULL,
    checkpoint   VARCHAR NOT NULL,
    embedding    FLOAT[512] NOT NULL,  -- L2-normalised
    run_id       VARCHAR NOT NULL,
    computed_at  TIMESTAMPTZ NOT NULL
);
