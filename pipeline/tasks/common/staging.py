"""`StagedItems`: a generation's records on disk until every whole-task decision is taken.

Records arrive in chunks and go straight to one Parquet file under
`<warehouse>/data/.staging/<pid>-<token>/` (beside the tables, in no table's folder, so
no view ever reads it), with
their ledger row (`ledger.ItemLedger`). When the task's drafts are exhausted the ledger
decides duplicates and the task's `finalize`; `write_partitions` then copies the staged
rows batch by batch into the version's `item_records` partitions (one per split), applying
those decisions on the way. Memory is one batch plus the ledger, whatever the corpus size.

The staging directory is removed when the generation ends, failed or not; one left by a
killed process (its pid no longer running) is removed by the next generation.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import ForgeError
from pipeline.storage import schema as schemas
from pipeline.storage.warehouse import PartitionWriter, pid_alive, to_arrow
from pipeline.tasks.common.completion import CALL_FAILURE_REASONS
from pipeline.tasks.common.dedup import normalize_text
from pipeline.tasks.common.ledger import ItemLedger
from pipeline.tasks.common.records import ItemRecord

if TYPE_CHECKING:
    from pipeline.storage import Warehouse
    from pipeline.tasks.common.base import Task
    from pipeline.tasks.common.records import GenerateSummary

ITEMS_TABLE = "item_records"
STAGING_DIR = ".staging"
READ_BATCH_ROWS = 4_000


def items_partition(task: str, split: str, generation_version: str) -> str:
    return f"task={task}/split={split}/version={generation_version}"


class StagedItems:
    """One generation's staged records and their ledger (a context manager)."""

    def __init__(self, warehouse: Warehouse, task: Task) -> None:
        self.warehouse = warehouse
        self.task = task
        self.spec = schemas.table(ITEMS_TABLE)
        self.ledger = ItemLedger(task.dedup_text, task.finalize_label, normalize_text)
        base = warehouse.data_dir / STAGING_DIR
        _remove_abandoned(base)
        self.folder = base / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.path = self.folder / "items.parquet"
        self._writer: PartitionWriter | None = None
        self.rows = 0

    def __enter__(self) -> StagedItems:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._writer = PartitionWriter(self.spec, self.path)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._writer is not None:
            self._writer.abort()
        shutil.rmtree(self.folder, ignore_errors=True)

    # ---- staging -----------------------------------------------------------------------

    def add(self, records: list[ItemRecord]) -> None:
        if self._writer is None:
            raise ForgeError("staged items are closed: no more records can be added")
        for record in records:
            self.ledger.add(record)
        self._writer.write([r.model_dump() for r in records])
        self.rows += len(records)

    def finish(self) -> None:
        """No more records: commit the staged file and close the ledger (idempotent)."""
        if self._writer is not None:
            self._writer.commit()
            self._writer = None
            self.ledger.close()

    def refuse_repeated_item_ids(self) -> None:
        """Two drafts with one item id would overwrite each other: a task bug, not bad data."""
        self.finish()
        repeated = self.ledger.repeated_item_ids()
        if not len(repeated):
            return
        index = int(repeated[0])
        row = (
            pq.read_table(self.path, columns=["item_id", "generation_key", "clip_ids"])
            .slice(index, 1)
            .to_pylist()[0]
        )
        raise ForgeError(
            f"task {self.task.task_id}: two items share generation_key "
            f"{row['generation_key']!r} for clips {row['clip_ids']} (item_id {row['item_id']})"
        )

    # ---- writing the partitions --------------------------------------------------------

    def write_partitions(self, version: str, summary: GenerateSummary) -> None:
        """Copy the staged rows into one partition per split, applying the ledger's
        decisions; fills the summary's counts from what is written."""
        self.finish()
        ledger = self.ledger
        if not len(ledger):
            return
        task_id = self.task.task_id
        reasons: Counter[str] = Counter()
        valid: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        failed_calls: Counter[str] = Counter()
        splits = sorted(ledger.splits())
        with contextlib.ExitStack() as stack:
            writers = {
                split: stack.enter_context(
                    self.warehouse.writer(ITEMS_TABLE, items_partition(task_id, split, version))
                )
                for split in splits
            }
            start = 0
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=READ_BATCH_ROWS):
                table = self._decided(batch, start)
                start += batch.num_rows
                split_column = np.asarray(table.column("split").to_numpy(zero_copy_only=False))
                is_valid = np.asarray(
                    table.column("validation_status").to_numpy(zero_copy_only=False) == "valid"
                )
                rejected_rows = np.flatnonzero(~is_valid)
                rejected_reasons = (
                    table.column("validation_reasons").take(pa.array(rejected_rows)).to_pylist()
                )
                for split in splits:
                    in_split = split_column == split
                    if in_split.any():
                        writers[split].write(table.filter(pa.array(in_split)))
                    valid[split] += int((in_split & is_valid).sum())
                    rejected[split] += int((in_split & ~is_valid).sum())
                for row, row_reasons in zip(rejected_rows, rejected_reasons, strict=True):
                    reasons.update(row_reasons)
                    if CALL_FAILURE_REASONS.intersection(row_reasons):
                        failed_calls[str(split_column[row])] += 1
        summary.partitions = [items_partition(task_id, split, version) for split in splits]
        summary.valid_by_split = {split: valid[split] for split in splits}
        summary.rejected_by_split = {split: rejected[split] for split in splits}
        summary.failed_calls_by_split = {split: failed_calls[split] for split in splits}
        summary.items = start
        summary.valid = sum(valid.values())
        summary.rejected = summary.items - summary.valid
        summary.rejected_by_reason = dict(sorted(reasons.items()))
        summary.failed_calls = sum(failed_calls.values())

    def _decided(self, batch: pa.RecordBatch, start: int) -> pa.Table:
        """The batch with the ledger's decisions applied, rows in their staged order."""
        count = batch.num_rows
        changed = self.ledger.changed(start, start + count)
        table = pa.Table.from_batches([batch])
        if not len(changed):
            return table
        rows = table.take(pa.array(changed)).to_pylist()
        for offset, row in zip(changed.tolist(), rows, strict=True):
            self.ledger.apply(row, start + offset, self.task.apply_rank)
        unchanged = np.ones(count, np.bool_)
        unchanged[changed] = False
        merged = pa.concat_tables(
            [table.filter(pa.array(unchanged)), to_arrow(self.spec, rows)]
        ).combine_chunks()
        # Back to staged order: unchanged rows come first in `merged`, then the changed.
        position = np.empty(count, np.int64)
        position[np.flatnonzero(unchanged)] = np.arange(count - len(changed))
        position[changed] = np.arange(count - len(changed), count)
        return merged.take(pa.array(position))


def finalize_records(task: Task, records: list[ItemRecord]) -> dict[str, int]:
    """The task's `finalize` on an in-memory list of records, applied in place (the same
    decisions `StagedItems` applies to staged rows); returns the task's counts."""
    ledger = ItemLedger.of(records, task.dedup_text, task.finalize_label, normalize_text)
    counts = task.finalize(ledger)
    ledger.apply_to_records(records, task.apply_rank)
    return counts


def _remove_abandoned(base: Path) -> None:
    """Remove staging folders of processes that no longer run (killed generations)."""
    if not base.is_dir():
        return
    for folder in base.iterdir():
        pid_text = folder.name.split("-", 1)[0]
        if pid_text.isdigit() and not pid_alive(int(pid_text)):
            shutil.rmtree(folder, ignore_errors=True)
