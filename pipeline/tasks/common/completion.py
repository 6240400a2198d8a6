"""Completion manifests: the one atomic step that makes a generation current.

`generate_task` writes a version's `item_records` partitions (one per split) first and
its manifest (table `generations`) last. The manifest is a single Parquet file, replaced
by rename, naming the version of every split of the task; the view `items` takes the
latest manifest of each task as its current data. So:

* all splits of a task switch version together (a clip can never be in the dev split of
  one version and the train split of another in `items_current`);
* a run that fails (endpoint down, too many failed calls), is killed, or hits a full disk
  writes no manifest, and the previous version stays current and exports unchanged (a
  'started' row written before the items keeps a task's first, unfinished run from
  being taken for items written before manifests existed);
* a split-limited run (`--split dev`) names its own version for the splits it generated
  and carries the other splits' current versions over from the previous manifest.

A generation whose LLM calls failed beyond `max_failed_share` (default 0.2) is refused
before anything is written, whatever the engine itself decided (`check_failed_share`).
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from pipeline.errors import LLMEndpointError
from pipeline.storage.warehouse import utc_now
from pipeline.tasks.common import validators as v
from pipeline.tasks.common.ledger import text_hash

if TYPE_CHECKING:
    from pipeline.storage import Warehouse
    from pipeline.tasks.common.ledger import ItemLedger
    from pipeline.tasks.common.records import GenerateSummary, ItemRecord

GENERATIONS_TABLE = "generations"
DEFAULT_MAX_FAILED_SHARE = 0.2
# Reasons meaning "the call did not produce a usable reply": the next run resends it.
CALL_FAILURE_REASONS = frozenset(
    {v.LLM_ERROR, v.LLM_REFUSED, v.SCHEMA_INVALID, v.LLM_TRUNCATED, v.LLM_EMPTY_REPLY}
)
# Reasons meaning "the endpoint did not answer": these count against max_failed_share.
ENDPOINT_FAILURE_REASONS = frozenset({v.LLM_ERROR, v.LLM_REFUSED})


class GenerationRow(BaseModel):
    """One row of `generations` (warehouse/tables/generations.sql)."""

    model_config = ConfigDict(extra="forbid")

    manifest_id: str
    state: Literal["started", "complete"] = "complete"
    task: str
    split: str
    generation_version: str
    generated: bool
    items: int | None = None
    valid: int | None = None
    failed_calls: int | None = None
    run_id: str
    completed_at: datetime


def manifest_partition(task_id: str, manifest_id: str) -> str:
    return f"task={task_id}/manifest={manifest_id}"


class CallFailures:
    """The endpoint failures behind a generation's records, gathered as they stream by:
    the distinct failed calls (64-bit key hashes), a sample of their keys for the cause,
    and the failure reasons."""

    SAMPLE_KEYS = 1_000

    def __init__(self) -> None:
        self.failed_calls: set[int] = set()
        self.sample_keys: list[str] = []
        self.reasons: Counter[str] = Counter()

    def add(self, records: Iterable[ItemRecord]) -> None:
        for record in records:
            if record.llm_call_key is None:
                continue
            failed = ENDPOINT_FAILURE_REASONS.intersection(record.validation_reasons)
            if not failed:
                continue
            key_hash = text_hash(record.llm_call_key)
            if key_hash not in self.failed_calls:
                self.failed_calls.add(key_hash)
                if len(self.sample_keys) < self.SAMPLE_KEYS:
                    self.sample_keys.append(record.llm_call_key)
            self.reasons.update(failed)


def check_failed_share(
    warehouse: Warehouse,
    ledger: ItemLedger,
    failures: CallFailures,
    endpoint: str,
    run_id: str,
    max_failed_share: float,
) -> None:
    """Raise LLMEndpointError when more than `max_failed_share` of the LLM calls behind the
    items got no answer from the endpoint (so nothing of this run is written). Calls, not
    items, are counted: one call may serve several items."""
    calls = ledger.distinct_calls()
    failed = len(failures.failed_calls)
    if not calls or failed <= max_failed_share * calls:
        return
    raise LLMEndpointError(
        endpoint, _main_cause(warehouse, run_id, failures), failed=failed, total=calls
    )


def _main_cause(warehouse: Warehouse, run_id: str, failures: CallFailures) -> str:
    """The most frequent error text of this run's failed calls (already redacted by the
    engine; from a sample of them), else the most frequent reason code."""
    keys = sorted(failures.sample_keys)
    rows: list[dict] = []
    if keys and warehouse.partitions("llm_calls"):
        rows = warehouse.rows(
            "SELECT error, count(*) AS n FROM llm_calls WHERE run_id = ? AND status <> 'ok' "
            "AND error IS NOT NULL AND call_key IN (SELECT unnest(?::VARCHAR[])) "
            "GROUP BY error ORDER BY n DESC, error LIMIT 1",
            [run_id, keys],
        )
    if rows:
        return (rows[0]["error"].strip().splitlines() or ["failed"])[0][:200]
    return failures.reasons.most_common(1)[0][0]


def write_manifest(
    warehouse: Warehouse,
    summary: GenerateSummary,
    generated_splits: list[str] | None,
) -> str:
    """Make `summary`'s version current: one manifest file naming every split's version.

    `generated_splits` None: a full run, the manifest names only this version's splits.
    Otherwise the splits not generated keep their current version (carried over)."""
    task_id = summary.task
    now = utc_now()
    manifest_id = now.strftime("%Y%m%dT%H%M%S%f") + "-" + secrets.token_hex(4)
    rows: list[GenerationRow] = []
    for split in sorted(set(summary.valid_by_split) | set(summary.rejected_by_split)):
        valid = summary.valid_by_split.get(split, 0)
        rows.append(
            GenerationRow(
                manifest_id=manifest_id,
                task=task_id,
                split=split,
                generation_version=summary.generation_version,
                generated=True,
                items=valid + summary.rejected_by_split.get(split, 0),
                valid=valid,
                failed_calls=summary.failed_calls_by_split.get(split, 0),
                run_id=summary.run_id,
                completed_at=now,
            )
        )
    if generated_splits is not None:
        written = {row.split for row in rows} | set(generated_splits)
        for carried in warehouse.rows(
            "SELECT DISTINCT split, generation_version FROM items_current WHERE task = ? "
            "ORDER BY split",
            [task_id],
        ):
            if carried["split"] in written:
                continue
            rows.append(
                GenerationRow(
                    manifest_id=manifest_id,
                    task=task_id,
                    split=carried["split"],
                    generation_version=carried["generation_version"],
                    generated=False,
                    run_id=summary.run_id,
                    completed_at=now,
                )
            )
    partition = manifest_partition(task_id, manifest_id)
    warehouse.write_partition(GENERATIONS_TABLE, partition, [r.model_dump() for r in rows])
    return partition


def write_whole_version_manifest(
    warehouse: Warehouse, task_id: str, version: str, run_id: str
) -> str:
    """Make every split that `version` has in `item_records` current, and nothing else
    (an imported dataset: the splits imported so far, never mixed with generated ones)."""
    now = utc_now()
    manifest_id = now.strftime("%Y%m%dT%H%M%S%f") + "-" + secrets.token_hex(4)
    rows = [
        GenerationRow(
            manifest_id=manifest_id,
            task=task_id,
            split=row["split"],
            generation_version=version,
            generated=True,
            items=row["n"],
            valid=row["valid"],
            failed_calls=0,
            run_id=run_id,
            completed_at=now,
        ).model_dump()
        for row in warehouse.rows(
            "SELECT split, count(*) AS n, count(*) FILTER (WHERE validation_status = 'valid') "
            "AS valid FROM item_records WHERE task = ? AND generation_version = ? "
            "GROUP BY split ORDER BY split",
            [task_id, version],
        )
    ]
    partition = manifest_partition(task_id, manifest_id)
    warehouse.write_partition(GENERATIONS_TABLE, partition, rows)
    return partition


def mark_started(warehouse: Warehouse, task_id: str, version: str, run_id: str) -> None:
    """Record, before any item is written, that a run of `version` began (see the table's
    comment: a task whose only rows are 'started' has nothing current)."""
    now = utc_now()
    row = GenerationRow(
        manifest_id=f"started-{version}",
        state="started",
        task=task_id,
        split="*",
        generation_version=version,
        generated=False,
        run_id=run_id,
        completed_at=now,
    )
    warehouse.write_partition(
        GENERATIONS_TABLE, f"task={task_id}/started={version}", [row.model_dump()]
    )


def has_manifest(warehouse: Warehouse, partition: str | None) -> bool:
    """Whether a manifest partition recorded in a summary is still on disk."""
    return bool(partition) and warehouse.partition_path(GENERATIONS_TABLE, partition).exists()
