-- clip_categories: AuditoryBench step (a), the LLM's category path per LAION/Freesound clip.
-- Declines and unusable replies are rows too (status), with the llm_calls key behind them.
-- Partitions: data/clip_categories/generation=<hash of prompt version, model, seed>.parquet
-- Kept in step with pipeline.tasks.auditorybench.categorize.CategoryRecord.
CREATE TABLE clip_categories (
    clip_id         VARCHAR NOT NULL,
    category        VARCHAR,           -- broad → narrow, e.g. animal/dog/bark (NULL unless status ok)
    broad           VARCHAR,           -- animal | music | object | environment
    status          VARCHAR NOT NULL,  -- ok | declined | invalid_category | schema_invalid | llm_error | llm_refused
    prompt_name     VARCHAR NOT NULL,
    prompt_version  VARCHAR NOT NULL,
    model           VARCHAR,
    llm_call_key    VARCHAR,
    run_id          VARCHAR NOT NULL,
    categorized_at  TIMESTAMPTZ NOT NULL
);
