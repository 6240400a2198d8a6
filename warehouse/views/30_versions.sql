-- Item versions: what each generation produced, and how two versions differ.
-- A new prompt, model or seed writes a new generation_version beside the old ones
-- (`forge regenerate`); `items.is_current` marks the version named by the task's latest
-- completion manifest (table `generations`), for all its splits at once.

-- item_versions: one row per (task, split, generation_version), newest last.
CREATE OR REPLACE VIEW item_versions AS
SELECT task,
       split,
       generation_version,
       string_agg(DISTINCT prompt_name || '@' || prompt_version, ', ' ORDER BY prompt_name || '@' || prompt_version) AS prompts,
       string_agg(DISTINCT model, ', ' ORDER BY model) AS models,
       count(*) AS items,
       count(*) FILTER (WHERE validation_status = 'valid') AS valid,
       count(*) FILTER (WHERE validation_status = 'rejected') AS rejected,
       count(*) FILTER (WHERE validation_status = 'valid' AND filter_status = 'kept') AS kept,
       count(*) FILTER (WHERE validation_status = 'valid' AND filter_status = 'dropped') AS dropped,
       count(*) FILTER (WHERE validation_status = 'valid' AND filter_status = 'unscored') AS unscored,
       bool_or(is_current) AS is_current,
       min(created_at) AS created_at,
       arg_min(run_id, created_at) AS run_id
FROM items
GROUP BY task, split, generation_version
ORDER BY task, split, created_at;

-- prompt_versions: items per prompt version (a version may span several splits).
CREATE OR REPLACE VIEW prompt_versions AS
SELECT task,
       prompt_name,
       prompt_version,
       count(*) AS items,
       count(*) FILTER (WHERE validation_status = 'valid') AS valid,
       count(*) FILTER (WHERE validation_status = 'rejected') AS rejected,
       bool_or(is_current) AS is_current,
       min(created_at) AS first_created_at
FROM items
WHERE prompt_name IS NOT NULL
GROUP BY task, prompt_name, prompt_version
ORDER BY task, prompt_name, first_created_at;

-- version_diff(task, version_a, version_b): the two versions side by side, one row each,
-- with the mean CLAP score of their items' own texts (primary pairs, any checkpoint):
--   SELECT * FROM version_diff('auditorybench-animal', '<old version>', '<new version>');
CREATE OR REPLACE MACRO version_diff(task_name, version_a, version_b) AS TABLE
WITH item_scores AS (
    SELECT item_id, avg(score) AS clap_score
    FROM clap_scores
    WHERE task = task_name AND is_primary AND score IS NOT NULL
    GROUP BY item_id
)
SELECT min(CASE WHEN i.generation_version = version_a THEN 'a' ELSE 'b' END) AS side,
       i.generation_version,
       count(*) AS items,
       count(*) FILTER (WHERE i.validation_status = 'valid') AS valid,
       count(*) FILTER (WHERE i.validation_status = 'rejected') AS rejected,
       count(*) FILTER (WHERE i.validation_status = 'valid' AND i.filter_status = 'kept') AS kept,
       count(*) FILTER (WHERE i.validation_status = 'valid' AND i.filter_status = 'dropped') AS dropped,
       count(*) FILTER (WHERE i.validation_status = 'valid' AND i.filter_status = 'unscored') AS unscored,
       count(s.clap_score) AS scored_items,
       avg(s.clap_score) AS mean_clap_score,
       bool_or(i.is_current) AS is_current
FROM items i
LEFT JOIN item_scores s USING (item_id)
WHERE i.task = task_name AND i.generation_version IN (version_a, version_b)
GROUP BY i.generation_version
ORDER BY side;

-- version_answers(task, version_a, version_b): answer distribution of valid items, per answer.
CREATE OR REPLACE MACRO version_answers(task_name, version_a, version_b) AS TABLE
SELECT answer,
       count(*) FILTER (WHERE generation_version = version_a) AS n_a,
       count(*) FILTER (WHERE generation_version = version_b) AS n_b
FROM items
WHERE task = task_name
  AND generation_version IN (version_a, version_b)
  AND validation_status = 'valid'
GROUP BY answer
ORDER BY n_a + n_b DESC, answer;

-- version_changes(task, version_a, version_b): item by item, matched on what the item is
-- about (split, subtask, clips, generation key): the text and answer in each version.
-- `change` is one of: unchanged | changed | only_a | only_b.
CREATE OR REPLACE MACRO version_changes(task_name, version_a, version_b) AS TABLE
WITH a AS (
    SELECT * FROM items WHERE task = task_name AND generation_version = version_a
), b AS (
    SELECT * FROM items WHERE task = task_name AND generation_version = version_b
)
SELECT coalesce(a.split, b.split) AS split,
       coalesce(a.subtask, b.subtask) AS subtask,
       coalesce(a.clip_ids, b.clip_ids) AS clip_ids,
       CASE
           WHEN a.item_id IS NULL THEN 'only_b'
           WHEN b.item_id IS NULL THEN 'only_a'
           WHEN a.input IS NOT DISTINCT FROM b.input
                AND a.answer IS NOT DISTINCT FROM b.answer
                AND a.validation_status = b.validation_status THEN 'unchanged'
           ELSE 'changed'
       END AS change,
       a.input AS input_a,
       b.input AS input_b,
       a.answer AS answer_a,
       b.answer AS answer_b,
       a.validation_status AS status_a,
       b.validation_status AS status_b,
       a.filter_status AS filter_a,
       b.filter_status AS filter_b,
       a.item_id AS item_id_a,
       b.item_id AS item_id_b
FROM a
FULL OUTER JOIN b
  ON a.split = b.split
 AND a.subtask IS NOT DISTINCT FROM b.subtask
 AND a.clip_ids = b.clip_ids
 AND a.generation_key IS NOT DISTINCT FROM b.generation_key
ORDER BY split, change, clip_ids;
