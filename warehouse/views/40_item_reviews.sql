-- item_review_latest: the latest review decision per item (a later accept undoes a reject).
-- review_agreement: per task, how reviewers' latest decisions compare with the automatic
-- filters (validation + CLAP): `agree` = an accepted item the filters kept (or left
-- unscored), or a rejected item the filters rejected or dropped.
CREATE OR REPLACE VIEW item_review_latest AS
SELECT item_id,
       arg_max(task, reviewed_at)     AS task,
       arg_max(decision, reviewed_at) AS decision,
       arg_max(reason, reviewed_at)   AS reason,
       arg_max(reviewer, reviewed_at) AS reviewer,
       max(reviewed_at)               AS reviewed_at,
       count(*)                       AS reviews
FROM item_reviews
GROUP BY item_id;

CREATE OR REPLACE VIEW review_agreement AS
SELECT r.task,
       r.decision,
       CASE WHEN i.validation_status <> 'valid' THEN 'rejected by validation'
            WHEN i.filter_status = 'dropped' THEN 'dropped by CLAP'
            ELSE 'passed (' || i.filter_status || ')' END AS automatic,
       count(*) AS items,
       count(*) FILTER (WHERE (r.decision = 'accept') = (i.validation_status = 'valid'
                                AND i.filter_status <> 'dropped')) AS agree
FROM item_review_latest r
JOIN items i USING (item_id)
GROUP BY ALL
ORDER BY r.task, r.decision, automatic;
