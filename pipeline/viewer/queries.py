"""What the viewer's pages show, read from the catalog views with parameterised SELECTs.

Reads go through `Warehouse.rows` (DuckDB views over the Parquet files; SELECT only), so the
viewer never writes anything but its own `item_reviews` partitions.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from pipeline.storage import Warehouse

PAGE_SIZE = 50
GAP_SQL = "TRY_CAST(json_extract(i.facts, '$.difference_percentage') AS DOUBLE)"
SORTS = {
    "item": "i.task, i.split, i.item_id",
    "clap": "clap_score DESC NULLS LAST, i.item_id",
    "clap_asc": "clap_score ASC NULLS LAST, i.item_id",
    "gap": "gap DESC NULLS LAST, i.item_id",
    "gap_asc": "gap ASC NULLS LAST, i.item_id",
    "newest": "i.created_at DESC, i.item_id",
}
STATUSES = ("valid", "rejected", "kept", "dropped", "unscored", "review-accept", "review-reject")


class ItemQuery(BaseModel):
    """The list page's filters; every field is a URL query parameter of `/items`."""

    model_config = ConfigDict(extra="ignore")

    task: str | None = None
    split: str | None = None
    status: str | None = None
    subtask: str | None = None
    prompt_version: str | None = None
    q: str | None = None
    sort: str = "item"
    all_versions: bool = False
    page: int = Field(default=1, ge=1)

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = ["TRUE"], []
        for column in ("task", "split", "subtask", "prompt_version"):
            value = getattr(self, column)
            if value:
                clauses.append(f"i.{column} = ?")
                params.append(value)
        if self.status in ("valid", "rejected"):
            clauses.append("i.validation_status = ?")
            params.append(self.status)
        elif self.status in ("kept", "dropped", "unscored"):
            clauses.append("i.validation_status = 'valid' AND i.filter_status = ?")
            params.append(self.status)
        elif self.status in ("review-accept", "review-reject"):
            clauses.append("r.decision = ?")
            params.append(self.status.removeprefix("review-"))
        if self.q:
            clauses.append(
                "(i.input ILIKE ? OR i.answer ILIKE ? OR i.item_id = ? OR list_contains(i.clip_ids, ?))"
            )
            like = f"%{self.q}%"
            params += [like, like, self.q, self.q]
        return " AND ".join(clauses), params


def list_items(warehouse: Warehouse, query: ItemQuery) -> tuple[list[dict[str, Any]], int]:
    """One page of items matching `query`, and how many match in all."""
    where, params = query.where()
    view = "items" if query.all_versions else "items_current"
    order = SORTS.get(query.sort, SORTS["item"])
    base = f"""
        WITH scores AS (
            SELECT item_id, max(score) AS clap_score FROM clap_scores
            WHERE is_primary AND score IS NOT NULL GROUP BY item_id
        )
        SELECT i.item_id, i.task, i.split, i.subtask, i.input, i.answer, i.clip_ids,
               i.validation_status, i.validation_reasons, i.filter_status,
               i.prompt_version, i.generation_version, i.is_current,
               s.clap_score, {GAP_SQL} AS gap, r.decision AS review
        FROM {view} i
        LEFT JOIN scores s USING (item_id)
        LEFT JOIN item_review_latest r USING (item_id)
        WHERE {where}
    """
    total = warehouse.rows(f"SELECT count(*) AS n FROM ({base})", params)[0]["n"]
    rows = warehouse.rows(
        f"{base} ORDER BY {order} LIMIT {PAGE_SIZE} OFFSET {(query.page - 1) * PAGE_SIZE}",
        params,
    )
    return rows, int(total)


def filter_choices(warehouse: Warehouse) -> dict[str, list[str]]:
    """Values the list page offers in its drop-downs."""
    choices = {}
    for column in ("task", "split", "subtask", "prompt_version"):
        choices[column] = [
            r["v"]
            for r in warehouse.rows(
                f"SELECT DISTINCT {column} AS v FROM items WHERE {column} IS NOT NULL ORDER BY 1"
            )
        ]
    return choices


