-- Counts of rejected input per stage, source and reason.
CREATE OR REPLACE VIEW rejects_summary AS
SELECT stage, source, reason, action, count(*) AS n
FROM rejects
GROUP BY ALL
ORDER BY stage, source, n DESC;
