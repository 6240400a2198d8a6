"""Stage subflows of the `build` flow, one module per stage; the single-stage `forge`
commands (ingest, generate, score, filter, export, report) run these same flows.

Each stage flow calls library entry points (`pipeline.*`) inside Prefect tasks of
sensible size, keys their cache on what the work depends on (see `flows.stages.cache`),
retries the tasks that talk to the network, and publishes artifacts
(`flows.stages.artifacts`).
"""
