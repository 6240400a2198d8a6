"""Dataset tasks: one package per task, one shared contract (`pipeline.tasks.common`).

Entry points (each takes a `Warehouse`; flows and the CLI call only these)::

    generate_task(warehouse, task_id, llm_config, run_id, prompts_override=None, seed=0,
                  splits=None) -> GenerateSummary
    export_task(warehouse, task_id, fmt, out_dir, include_dropped=False,
                extra_columns=False) -> list[Path]
    report_task(warehouse, task_id) -> TaskReport          # .markdown()

The contract a task implements (`pipeline.tasks.common.base.Task`):

* `task_id` (the value of `items.task`), `prompt_names` (templates under `prompts/` it
  renders; their versions go into the generation version), `export_formats` (formats
  beyond the common `hf` and `jsonl`), `label_field` (column the report balances),
  `dedup_text(record)` + `dedup_sql` (what counts as a duplicate; default the input),
  `split_policy`, `config()` (settings that change items).
* `build_items(ctx: TaskContext) -> list[ItemDraft]`: select clips (`ctx.clips(...)`),
  assign splits (`ctx.splits.clip_split(clip_id)`, `ctx.splits.pair_split(a, b)`: None
  means the pair is not formed), build `LLMRequest`s and run them with `ctx.run_llm(...)`,
  turn each result into an `ItemDraft` (use `llm_outcome_reasons(result)` and
  `draft_lineage(result)`), run validators (`pipeline.tasks.common.validators`) and put
  their reason codes in `draft.reasons` (non-empty = rejected, row still stored). The
  `generation_key` must be unique per (clip_ids, prompt_version) within the task.
* optional hooks: `finalize(records)` after dedup (e.g. label balancing by rejecting a
  surplus with a reason), `export(fmt, rows, out_dir, options)`,
  `report_sections(rows)`.
* Offline LLM rules: the task package registers `@offline_rule("<prompt name>")`
  functions when it is imported; importing `pipeline.tasks` imports every task package.

`generate_task` then, identically for every task: item ids (sha256 of task, clip ids,
prompt version and generation key), generation version, exact + normalised dedup across
all splits (precedence test > dev > train > wiki), the `finalize` hook, and one atomic
`item_records` partition per split: `task=<t>/split=<s>/version=<generation_version>`.

Adding a task (one line each, in the `TASKS` dict below)::

    from pipeline.tasks.reasonaqa import ReasonAQATask     # next to the other imports
    "reasonaqa": ReasonAQATask(),                          # inside TASKS

(and likewise `from pipeline.tasks.nlar import NLARTask` / `"nlar": NLARTask(),`).
"""

from __future__ import annotations

from pipeline.tasks.auditorybench import AnimalTask, PitchTask
from pipeline.tasks.common.base import Task
from pipeline.tasks.common.export import export_task
from pipeline.tasks.common.generate import generate_task
from pipeline.tasks.common.records import GenerateSummary, ItemRecord
from pipeline.tasks.common.report import TaskReport, report_task
from pipeline.tasks.nlar import NLARTask
from pipeline.tasks.reasonaqa import ReasonAQATask

TASKS: dict[str, Task] = {
    "auditorybench-animal": AnimalTask(),
    "auditorybench-pitch": PitchTask(),
    "reasonaqa": ReasonAQATask(),
    "nlar": NLARTask(),
}

__all__ = [
    "TASKS",
    "GenerateSummary",
    "ItemRecord",
    "Task",
    "TaskReport",
    "export_task",
    "generate_task",
    "report_task",
]
