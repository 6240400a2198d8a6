-- item_reviews: a person's accept / reject of an item, made in the review viewer
-- (`forge view`). Append-only: one row per decision; the latest decision per item counts
-- (view `item_review_latest`). Exports leave out items whose latest decision is 'reject'.
-- Partitions: data/item_reviews/task=<task>/review=<time>-<token>.parquet (one file per
-- decision, written atomically). Kept in step with pipeline.viewer.reviews.ReviewRecord.
CREATE TABLE item_reviews (
    item_id      VARCHAR NOT NULL,
    task         VARCHAR NOT NULL,
    decision     VARCHAR NOT NULL,  -- accept | reject
    reason       VARCHAR,           -- free text; required for reject
    reviewer     VARCHAR NOT NULL,
    generation_version VARCHAR,     -- the item's version when it was reviewed
    run_id       VARCHAR NOT NULL,  -- the viewer session that recorded it
    reviewed_at  TIMESTAMPTZ NOT NULL
);
