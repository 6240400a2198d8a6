-- llm_batch_requests: requests written to an OpenAI Batch-API JSONL file by
-- `forge llm export-batch`, so `forge llm import-batch` can check and record the results
-- (custom_id in the batch file = call_key here). Partition: run=<run_id>.
-- Kept in step with pipeline.llm.records.LLMBatchRequestRecord.
CREATE TABLE llm_batch_requests (
    call_key        VARCHAR NOT NULL,
    item_key        VARCHAR,
    prompt_name     VARCHAR NOT NULL,
    prompt_version  VARCHAR NOT NULL,
    model           VARCHAR NOT NULL,
    endpoint        VARCHAR,
    params          VARCHAR,           -- JSON: temperature, top_p, max_tokens, seed
    seed            BIGINT,
    messages        VARCHAR,           -- JSON: the rendered chat messages
    reply_schema    VARCHAR,           -- JSON: the template's reply schema at export time
    batch_file      VARCHAR NOT NULL,  -- the JSONL file the request was written to
    run_id          VARCHAR NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
