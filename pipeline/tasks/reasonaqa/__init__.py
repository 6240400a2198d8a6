"""ReasonAQA (Mellow) task: MCQ, detail, difference, entailment and binary items.

See `pipeline.tasks.reasonaqa.task` for the item families (clip selection in `selection`,
item drafts and their validators in `drafts`) and the README for the researcher's view. Importing this package registers the
offline rules of its prompts (`pipeline.tasks.reasonaqa.offline`).
"""

from pipeline.tasks.reasonaqa import offline as _offline  # noqa: F401  (registers rules)
from pipeline.tasks.reasonaqa.task import TASK_ID, ReasonAQATask

__all__ = ["TASK_ID", "ReasonAQATask"]
