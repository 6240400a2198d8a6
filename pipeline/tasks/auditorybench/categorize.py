"""AuditoryBench step (a): a category path (broad → narrow) for every LAION/Freesound clip.

Both AuditoryBench tasks start here: the animal task uses `animal/*` clips, the pitch
task `music/*`, `object/*` and `environment/*` clips. Every clip gets a `clip_categories`
row — declines and unusable replies included, with a status — and the `llm_calls` key.
Calls are cached by the engine, so the second task to run reuses the first one's calls.
"""

from __future__ import annotations

import re
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


def clip_variables(clip: dict[str, Any]) -> dict[str, Any]:
    """The metadata a prompt sees about a clip (data, never template source)."""
    return {
        "title": clip.get("title") or "",
        "tags": list(clip.get("tags") or []),
        "description": clip.get("description") or "",
        "captions": list(clip.get("captions") or []),
    }


def parse_category(text: str) -> str | None:
    """A valid lower-case category path, or None."""
    category = text.strip().strip("/").lower()
    return category if _CATEGORY_RE.match(category) else None


def categorize_clips(ctx: TaskContext) -> dict[str, CategoryRecord]:
    """Categorise every LAION clip in a wanted split; returns clip_id → record."""
    from pipeline.llm import LLMRequest

    clips = [
        clip
        for clip in ctx.clips("source = ?", [SOURCE])
        if ctx.wants(ctx.splits.clip_split(clip["clip_id"]))
    ]
    requests = [
        LLMRequest(
            item_key=f"categorize:{clip['clip_id']}",
            prompt=CATEGORIZE_PROMPT,
            variables=clip_variables(clip),
            seed=ctx.seed,
        )
        for clip in clips
    ]
    now = utc_now()
    records: dict[str, CategoryRecord] = {}
    for clip, result in zip(clips, ctx.run_llm(requests), strict=True):
        reasons = llm_outcome_reasons(result)
        category = parse_category(result.parsed.get("category", "")) if not reasons else None
        if reasons:
            status = "declined" if reasons == [LLM_DECLINED] else reasons[0]
        else:
            status = "ok" if category else "invalid_category"
        records[clip["clip_id"]] = CategoryRecord(
            clip_id=clip["clip_id"],
            category=category,
            broad=category.split("/")[0] if category else None,
            status=status,
            prompt_name=result.prompt_name,
            prompt_version=result.prompt_version,
            model=result.model,
            llm_call_key=result.call_key,
            run_id=ctx.run_id,
            categorized_at=now,
        )
    if records:
        prompt_version = ctx.prompt_version(CATEGORIZE_PROMPT)
        generation = stable_hash(
            prompt_version, ctx.llm_config.backend, ctx.llm_config.model, ctx.seed, length=12
        )
        splits_key = "all" if ctx.wanted_splits is None else "-".join(sorted(ctx.wanted_splits))
        ctx.warehouse.write_partition(
            CATEGORIES_TABLE,
            f"generation={generation}/splits={splits_key}",
            [r.model_dump() for r in records.values()],
        )
    ctx.notes["categories"] = _count(r.broad or r.status for r in records.values())
    return records


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))
