"""The task contract: what one dataset task module provides, and what it is handed.

A task subclasses `Task` and implements `build_items(ctx)`, yielding `ItemDraft`s with
their split already assigned (via `ctx.splits`) and their task-specific validation done
(reasons in `draft.reasons`). A task over a large corpus yields as it goes (clips in
chunks, one engine call per chunk), so memory does not grow with the corpus.
`pipeline.tasks.common.generate.generate_task` does the rest the same way for every task:
item ids, generation version, dedup, the task's `finalize` hook (e.g. label balancing,
decided on the `ItemLedger`), and the atomic `item_records` partitions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from pipeline.tasks.common import validators as v
from pipeline.tasks.common.records import ItemRecord, ItemSplit
from pipeline.tasks.common.splits import SplitAssigner, SplitPolicy

if TYPE_CHECKING:  # the engine is imported lazily: pipeline.llm imports pipeline.tasks
    import pyarrow as pa

    from pipeline.llm import GenerationEngine, LLMConfig, LLMRequest, LLMResult, PromptLibrary
    from pipeline.storage import Warehouse
    from pipeline.tasks.common.ledger import ItemLedger

MODEL_TEMPLATE = "template"  # model of items rendered from knowledge tables, no LLM call
CLIP_BATCH_ROWS = 5_000  # clips per batch when a task streams a large corpus


class ItemDraft(BaseModel):
    """An item as a task built it; `generate_task` turns it into an `ItemRecord`."""

    model_config = ConfigDict(extra="forbid")

    split: ItemSplit
    generation_key: str  # unique per item within (task, clip_ids, prompt_version)
    subtask: str | None = None
    clip_ids: list[str] = Field(default_factory=list)
    input: str | None = None
    answer: str | None = None
    options: list[str] = Field(default_factory=list)
    spans: list[str] = Field(default_factory=list)
    focus: str | None = None
    facts: dict[str, Any] = Field(default_factory=dict)
    prompt_name: str | None = None
    prompt_version: str | None = None
    model: str | None = None
    llm_call_key: str | None = None
    reasons: list[str] = Field(default_factory=list)  # empty = valid


def llm_outcome_reasons(result: LLMResult, decline_field: str = "decline") -> list[str]:
    """Reason codes for an LLM result that cannot become an item (empty when usable)."""
    if result.status == "invalid_output":
        return [v.SCHEMA_INVALID]
    if result.status == "refused":
        return [v.LLM_REFUSED]
    by_status = {
        "prompt_too_large": v.PROMPT_TOO_LARGE,
        "truncated": v.LLM_TRUNCATED,
        "empty_reply": v.LLM_EMPTY_REPLY,
    }
    if result.status in by_status:
        return [by_status[result.status]]
    if result.status != "ok" or result.parsed is None:
        return [v.LLM_ERROR]
    if result.parsed.get(decline_field):
        return [v.LLM_DECLINED]
    return []


def draft_lineage(result: LLMResult) -> dict[str, Any]:
    """The ItemDraft fields that record which prompt/model/call produced an item."""
    return {
        "prompt_name": result.prompt_name,
        "prompt_version": result.prompt_version,
        "model": result.model,
        "llm_call_key": result.call_key,
    }


def stable_hash(*parts: Any, length: int = 24) -> str:
    """sha256 over a canonical JSON of the parts, as hex; the one id recipe of this stage."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def item_id(task: str, clip_ids: Sequence[str], prompt_version: str | None, key: str) -> str:
    """Stable item id: sha256(task, clip ids in order, prompt version, generation key)[:24]."""
    return stable_hash(task, list(clip_ids), prompt_version, key)


def _clip_query(where: str, columns: str) -> str:
    """The one query behind TaskContext's clip readers: `clips` rows in clip order."""
    return f"SELECT {columns} FROM clips WHERE {where} ORDER BY clip_id"


