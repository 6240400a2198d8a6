-- item_records: every generated dataset item, every version, valid or not.
-- Partitions: data/item_records/task=<task>/split=<split>/version=<generation_version>.parquet.
-- Rerunning the same generation replaces its own partition (same item_ids); a new prompt,
-- model or seed gives a new generation_version, written beside the old one, never over it.
-- Users query the view `items` (warehouse/views/20_items.sql), which adds is_current and
-- the latest CLAP filter decision; `items_current` keeps only the current version.
CREATE TABLE item_records (
    item_id            VARCHAR NOT NULL,  -- sha256(task, clip_ids, prompt_version, generation_key)[:24]
    task               VARCHAR NOT NULL,  -- auditorybench-animal | auditorybench-pitch | reasonaqa | nlar
    subtask            VARCHAR,           -- e.g. mcq, detail, difference-short, entailment, binary, wiki
    split              VARCHAR NOT NULL,  -- train | dev | test | wiki
    clip_ids           VARCHAR[],         -- source clip(s), in the order the item uses them
    input              VARCHAR,           -- the sentence (with [MASK]) or the question
    answer             VARCHAR,
    options            VARCHAR[],         -- multiple-choice options, in displayed order
    spans              VARCHAR[],         -- auditory-knowledge spans, verbatim substrings of input
    focus              VARCHAR,           -- question focus: events, sources, scene, signal, semantics, emotion
    facts              VARCHAR,           -- JSON: the measured/annotated facts behind the label
    generation_key     VARCHAR,           -- distinguishes several generations for the same clips/prompt
    generation_version VARCHAR NOT NULL,  -- hash of (prompt versions, model, seed, task config)
    prompt_name        VARCHAR,           -- NULL for template (wiki) items
    prompt_version     VARCHAR,
    model              VARCHAR,           -- LLM model id, 'offline-rules', or 'template'
    llm_call_key       VARCHAR,           -- key into llm_calls (NULL when no LLM call)
    validation_status  VARCHAR NOT NULL,  -- valid | rejected
    validation_reasons VARCHAR[],         -- machine-readable reason codes when rejected
    run_id             VARCHAR NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL
);
