"""NLAR task: two-clip reasoning questions from Clotho-AQA annotations.

See `pipeline.tasks.nlar.task` for the steps, `labels` for the question kinds and the
swapped-pair transformation, and docs/readme/tasks-reasonaqa-nlar.md for the `nlar-json`
format. Importing this package registers the offline rules of its prompts.
"""

from pipeline.tasks.nlar import offline as _offline  # noqa: F401  (registers rules)
from pipeline.tasks.nlar.task import TASK_ID, NLARTask

__all__ = ["TASK_ID", "NLARTask"]
