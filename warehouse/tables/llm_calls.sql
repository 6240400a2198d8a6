-- llm_calls: one row per finished LLM call (or offline-rule call, or imported batch result).
-- The table is also the cache: a request whose call_key has an 'ok' row is answered from
-- here without being sent again; failed rows are kept for the record and retried on the
-- next run. Token counts and cost cover every attempt of the call (retries, repair), as
-- the endpoint reported them.
--
-- Files (pipeline.llm.recording), one folder per run id, under data/llm_calls/:
--   run=<run_id>/part=<seq>-<token>.parquet  chunks, appended while the run goes (every
--                                            flush_every results or flush_interval_s): a
--                                            killed run loses at most its unflushed chunk
--   run=<run_id>/bucket=<h>.parquet          the run compacted: h = first hex digit of
--                                            call_key ('_' for keys without one), so at
--                                            most 17 files per run, each sorted by call_key
-- Compaction merges a run folder's chunks (and bucket files of an earlier compaction of
-- the same run id) when the run ends (CallRecorder.compact / compact_run), and at the
-- start of a later run for folders a killed run left (compact_stale). It writes the
-- bucket files under data/.compaction/llm_calls/staging/ (outside this table's folder,
-- so no query reads them) and then swaps that folder with the run folder in one atomic
-- rename: SQL sees either the chunks or the bucket files, never both and never neither,
-- so a kill at any point loses no flushed row and counts none twice (where the system
-- cannot swap folders atomically - renameat2 is Linux's - the chunks stay). A kill leaves only
-- staging or swapped-out chunk folders under data/.compaction/, removed by the next
-- compaction. Writers flush under a shared lock per run and compaction holds it
-- exclusively (data/.compaction/llm_calls/locks/), so a chunk is never written into a
-- folder being swapped.
-- Cache lookups (load_cached_ok) read only the bucket files of the wanted keys' buckets
-- plus every chunk not compacted yet; run_spending/run_usage read only the run's folder.
-- The folders add no column: the view over data/llm_calls/**/*.parquet also reads
-- _schema.parquet, which sits in no key=value folder, so DuckDB adds no hive column.
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
