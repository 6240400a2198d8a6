"""AuditoryBench step (a): a category path (broad → narrow) for every LAION/Freesound clip.

Both AuditoryBench tasks start here: the animal task uses `animal/*` clips, the pitch
task `music/*`, `object/*` and `environment/*` clips. Every clip gets a `clip_categories`
row — declines and unusable replies included, with a status — and the `llm_calls` key.
Calls are cached by the engine, so the second task to run reuses the first one's calls.
"""

from __future__ import annotations

import bisect
import contextlib
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from pipeline.storage.warehouse import utc_now
from pipeline.tasks.common.base import TaskContext, llm_outcome_reasons, stable_hash
from pipeline.tasks.common.validators import LLM_DECLINED

CATEGORIZE_PROMPT = "auditorybench/categorize"
CATEGORIES_TABLE = "clip_categories"
SOURCE = "laion630k"
BROAD_CATEGORIES = ("animal", "music", "object", "environment")
_CATEGORY_RE = re.compile(r"^(animal|music|object|environment)(/[a-z0-9][a-z0-9 \-]*){1,3}$")

CategoryStatus = Literal[
    "ok", "declined", "invalid_category", "schema_invalid", "llm_error", "llm_refused"
]


class CategoryRecord(BaseModel):
    """One row of `clip_categories` (kept in step with warehouse/tables/clip_categories.sql)."""

    model_config = ConfigDict(extra="forbid")

    clip_id: str
    category: str | None
    broad: str | None
    status: CategoryStatus
    prompt_name: str
    prompt_version: str
    model: str | None
    llm_call_key: str | None
    run_id: str
    categorized_at: datetime


CLIP_VARIABLE_COLUMNS = "clip_id, title, tags, description, captions"  # what prompts see
RELEASE_COLUMNS = "extra, source_split, split"  # what export.release_clip_fields reads


def clip_variables(clip: dict[str, Any]) -> dict[str, Any]:
    """The metadata a prompt sees about a clip (data, never template source)."""
    return {
        "title": clip.get("title") or "",
        "tags": list(clip.get("tags") or []),
        "description": clip.get("description") or "",
        "captions": list(clip.get("captions") or []),
    }


class ClipVariableTable:
    """The prompt metadata of a fixed, sorted list of clips, read with one query and held
    as Arrow (~0.25 KB a clip), so that phrasing many chunks of pairs looks each clip up
    (binary search, `take`) instead of scanning the whole corpus once per chunk."""

    def __init__(self, ctx: TaskContext, sorted_clip_ids: list[str]) -> None:
        self.clip_ids = sorted_clip_ids
        self.table = ctx.clip_table(
            "clip_id IN (SELECT unnest(?::VARCHAR[]))", [sorted_clip_ids], CLIP_VARIABLE_COLUMNS
        )
        if self.table.num_rows != len(sorted_clip_ids):
            raise LookupError(
                f"clips: {len(sorted_clip_ids) - self.table.num_rows} of "
                f"{len(sorted_clip_ids)} clips have no metadata row"
            )

    def variables(self, clip_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """clip_id → `clip_variables` for these clips (each must be in the table)."""
        wanted = sorted(set(clip_ids))
        rows = [bisect.bisect_left(self.clip_ids, clip_id) for clip_id in wanted]
        last = self.table.num_rows - 1
        taken = self.table.take([min(row, last) for row in rows]) if rows else self.table[:0]
        found: dict[str, dict[str, Any]] = {}
        for clip_id, clip in zip(wanted, taken.to_pylist(), strict=True):
            if clip["clip_id"] != clip_id:
                raise LookupError(f"clips: no metadata row for clip {clip_id!r}")
            found[clip_id] = clip_variables(clip)
        return found


def parse_category(text: str) -> str | None:
    """A valid lower-case category path, or None."""
    category = text.strip().strip("/").lower()
    return category if _CATEGORY_RE.match(category) else None


def categorize_clips(ctx: TaskContext) -> dict[str, str]:
    """Categorise every LAION clip in a wanted split, in batches; returns clip_id → category
    for the clips with a valid category (every clip's row, status included, goes to
    `clip_categories`). Category strings are shared, so the map costs ~0.15 KB a clip."""
    from pipeline.llm import LLMRequest

    prompt_version = ctx.prompt_version(CATEGORIZE_PROMPT)
    generation = stable_hash(
        prompt_version, ctx.llm_config.backend, ctx.llm_config.model, ctx.seed, length=12
    )
    splits_key = "all" if ctx.wanted_splits is None else "-".join(sorted(ctx.wanted_splits))
    now = utc_now()
    categories: dict[str, str] = {}
    shared: dict[str, str] = {}
    counts: dict[str, int] = {}
    partition = f"generation={generation}/splits={splits_key}"
    with contextlib.ExitStack() as stack:
        writer = None  # opened on the first row: no clips, no (empty) partition
        for batch in ctx.clip_batches("source = ?", [SOURCE], columns=CLIP_VARIABLE_COLUMNS):
            clips = [c for c in batch if ctx.wants(ctx.splits.clip_split(c["clip_id"]))]
            requests = [
                LLMRequest(
                    item_key=f"categorize:{clip['clip_id']}",
                    prompt=CATEGORIZE_PROMPT,
                    variables=clip_variables(clip),
                    seed=ctx.seed,
                )
                for clip in clips
            ]
            records = [
                _category_record(ctx, clip["clip_id"], result, now)
                for clip, result in zip(clips, ctx.run_llm(requests), strict=True)
            ]
            if not records:
                continue
            if writer is None:
                writer = stack.enter_context(ctx.warehouse.writer(CATEGORIES_TABLE, partition))
            writer.write([r.model_dump() for r in records])
            for record in records:
                key = record.broad or record.status
                counts[key] = counts.get(key, 0) + 1
                if record.category:
                    categories[record.clip_id] = shared.setdefault(record.category, record.category)
    ctx.notes["categories"] = dict(sorted(counts.items()))
    return categories


def _category_record(ctx: TaskContext, clip_id: str, result: Any, now: datetime) -> CategoryRecord:
    reasons = llm_outcome_reasons(result)
    category = parse_category(result.parsed.get("category", "")) if not reasons else None
    if reasons:
        status = "declined" if reasons == [LLM_DECLINED] else reasons[0]
    else:
        status = "ok" if category else "invalid_category"
    return CategoryRecord(
        clip_id=clip_id,
        category=category,
        broad=broad_of(category) if category else None,
        status=status,
        prompt_name=result.prompt_name,
        prompt_version=result.prompt_version,
        model=result.model,
        llm_call_key=result.call_key,
        run_id=ctx.run_id,
        categorized_at=now,
    )


def broad_of(category: str) -> str:
    return category.split("/", 1)[0]


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))
