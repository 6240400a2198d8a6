-- nlar_events: per-event annotations of each Clotho-AQA clip, cleaned from its QA by the
-- NLAR task (majority vote per question), with the LLM's one-line acoustic description of
-- the event (requested once per event name, so every clip shares the cached call); only
-- descriptions with status ok reach the question prompts.
-- Partitions: data/nlar_events/split=<split>.parquet, replaced by each NLAR generation run.
-- Kept in step with pipeline.tasks.nlar.task.NLAREventRecord.
CREATE TABLE nlar_events (
    clip_id                    VARCHAR NOT NULL,
    split                      VARCHAR NOT NULL,  -- train | dev | test (the clip's split)
    event                      VARCHAR NOT NULL,  -- lexicon event name, or the question's own words
    present                    BOOLEAN,           -- NULL: not annotated, or conflicting answers
    count                      INTEGER,           -- occurrences when a how-many question said so
    position                   VARCHAR,           -- beginning | middle | end | throughout
    not_positions              VARCHAR[],         -- positions a yes/no question denied
    evidence                   VARCHAR,           -- JSON list: question, answers, majority, kind
    description                VARCHAR,           -- the reply's description (NULL if none)
    description_status         VARCHAR NOT NULL,  -- ok | too_long (over 9 words: unused) | declined | failed
    description_call_key       VARCHAR,           -- key into llm_calls
    description_model          VARCHAR,
    description_prompt_version VARCHAR,
    run_id                     VARCHAR NOT NULL,
    created_at                 TIMESTAMPTZ NOT NULL
);
