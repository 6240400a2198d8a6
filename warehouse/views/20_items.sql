-- items: every item version with two derived columns users filter on:
--   is_current     the item belongs to the latest generation of its (task, split)
--   filter_status  the latest CLAP filter decision (kept | dropped | unscored) and its reason
CREATE OR REPLACE VIEW items AS
WITH latest_version AS (
    SELECT task, split, arg_max(generation_version, created_at) AS generation_version
    FROM item_records
    GROUP BY ALL
),
latest_filter AS (
    SELECT item_id,
           arg_max(filter_status, decided_at) AS filter_status,
           arg_max(filter_reason, decided_at) AS filter_reason,
           arg_max(policy, decided_at)        AS filter_policy
    FROM item_filters
    GROUP BY item_id
)
SELECT r.*,
       coalesce(r.generation_version = v.generation_version, false) AS is_current,
       coalesce(f.filter_status, 'unscored') AS filter_status,
       f.filter_reason,
       f.filter_policy
FROM item_records r
LEFT JOIN latest_version v USING (task, split)
LEFT JOIN latest_filter f USING (item_id);

-- items_current: the current version of every task and split.
CREATE OR REPLACE VIEW items_current AS
SELECT * FROM items WHERE is_current;