@dataclass
class TaskContext:
    """Everything a task's `build_items` may use. Created by `generate_task`."""

    warehouse: Warehouse
    run_id: str
    seed: int
    llm_config: LLMConfig
    prompts: PromptLibrary
    splits: SplitAssigner
    wanted_splits: frozenset[str] | None = None  # None = every split
    _engine: GenerationEngine | None = field(default=None, repr=False)
    notes: dict[str, Any] = field(default_factory=dict)  # task counters → GenerateSummary.notes

    def wants(self, split: str | None) -> bool:
        return split is not None and (self.wanted_splits is None or split in self.wanted_splits)

    @property
    def engine(self) -> GenerationEngine:
        if self._engine is None:
            from pipeline.llm import GenerationEngine

            self._engine = GenerationEngine(
                self.warehouse, self.prompts, self.llm_config, self.run_id
            )
        return self._engine

    def run_llm(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        """Run requests through the engine (cached in llm_calls); results in request order."""
        if not requests:
            return []
        return self.engine.run(list(requests))

    def close(self) -> None:
        """End of the generation: the engine compacts what this run recorded."""
        if self._engine is not None:
            self._engine.close()

    def clip_batches(
        self,
        where: str = "TRUE",
        params: list[Any] | None = None,
        columns: str = "*",
        batch_rows: int = CLIP_BATCH_ROWS,
    ) -> Iterator[list[dict[str, Any]]]:
        """Like `clips`, in batches of `batch_rows` rows streamed from one query, for
        corpora too large to hold (LAION-Audio-630K)."""
        with self.warehouse.connect() as con:
            reader = con.sql(
                _clip_query(where, columns),
                params=params or None,
            ).to_arrow_reader(batch_rows)
            for batch in reader:
                yield batch.to_pylist()

    def clip_table(
        self, where: str = "TRUE", params: list[Any] | None = None, columns: str = "*"
    ) -> pa.Table:
        """Like `clips`, as one Arrow table: columnar, a fraction of the Python rows' size,
        for metadata a task looks up many times (`Table.take`)."""
        with self.warehouse.connect() as con:
            return con.sql(
                _clip_query(where, columns),
                params=params or None,
            ).to_arrow_table()

    def prompt_version(self, name: str) -> str:
        return self.prompts.get(name).version

    def clips(
        self, where: str = "TRUE", params: list[Any] | None = None, columns: str = "*"
    ) -> list[dict[str, Any]]:
        """Clip rows (the `clips` view) matching a WHERE clause with bound parameters; a
        task over a large corpus names the `columns` it reads (a whole row is ~4 KB)."""
        return self.warehouse.rows(_clip_query(where, columns), params or [])


class ExportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_dropped: bool = False  # also export items the CLAP filter dropped
    extra_columns: bool = False  # task formats: add our columns after the published ones


class Task:
    """Base class of a dataset task. Subclasses set the class attributes and `build_items`."""

    task_id: ClassVar[str]
    prompt_names: ClassVar[tuple[str, ...]] = ()  # templates it renders, e.g. 'nlar/qa'
    export_formats: ClassVar[tuple[str, ...]] = ()  # task formats beyond the common hf/jsonl
    label_field: ClassVar[str | None] = "answer"  # column the report's label balance counts
    dedup_sql: ClassVar[str] = "input"  # SQL twin of `dedup_text`, for the report's check
    split_policy: ClassVar[SplitPolicy] = SplitPolicy()

    def config(self) -> dict[str, Any]:
        """Task settings that change the items (e.g. min pitch gap): part of the version."""
        return {}

    def build_items(self, ctx: TaskContext) -> Iterable[ItemDraft]:
        raise NotImplementedError

    def dedup_text(self, record: ItemRecord) -> str | None:
        """The text compared for duplicates (default: the input sentence/question)."""
        return record.input

    def finalize_label(self, record: ItemRecord) -> str | None:
        """The short label `finalize` reads in the ledger's `label` column (a category such
        as 'mcq' or an answer class; None: not needed)."""
        return None

    def finalize(self, ledger: ItemLedger) -> dict[str, int]:
        """Hook after dedup, over every item of the generation at once: reject items
        (`ledger.reject`, e.g. a label surplus) or rank them (`ledger.rank`, applied to each
        row by `apply_rank`, e.g. the MCQ letter); returns counts."""
        return {}

    def apply_rank(self, row: dict[str, Any], rank: int) -> None:
        """Rewrite one valid `item_records` row given the rank `finalize` gave it."""
        raise NotImplementedError(f"{self.task_id} sets no ranks")

    def export(
        self, fmt: str, rows: list[dict[str, Any]], out_dir: Path, options: ExportOptions
    ) -> list[Path]:
        """Write a task-specific format from `items_current` rows; returns the files."""
        raise NotImplementedError(f"{self.task_id} has no export format {fmt!r}")

    def report_sections(self, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """Extra Markdown sections (title, body) for `forge report`, from `items_current`."""
        return []
