-- leakage: one row per (sound group, task) whose exported items put the sound in more
-- than one split — within the task, or across tasks. Empty when the exports are clean.
-- Exported = items_current that are valid and not dropped by the CLAP filter.
--   splits      the splits this task puts the group in
--   all_splits  the splits every task together puts it in
--   linked_by   how the group's clips were linked (link kinds of all its members)
CREATE OR REPLACE VIEW leakage AS
WITH exported AS (
    SELECT i.task, i.split, unnest(i.clip_ids) AS clip_id
    FROM items_current i
    WHERE i.validation_status = 'valid' AND i.filter_status <> 'dropped'
),
placed AS (
    SELECT e.task, e.split, e.clip_id, coalesce(g.sound_group, e.clip_id) AS sound_group
    FROM exported e
    LEFT JOIN sound_groups g USING (clip_id)
),
group_kinds AS (
    SELECT sound_group,
           string_agg(DISTINCT kind, ',' ORDER BY kind) AS linked_by
    FROM (SELECT sound_group, unnest(string_split(linked_by, ',')) AS kind FROM sound_groups)
    GROUP BY sound_group
),
all_tasks AS (
    SELECT sound_group, list(DISTINCT split ORDER BY split) AS all_splits
    FROM placed
    GROUP BY sound_group
    HAVING count(DISTINCT split) > 1
)
SELECT p.sound_group,
       p.task,
       list(DISTINCT p.split ORDER BY p.split) AS splits,
       any_value(a.all_splits) AS all_splits,
       count(DISTINCT p.clip_id) AS clips,
       coalesce(any_value(k.linked_by), 'self') AS linked_by
FROM placed p
JOIN all_tasks a USING (sound_group)
LEFT JOIN group_kinds k USING (sound_group)
GROUP BY p.sound_group, p.task
ORDER BY p.sound_group, p.task;
