"""Exports read the view `items_current`: valid items of the current generation.

Which items: `validation_status = 'valid'` and not `dropped` by the CLAP filter, i.e. kept
and unscored items (unscored: no checkpoint configured, no usable audio, or no CLAP rule
for that kind of item — `items.filter_reason` says which); `include_dropped` adds the
dropped ones.

Common formats, for every task:

* `hf`: a `datasets.DatasetDict` (one Dataset per split) saved with `save_to_disk`;
  loads back with `datasets.load_from_disk(out_dir)`.
* `jsonl`: `<out_dir>/<split>.jsonl`, one object per item in the layout LLM audio
  recipes read: `key` (item_id), `source` (absolute audio path of the item's clip, a list
  for multi-clip items, null for clip-less wiki items), `prompt` (the input
  sentence/question) and `target` (the answer).

Task formats (e.g. `auditorybench-csv`) are written by the task's `export` method.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.errors import ForgeError, InputFormatError
from pipeline.tasks.common.base import ExportOptions
from pipeline.tasks.common.generate import get_task
from pipeline.tasks.common.records import SPLIT_ORDER

ItemModel = TypeVar("ItemModel", bound=BaseModel)

if TYPE_CHECKING:
    from pipeline.storage import Warehouse

COMMON_FORMATS = ("hf", "jsonl")
HF_COLUMNS = (
    "item_id",
    "task",
    "subtask",
    "clip_ids",
    "audio_paths",
    "input",
    "answer",
    "options",
    "spans",
    "focus",
    "facts",
    "model",
    "prompt_name",
    "prompt_version",
    "generation_version",
    "filter_status",
)


def export_rows(
    warehouse: Warehouse, task_id: str, include_dropped: bool = False
) -> list[dict[str, Any]]:
    """Exportable rows of `items_current`, ordered by split then item_id, with audio paths."""
    filter_clause = "TRUE" if include_dropped else "i.filter_status <> 'dropped'"
    rows = warehouse.rows(
        "SELECT * FROM items_current i WHERE i.task = ? AND i.validation_status = 'valid' "
        f"AND {filter_clause}",
        [task_id],
    )
    clip_ids = sorted({clip_id for row in rows for clip_id in row["clip_ids"] or []})
    paths = {
        clip["clip_id"]: str(Path(clip["audio_root"] or "") / clip["audio_path"])
        for clip in warehouse.rows(
            "SELECT clip_id, audio_root, audio_path FROM clips WHERE list_contains(?, clip_id)",
            [clip_ids],
        )
    }
    for row in rows:
        row["audio_paths"] = [paths[c] for c in row["clip_ids"] or [] if c in paths]
    order = {split: index for index, split in enumerate(SPLIT_ORDER)}
    return sorted(rows, key=lambda r: (order.get(r["split"], 99), r["item_id"]))


def rows_by_split(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["split"], []).append(row)
    return grouped


def export_task(
    warehouse: Warehouse,
    task_id: str,
    fmt: str,
    out_dir: Path | str,
    include_dropped: bool = False,
    extra_columns: bool = False,
) -> list[Path]:
    """Write one task's current valid items in `fmt` under `out_dir`; returns the paths."""
    task = get_task(task_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt not in (*COMMON_FORMATS, *task.export_formats):
        known = ", ".join((*COMMON_FORMATS, *task.export_formats))
        raise ForgeError(f"task {task_id!r} cannot export format {fmt!r}; choose one of {known}")
    rows = export_rows(warehouse, task_id, include_dropped)
    if not rows:
        raise ForgeError(
            f"no exportable items for task {task_id!r} in {warehouse.root}: "
            f"run `forge generate --task {task_id}` first"
        )
    if fmt == "hf":
        return [write_hf(rows, out)]
    if fmt == "jsonl":
        return write_jsonl(rows, out)
    options = ExportOptions(include_dropped=include_dropped, extra_columns=extra_columns)
    return task.export(fmt, rows, out, options)


def write_hf(rows: list[dict[str, Any]], out: Path) -> Path:
    import datasets

    features = datasets.Features(
        {
            name: (
                datasets.Sequence(datasets.Value("string"))
                if name in ("clip_ids", "audio_paths", "options", "spans")
                else datasets.Value("string")
            )
            for name in HF_COLUMNS
        }
    )
    splits = {
        split: datasets.Dataset.from_list(
            [{name: _hf_value(row, name) for name in HF_COLUMNS} for row in split_rows],
            features=features,
        )
        for split, split_rows in rows_by_split(rows).items()
    }
    datasets.DatasetDict(splits).save_to_disk(str(out))
    return out


def _hf_value(row: dict[str, Any], name: str) -> Any:
    value = row.get(name)
    if name in ("clip_ids", "audio_paths", "options", "spans"):
        return list(value or [])
    return value


def jsonl_record(row: dict[str, Any]) -> dict[str, Any]:
    paths = list(row.get("audio_paths") or [])
    source: str | list[str] | None = paths[0] if len(paths) == 1 else (paths or None)
    return {
        "key": row["item_id"],
        "source": source,
        "prompt": row["input"],
        "target": row["answer"],
    }


def write_jsonl(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    written = []
    for split, split_rows in rows_by_split(rows).items():
        path = out / f"{split}.jsonl"
        atomic_write_text(
            path,
            "".join(json.dumps(jsonl_record(r), ensure_ascii=False) + "\n" for r in split_rows),
        )
        written.append(path)
    return written


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + rename so a killed export never leaves half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_splits(
    rows: list[dict[str, Any]],
    out_dir: Path,
    file_prefix: str,
    to_item: Callable[[dict[str, Any]], BaseModel],
) -> list[Path]:
    """One JSON list per split, `<out_dir>/<file_prefix>_<split>.json`, written atomically."""
    written = []
    for split, split_rows in rows_by_split(rows).items():
        path = out_dir / f"{file_prefix}_{split}.json"
        items = [to_item(row).model_dump() for row in split_rows]
        atomic_write_text(path, json.dumps(items, ensure_ascii=False, indent=1) + "\n")
        written.append(path)
    return written


def read_json_items(path: Path, model: type[ItemModel]) -> list[ItemModel]:
    """Read a JSON list export back; a bad element is an error naming file, index and field."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFormatError(path, f"not a readable JSON file: {exc}") from exc
    if not isinstance(data, list):
        raise InputFormatError(path, "expected a JSON list of items")
    items = []
    for index, element in enumerate(data):
        try:
            items.append(model.model_validate(element))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in first["loc"]) or None
            raise InputFormatError(path, first["msg"], row=index, field=field) from None
    return items
