-- llm_batches: the state log of Batch-API jobs sent by `forge generate --mode batch`: one row
-- per state observed (uploaded, then the server's states); the latest row per batch_key is
-- the batch's state. A run killed while polling resumes from these rows: recorded batches
-- are polled again, never submitted twice.
-- Partitions: data/llm_batches/batch=<batch_key>/at=<seq>-<token>.parquet.
-- The requests of a batch are in llm_batch_requests (batch_file = input_path).
-- Kept in step with pipeline.llm.records.LLMBatchRecord.
CREATE TABLE llm_batches (
    batch_key       VARCHAR NOT NULL,  -- our id of one input file, stable across resumes
    batch_id        VARCHAR,           -- the server's batch id; NULL until the batch is created
    endpoint        VARCHAR NOT NULL,  -- base URL without credentials
    model           VARCHAR NOT NULL,
    input_path      VARCHAR NOT NULL,  -- the JSONL uploaded (= llm_batch_requests.batch_file)
    input_file_id   VARCHAR,
    output_file_id  VARCHAR,
    error_file_id   VARCHAR,
    state           VARCHAR NOT NULL,  -- uploaded | validating | in_progress | finalizing
                                       -- | completed | failed | expired | cancelling | cancelled
    requests        INTEGER NOT NULL,  -- lines in the input file
    submission      INTEGER NOT NULL,  -- 1, or n+1 for requests resubmitted after a failed/expired batch
    imported        BOOLEAN NOT NULL,  -- results recorded in llm_calls (terminal batches only)
    run_id          VARCHAR NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL
);
