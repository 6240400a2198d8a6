"""`generate_task`: one task's items, from clip selection to `item_records` partitions."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ForgeError
from pipeline.llm.offline import get_rule
from pipeline.storage.warehouse import utc_now
from pipeline.tasks.common.base import ItemDraft, Task, TaskContext, item_id, stable_hash
from pipeline.tasks.common.completion import (
    CALL_FAILURE_REASONS,
    DEFAULT_MAX_FAILED_SHARE,
    check_failed_share,
    mark_started,
    write_manifest,
)
from pipeline.tasks.common.dedup import mark_duplicates
from pipeline.tasks.common.records import GenerateSummary, ItemRecord
from pipeline.tasks.common.splits import SplitAssigner, reject_cross_split_items

if TYPE_CHECKING:
    from pipeline.llm import LLMConfig
    from pipeline.storage import Warehouse

ITEMS_TABLE = "item_records"


def items_partition(task: str, split: str, generation_version: str) -> str:
    return f"task={task}/split={split}/version={generation_version}"


def get_task(task_id: str) -> Task:
    from pipeline.tasks import TASKS

    if task_id not in TASKS:
        raise ForgeError(f"unknown task {task_id!r}; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[task_id]


def generation_version(
    task: Task, prompt_versions: dict[str, str], llm_config: Any, seed: int
) -> str:
    """Hash of everything that changes the items: prompts, model, seed, task settings.

    With the offline backend the rules play the model's part, so an edited rule gives a
    new version beside the old one rather than overwriting it.
    """
    backend = getattr(llm_config, "backend", None)
    offline_rules = (
        {name: get_rule(name).fingerprint for name in sorted(prompt_versions)}
        if backend == "offline"
        else None
    )
    return stable_hash(
        task.task_id,
        prompt_versions,
        backend,
        getattr(llm_config, "model", None),
        seed,
        task.config(),
        offline_rules,
        length=12,
    )


def generate_task(
    warehouse: Warehouse,
    task_id: str,
    llm_config: LLMConfig,
    run_id: str,
    prompts_override: Path | str | None = None,
    seed: int = 0,
    splits: list[str] | None = None,
    max_failed_share: float = DEFAULT_MAX_FAILED_SHARE,
) -> GenerateSummary:
    """Generate one task's items and write them (valid and rejected) to `item_records`.

    Rerunning with the same prompts/model/seed/settings rewrites the same partitions with
    the same item ids (LLM calls come from the `llm_calls` cache); anything else gives a
    new `generation_version`, written beside the old partitions. The version becomes
    current only when its completion manifest is written, last (see `completion`). More
    than `max_failed_share` of the LLM calls behind the items without an answer from the
    endpoint raises LLMEndpointError before anything is written; the previous version
    stays current.
    """
    from pipeline.llm import PromptLibrary

    task = get_task(task_id)
    prompts = PromptLibrary.load(override_dir=Path(prompts_override) if prompts_override else None)
    prompt_versions = {name: prompts.get(name).version for name in task.prompt_names}
    version = generation_version(task, prompt_versions, llm_config, seed)
    policy = task.split_policy.model_copy(update={"seed": seed})
    ctx = TaskContext(
        warehouse=warehouse,
        run_id=run_id,
        seed=seed,
        llm_config=llm_config,
        prompts=prompts,
        splits=SplitAssigner.from_warehouse(warehouse, policy),
        wanted_splits=frozenset(splits) if splits else None,
    )
    drafts = [d for d in task.build_items(ctx) if ctx.wants(d.split)]
    if leaked := reject_cross_split_items(ctx.splits, drafts):
        ctx.notes["cross_corpus_leak"] = leaked
    check_failed_share(warehouse, drafts, llm_config.endpoint, run_id, max_failed_share)
    records = to_records(task.task_id, drafts, version, run_id)
    duplicate_counts = mark_duplicates(records, task.dedup_text)
    finalize_counts = task.finalize(records)
    summary = GenerateSummary(task=task.task_id, run_id=run_id, generation_version=version)
    summary.notes = {**ctx.notes, "duplicates": duplicate_counts, **finalize_counts}
    if records:
        mark_started(warehouse, task.task_id, version, run_id)
    write_records(warehouse, task.task_id, version, records, summary)
    if splits is None:
        remove_stale_partitions(warehouse, task.task_id, version, summary.partitions)
    if records:  # a run with no items leaves the current version as it is
        summary.completion = write_manifest(warehouse, summary, splits)
    return summary


def remove_stale_partitions(
    warehouse: Warehouse, task_id: str, version: str, written: list[str]
) -> list[str]:
    """After a full run, drop this version's partitions of splits that now have no items.

    Only the same generation version is touched: older versions stay (nothing lost), and a
    partial run (`splits=[...]`) never removes the splits it did not generate.
    """
    prefix = f"task={task_id}/split="
    suffix = f"/version={version}"
    stale = [
        p
        for p in warehouse.partitions(ITEMS_TABLE)
        if p.startswith(prefix) and p.endswith(suffix) and p not in written
    ]
    for partition in stale:
        warehouse.delete_partition(ITEMS_TABLE, partition)
    return stale


def to_records(
    task_id: str, drafts: list[ItemDraft], version: str, run_id: str
) -> list[ItemRecord]:
    now = utc_now()
    records: list[ItemRecord] = []
    seen: dict[str, ItemDraft] = {}
    for draft in drafts:
        identifier = item_id(task_id, draft.clip_ids, draft.prompt_version, draft.generation_key)
        if identifier in seen:  # a task bug, not bad data: two drafts would overwrite each other
            raise ForgeError(
                f"task {task_id}: two items share generation_key {draft.generation_key!r} "
                f"for clips {draft.clip_ids}"
            )
        seen[identifier] = draft
        records.append(
            ItemRecord(
                item_id=identifier,
                task=task_id,
                subtask=draft.subtask,
                split=draft.split,
                clip_ids=draft.clip_ids,
                input=draft.input,
                answer=draft.answer,
                options=draft.options,
                spans=draft.spans,
                focus=draft.focus,
                facts=json.dumps(draft.facts, sort_keys=True) if draft.facts else None,
                generation_key=draft.generation_key,
                generation_version=version,
                prompt_name=draft.prompt_name,
                prompt_version=draft.prompt_version,
                model=draft.model,
                llm_call_key=draft.llm_call_key,
                validation_status="rejected" if draft.reasons else "valid",
                validation_reasons=list(dict.fromkeys(draft.reasons)),
                run_id=run_id,
                created_at=now,
            )
        )
    return records


def write_records(
    warehouse: Warehouse,
    task_id: str,
    version: str,
    records: list[ItemRecord],
    summary: GenerateSummary,
) -> None:
    by_split: dict[str, list[ItemRecord]] = {}
    for record in sorted(records, key=lambda r: r.item_id):
        by_split.setdefault(record.split, []).append(record)
    reasons: Counter[str] = Counter()
    for split, split_records in sorted(by_split.items()):
        partition = items_partition(task_id, split, version)
        warehouse.write_partition(ITEMS_TABLE, partition, [r.model_dump() for r in split_records])
        summary.partitions.append(partition)
        valid = sum(r.validation_status == "valid" for r in split_records)
        summary.valid_by_split[split] = valid
        summary.rejected_by_split[split] = len(split_records) - valid
        for record in split_records:
            reasons.update(record.validation_reasons)
        summary.failed_calls_by_split[split] = sum(
            1 for r in split_records if CALL_FAILURE_REASONS.intersection(r.validation_reasons)
        )
    summary.items = len(records)
    summary.valid = sum(summary.valid_by_split.values())
    summary.rejected = summary.items - summary.valid
    summary.rejected_by_reason = dict(sorted(reasons.items()))
    summary.failed_calls = sum(summary.failed_calls_by_split.values())
