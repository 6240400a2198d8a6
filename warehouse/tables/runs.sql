-- runs: one row per orchestrated flow run (build, regenerate, ...), written when the run
-- starts (status 'running') and replaced when it ends (completed | failed).
-- Partitions: data/runs/flow=<flow name>/run=<flow run id>.parquet (one file per run, so a
-- crashed run keeps its 'running' row and concurrent runs never rewrite each other).
-- Kept in step with flows.runs.RunRecord.
CREATE TABLE runs (
    run_id            VARCHAR NOT NULL,  -- Prefect flow run id (or a local id outside Prefect)
    flow_name         VARCHAR NOT NULL,  -- build | regenerate | ...
    parameters        VARCHAR,           -- JSON of the run's parameters (no secrets)
    tasks             VARCHAR[],         -- dataset tasks the run covered
    prompt_versions   VARCHAR,           -- JSON {prompt_name: [prompt_version, ...]} of the current items afterwards
    generation_versions VARCHAR,         -- JSON {task: {split: generation_version}} = the dataset version
    llm_backend       VARCHAR,           -- offline | openai
    model             VARCHAR,           -- LLM model id ('offline-rules' for the offline backend)
    llm_endpoint      VARCHAR,           -- host of the LLM endpoint (never a key), NULL offline
    clap_checkpoint   VARCHAR,           -- CLAP checkpoint id, or NULL when items stay unscored
    code_version      VARCHAR,           -- git sha of the checkout ('+dirty' when modified), NULL if unknown
    status            VARCHAR NOT NULL,  -- running | completed | failed
    error             VARCHAR,           -- first line of the failure, when failed
    counts            VARCHAR,           -- JSON of per-stage counts (items valid/rejected, kept/dropped, ...)
    started_at        TIMESTAMPTZ NOT NULL,
    finished_at       TIMESTAMPTZ,
    recorded_at       TIMESTAMPTZ NOT NULL
);
