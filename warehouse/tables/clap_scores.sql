-- clap_scores: raw CLAP cosine scores of item texts against clips, before any threshold.
-- Filter policies (pipeline.clap.filter) read these and append decisions to item_filters,
-- so re-filtering never recomputes embeddings. A pair that could not be scored has
-- score NULL and unscored_reason set.
-- Partitions: data/clap_scores/task=<task>/model=<hash of backend+checkpoint+crop policy>.parquet,
-- replaced by each scoring run (rows of items no longer current are carried over).
-- Kept in step with pipeline.clap.score.ClapScoreRecord.
CREATE TABLE clap_scores (
    item_id          VARCHAR NOT NULL,
    task             VARCHAR NOT NULL,
    clip_id          VARCHAR,            -- NULL when the item has no clip to score against
    text             VARCHAR,            -- the text scored
    text_role        VARCHAR NOT NULL,   -- span, span1, span1_other, option_b, answer_vocab:dog, caption, event, ...
    is_primary       BOOLEAN NOT NULL,   -- the item's own generated text (what generic policies judge)
    backend          VARCHAR,
    checkpoint       VARCHAR,
    crop_policy      VARCHAR,
    score            DOUBLE,             -- cosine similarity in [-1, 1]; NULL when unscored
    unscored_reason  VARCHAR,
    run_id           VARCHAR NOT NULL,
    scored_at        TIMESTAMPTZ NOT NULL
);
