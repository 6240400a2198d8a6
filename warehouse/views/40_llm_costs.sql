-- llm_costs: tokens and cost of the LLM calls made, per run, prompt version, model and how
-- they were made (origin: request = live, batch-import = Batch API, offline-rule). Tokens
-- are what the endpoint reported (all attempts of a call); cost is NULL where the price
-- table had no price for the model. The task is the first part of the prompt name
-- (auditorybench/animal -> auditorybench).
CREATE OR REPLACE VIEW llm_costs AS
SELECT run_id,
       split_part(prompt_name, '/', 1) AS task_family,
       prompt_name,
       prompt_version,
       model,
       origin,
       count(*) AS calls,
       count(*) FILTER (WHERE status = 'ok') AS ok_calls,
       coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
       coalesce(sum(completion_tokens), 0) AS completion_tokens,
       sum(cost) AS cost,
       min(created_at) AS first_call,
       max(created_at) AS last_call
FROM llm_calls
GROUP BY ALL
ORDER BY first_call, prompt_name;
