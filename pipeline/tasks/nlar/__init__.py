"""NLAR task: two-clip reasoning questions from Clotho-AQA annotations.

See `pipeline.tasks.nlar.task` for the steps, `labels` for the question kinds and their
families, `planning` for which questions a pair gets, `questions` for the checks, re-asks
and swapped twins (`acoustic` and `ordinals` for two of the checks), `export` and the
README's NLAR section for the `nlar-json` format. Importing this package registers the
offline rules of its prompts.
"""

from pipeline.tasks.nlar import offline as _offline  # noqa: F401  (registers rules)
from pipeline.tasks.nlar.task import TASK_ID, NLARTask

__all__ = ["TASK_ID", "NLARTask"]
