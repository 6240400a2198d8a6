"""Prefect wiring over `pipeline`: one flow per stage, plus the `build` parent flow.

Importing this package sets Prefect's offline defaults (no telemetry, no analytics),
which a user can still override in the environment.
"""

import os

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
