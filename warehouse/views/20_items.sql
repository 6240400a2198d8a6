-- items: every item version with two derived columns users filter on:
--   is_current     the item belongs to the version its task's latest completion manifest
--                  (table `generations`) names for its split. One manifest covers every
--                  split of a task, so all splits switch version together, and a run that
--                  failed or was killed (no manifest) never becomes current.
--                  A task with no row at all in `generations` (items written before
--                  manifests existed, or by hand) falls back to its newest version, for
--                  the whole task. A task whose first run started but never completed
--                  has nothing current.
--   filter_status  the latest CLAP filter decision (kept | dropped | unscored) and its reason
CREATE OR REPLACE VIEW items AS
WITH latest_manifest AS (
    SELECT task, arg_max(manifest_id, completed_at) AS manifest_id
    FROM generations
    WHERE state = 'complete'
    GROUP BY task
),
current_version AS (
    SELECT g.task, g.split, g.generation_version
    FROM generations g
    JOIN latest_manifest m USING (task, manifest_id)
    UNION ALL
    SELECT r.task, s.split, arg_max(r.generation_version, r.created_at) AS generation_version
    FROM item_records r
    CROSS JOIN (SELECT DISTINCT split FROM item_records) s
    WHERE r.task NOT IN (SELECT task FROM generations)
    GROUP BY r.task, s.split
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
       v.generation_version IS NOT NULL AS is_current,
       coalesce(f.filter_status, 'unscored') AS filter_status,
       f.filter_reason,
       f.filter_policy
FROM item_records r
LEFT JOIN current_version v
       ON v.task = r.task AND v.split = r.split AND v.generation_version = r.generation_version
LEFT JOIN latest_filter f USING (item_id);

-- items_current: the current version of every task, all its splits.
CREATE OR REPLACE VIEW items_current AS
SELECT * FROM items WHERE is_current;
