"""Shared machinery of the dataset tasks (see `pipeline.tasks` for the contract)."""

from pipeline.tasks.common.base import (
    MODEL_TEMPLATE,
    ExportOptions,
    ItemDraft,
    Task,
    TaskContext,
    draft_lineage,
    item_id,
    llm_outcome_reasons,
    stable_hash,
)
from pipeline.tasks.common.records import GenerateSummary, ItemRecord
from pipeline.tasks.common.splits import SplitAssigner, SplitPolicy

__all__ = [
    "MODEL_TEMPLATE",
    "ExportOptions",
    "GenerateSummary",
    "ItemDraft",
    "ItemRecord",
    "SplitAssigner",
    "SplitPolicy",
    "Task",
    "TaskContext",
    "draft_lineage",
    "item_id",
    "llm_outcome_reasons",
    "stable_hash",
]
