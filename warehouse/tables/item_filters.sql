-- item_filters: CLAP filter decisions, one row per (item, policy run). Append-only; the
-- latest decision per item is what `items.filter_status` shows. Scores themselves live in
-- clap_scores, so a new policy re-filters without recomputing embeddings.
-- Partitions: data/item_filters/task=<task>/policy=<policy name>/run=<run_id>.parquet (each run appends)
CREATE TABLE item_filters (
    item_id        VARCHAR NOT NULL,
    task           VARCHAR NOT NULL,
    policy         VARCHAR NOT NULL,  -- policy name, e.g. absolute, relative, percentile, topk, task-rule
    policy_params  VARCHAR,           -- JSON of the policy's parameters
    filter_status  VARCHAR NOT NULL,  -- kept | dropped | unscored
    filter_reason  VARCHAR,           -- why (e.g. 'score 0.21 < threshold 0.30', 'no CLAP checkpoint configured')
    backend        VARCHAR,           -- CLAP backend (laion | hf) behind the scores
    checkpoint     VARCHAR,           -- CLAP checkpoint id behind the scores
    run_id         VARCHAR NOT NULL,
    decided_at     TIMESTAMPTZ NOT NULL
);
