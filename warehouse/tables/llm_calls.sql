-- llm_calls: one row per finished LLM call (or offline-rule call, or imported batch result).
-- Partitions: data/llm_calls/run=<run_id>/part=<seq>-<token>.parquet, appended while a run
-- goes (a killed run loses at most its last unflushed chunk). The table is also the cache:
-- a request whose call_key has an 'ok' row is answered from here without being sent again;
-- failed rows are kept for the record and retried on the next run. Token counts and cost
-- cover every attempt of the call (retries, repair), as the endpoint reported them.
-- Kept in step with pipeline.llm.records.LLMCallRecord.
CREATE TABLE llm_calls (
    call_key          VARCHAR NOT NULL,  -- sha256(prompt_version, messages, model, params, seed)
    item_key          VARCHAR,           -- the caller's key for the item this call serves
    prompt_name       VARCHAR NOT NULL,  -- e.g. auditorybench/animal
    prompt_version    VARCHAR NOT NULL,  -- hash of template body + system + schema + sampling
    model             VARCHAR NOT NULL,  -- model id sent to the endpoint, or 'offline-rules'
    backend           VARCHAR NOT NULL,  -- openai | offline
    endpoint          VARCHAR,           -- base URL without credentials, or 'offline'
    origin            VARCHAR NOT NULL,  -- request | batch-import | offline-rule
    params            VARCHAR,           -- JSON: temperature, top_p, max_tokens, seed
    seed              BIGINT,
    messages          VARCHAR,           -- JSON: the rendered chat messages (the raw prompt)
    response_format   VARCHAR,           -- json_schema | json_object | offline
    status            VARCHAR NOT NULL,  -- ok | invalid_output | truncated | refused | empty_reply
                                         -- | http_error | timeout | unreachable | prompt_too_large
                                         -- (meanings: pipeline.llm.records.CALL_STATUSES)
    error             VARCHAR,           -- why the call is not ok (API keys redacted)
    http_status       INTEGER,           -- last HTTP status seen, NULL if none
    finish_reason     VARCHAR,
    raw_output        VARCHAR,           -- the model's reply text as received
    parsed            VARCHAR,           -- JSON: the validated reply object (status ok only)
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    cost              DOUBLE,            -- price of the tokens (all attempts) from the price table, NULL if unknown
    latency_s         DOUBLE,            -- wall time of the call including retries and waits
    attempts          INTEGER,           -- HTTP attempts made (1 = no retry)
    run_id            VARCHAR NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL
);