def task_overview(warehouse: Warehouse) -> list[dict[str, Any]]:
    return warehouse.rows(
        """
        SELECT i.task, i.split, count(*) AS items,
               count(*) FILTER (WHERE validation_status = 'valid') AS valid,
               count(*) FILTER (WHERE validation_status = 'rejected') AS rejected,
               count(*) FILTER (WHERE validation_status = 'valid' AND filter_status = 'kept') AS kept,
               count(*) FILTER (WHERE validation_status = 'valid' AND filter_status = 'dropped') AS dropped,
               count(*) FILTER (WHERE validation_status = 'valid' AND filter_status = 'unscored') AS unscored,
               count(r.item_id) FILTER (WHERE r.decision = 'accept') AS accepted_by_review,
               count(r.item_id) FILTER (WHERE r.decision = 'reject') AS rejected_by_review
        FROM items_current i LEFT JOIN item_review_latest r USING (item_id)
        GROUP BY ALL ORDER BY ALL
        """
    )


def item_detail(warehouse: Warehouse, item_id: str) -> dict[str, Any] | None:
    """Everything the item page shows; None for an unknown id."""
    rows = warehouse.rows("SELECT * FROM items WHERE item_id = ?", [item_id])
    if not rows:
        return None
    item = rows[0]
    try:
        item["facts_parsed"] = json.loads(item["facts"] or "{}")
    except json.JSONDecodeError:
        item["facts_parsed"] = {"unparsed": item["facts"]}
    clip_ids = list(item["clip_ids"] or [])
    clips = {
        c["clip_id"]: c
        for c in warehouse.rows(
            "SELECT clip_id, source, split, audio_path, captions, tags, title, duration_s, "
            "license, url FROM clips WHERE list_contains(?, clip_id)",
            [clip_ids],
        )
    }
    pitch = {}
    for p in warehouse.rows(
        "SELECT clip_id, arg_max(median_f0_hz, measured_at) AS median_f0_hz, "
        "arg_max(voiced_fraction, measured_at) AS voiced_fraction, "
        "arg_max(status, measured_at) AS status, arg_max(method, measured_at) AS method "
        "FROM clip_pitch WHERE list_contains(?, clip_id) GROUP BY clip_id",
        [clip_ids],
    ):
        pitch[p["clip_id"]] = p
    item["clips"] = [
        {"clip_id": c, **clips.get(c, {"missing": True}), "pitch": pitch.get(c)} for c in clip_ids
    ]
    item["clap_scores"] = warehouse.rows(
        "SELECT text_role, text, clip_id, backend, checkpoint, score, unscored_reason "
        "FROM clap_scores WHERE item_id = ? ORDER BY is_primary DESC, text_role, checkpoint",
        [item_id],
    )
    item["filter_decisions"] = warehouse.rows(
        "SELECT policy, policy_params, filter_status, filter_reason, checkpoint, decided_at "
        "FROM item_filters WHERE item_id = ? ORDER BY decided_at DESC",
        [item_id],
    )
    item["llm_call"] = None
    if item.get("llm_call_key"):
        calls = warehouse.rows(
            "SELECT status, raw_output, endpoint, prompt_tokens, completion_tokens, latency_s, "
            "run_id FROM llm_calls WHERE call_key = ? ORDER BY created_at DESC LIMIT 1",
            [item["llm_call_key"]],
        )
        item["llm_call"] = calls[0] if calls else None
    item["versions"] = warehouse.rows(
        "SELECT item_id, generation_version, prompt_version, model, input, answer, "
        "validation_status, is_current, created_at FROM items "
        "WHERE task = ? AND split = ? AND clip_ids = ? AND item_id <> ? "
        "AND generation_key IS NOT DISTINCT FROM ? ORDER BY created_at",
        [item["task"], item["split"], clip_ids, item_id, item.get("generation_key")],
    )
    item["reviews"] = warehouse.rows(
        "SELECT decision, reason, reviewer, reviewed_at FROM item_reviews WHERE item_id = ? "
        "ORDER BY reviewed_at DESC",
        [item_id],
    )
    return item


def clip_row(warehouse: Warehouse, clip_id: str) -> dict[str, Any] | None:
    rows = warehouse.rows(
        "SELECT clip_id, audio_root, audio_path FROM clips WHERE clip_id = ? LIMIT 1", [clip_id]
    )
    return rows[0] if rows else None
