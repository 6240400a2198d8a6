"""`generate_task`: one task's items, from clip selection to `item_records` partitions."""

from __future__ import annotations

import contextlib
import gc
import json
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ForgeError
from pipeline.llm.offline import get_rule
from pipeline.llm.recording import compact_stale
from pipeline.storage.warehouse import utc_now
from pipeline.tasks.common.base import ItemDraft, Task, TaskContext, item_id, stable_hash
from pipeline.tasks.common.completion import (
    DEFAULT_MAX_FAILED_SHARE,
    CallFailures,
    check_failed_share,
    mark_started,
    write_manifest,
)
from pipeline.tasks.common.records import GenerateSummary, ItemRecord
from pipeline.tasks.common.splits import SplitAssigner, reject_cross_split_items
from pipeline.tasks.common.staging import ITEMS_TABLE, StagedItems

if TYPE_CHECKING:
    from pipeline.llm import LLMConfig
    from pipeline.storage import Warehouse

STAGE_CHUNK = 5_000  # drafts turned into records and staged at a time

# Python's full garbage collection walks every tracked object. A generation keeps
# corpus-sized structures alive for the whole run (the split map, per-clip fields, call
# hashes) while items pass through in chunks of thousands; a chunk that outlives two young
# collections counts toward the next full one, so at Python's default (one full collection
# per 10 middle-generation ones) a full walk came every few chunks, and their total cost
# grew with items x clips (the pitch task at full LAION size: 304 full collections, 45 s of
# 237 s CPU; waiting for 100: 36 of them, 6 s). Chunks are freed by reference counting, so
# this changes no result; cyclic garbage that reached the oldest generation just lives a
# little longer.
FULL_COLLECTION_EVERY = 100
_collection_lock = threading.Lock()
_collection_users = 0
_default_thresholds: tuple[int, int, int] = gc.get_threshold()


@contextlib.contextmanager
def rarer_full_collections() -> Iterator[None]:
    """Full garbage collections at most every FULL_COLLECTION_EVERY middle-generation ones
    while any generation runs in this process (threads share the setting: the last one to
    finish restores what was set before the first began)."""
    global _collection_users, _default_thresholds
    with _collection_lock:
        if _collection_users == 0:
            _default_thresholds = gc.get_threshold()
            young, middle, full = _default_thresholds
            gc.set_threshold(young, middle, max(full, FULL_COLLECTION_EVERY))
        _collection_users += 1
    try:
        yield
    finally:
        with _collection_lock:
            _collection_users -= 1
            if _collection_users == 0:
                gc.set_threshold(*_default_thresholds)


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


@rarer_full_collections()
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

    Memory stays bounded whatever the corpus size: drafts arrive from the task in chunks
    and are staged to a Parquet file outside the tables as they come; only the ledger's
    few columns per item are kept for the whole-task decisions (duplicates, the task's
    `finalize`), which are applied while the staged rows are copied into the partitions.
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
    summary = GenerateSummary(task=task.task_id, run_id=run_id, generation_version=version)
    compact_stale(warehouse)  # chunks of killed runs: merged before this run's lookups
    with StagedItems(warehouse, task) as staged:
        try:
            leaked, failures = _stage(task, ctx, version, staged)
        finally:
            ctx.close()
        staged.finish()
        ledger = staged.ledger
        if leaked:
            ctx.notes["cross_corpus_leak"] = leaked
        check_failed_share(
            warehouse, ledger, failures, llm_config.endpoint, run_id, max_failed_share
        )
        staged.refuse_repeated_item_ids()
        duplicate_counts = ledger.mark_duplicates()
        finalize_counts = task.finalize(ledger)
        summary.notes = {**ctx.notes, "duplicates": duplicate_counts, **finalize_counts}
        if len(ledger):
            mark_started(warehouse, task.task_id, version, run_id)
        staged.write_partitions(version, summary)
    if splits is None:
        remove_stale_partitions(warehouse, task.task_id, version, summary.partitions)
    if summary.items:  # a run with no items leaves the current version as it is
        summary.completion = write_manifest(warehouse, summary, splits)
    return summary


def _stage(
    task: Task, ctx: TaskContext, version: str, staged: StagedItems
) -> tuple[int, CallFailures]:
    """Build the task's drafts chunk by chunk into records, staged with their ledger rows."""
    leaked = 0
    failures = CallFailures()
    for chunk in _chunks(d for d in task.build_items(ctx) if ctx.wants(d.split)):
        leaked += reject_cross_split_items(ctx.splits, chunk)
        records = to_records(task.task_id, chunk, version, ctx.run_id)
        failures.add(records)
        staged.add(records)
    return leaked, failures


def _chunks(drafts: Iterable[ItemDraft], size: int = STAGE_CHUNK) -> Iterator[list[ItemDraft]]:
    chunk: list[ItemDraft] = []
    for draft in drafts:
        chunk.append(draft)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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
    """Records of drafts (ids unique across a run are checked by `StagedItems`)."""
    now = utc_now()
    return [
        ItemRecord(
            item_id=item_id(task_id, draft.clip_ids, draft.prompt_version, draft.generation_key),
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
        for draft in drafts
    ]
