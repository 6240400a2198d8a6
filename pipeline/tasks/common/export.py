"""Exports read the view `items_current`: valid items of the current generation.

Which items: `validation_status = 'valid'` and not `dropped` by the CLAP filter, i.e. kept
and unscored items (unscored: no checkpoint configured, no usable audio, or no CLAP rule
for that kind of item — `items.filter_reason` says which); `include_dropped` adds the
dropped ones. Items a reviewer rejected in `forge view` (latest decision in
`item_review_latest`) are always left out.

Every export also writes `<out_dir>/README.md`, a Hugging Face dataset card
(pipeline.tasks.common.card) describing exactly the exported rows.

Common formats, for every task:

* `hf`: a `datasets.DatasetDict` (one Dataset per split) saved with `save_to_disk`, with
  `datasets.Audio` columns and typed fact columns (pipeline.tasks.common.hf_export);
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ValidationError

from pipeline.errors import ForgeError, InputFormatError
from pipeline.tasks.common.base import ExportOptions
from pipeline.tasks.common.card import card_facts, dataset_card
from pipeline.tasks.common.generate import get_task
from pipeline.tasks.common.hf_export import write_hf
from pipeline.tasks.common.records import SPLIT_ORDER
from pipeline.tasks.common.streaming import (
    SORT_KEY,
    StreamedRows,
    read_sorted,
    scan_connection,
    scratch_database,
    sort_key_sql,
    split_groups,
    split_rank,
)
from pipeline.viewer.reviews import REJECTED_BY_REVIEW_SQL

ItemModel = TypeVar("ItemModel", bound=BaseModel)

if TYPE_CHECKING:
    from pipeline.storage import Warehouse

COMMON_FORMATS = ("hf", "jsonl", "pengi-jsonl")  # pengi-jsonl: pipeline.tasks.common.pengi
CARD_NAME = "README.md"


class ExportRows(StreamedRows):
    """Exportable rows of `items_current`, grouped by split, streamed.

    Each row is an `items_current` row plus `audio_paths` (absolute audio path of each of
    its clips that `clips` knows, in the item's clip order) and `export_clips` (those
    clips' `clip_id, source, audio_root, audio_path`). Splits come in SPLIT_ORDER, other
    splits after them by their smallest item_id, then by name. Within a split rows come by
    `item_id`, or by the `within_split_order` terms (SQL over `items_current` columns,
    ascending, NULLs last) then item_id.

    How a pass keeps DuckDB's memory bounded (pipeline.tasks.common.streaming says which
    operators spill and which do not), in a scratch database of the pass:

    1. table `selected`: the selection as it is (no join yet: its row count is then
       exact, so the join of 2. hashes `clips`, narrow, instead of whole item rows);
    2. table `located`: one row per item and clip position, with that clip and the row's
       sort key (`sort_key_sql`: splits in export order, the within-split terms, item_id);
    3. `read_sorted`: the keys are sorted, the rows read back range by range;
    4. `_items`: Python joins the clip rows of each item back into one row.
    """

    def __init__(
        self,
        warehouse: Warehouse,
        task_id: str,
        include_dropped: bool = False,
        within_split_order: Sequence[str] = (),
    ) -> None:
        self.task_id = task_id
        self.include_dropped = include_dropped
        self.within_split_order = tuple(within_split_order)
        super().__init__(warehouse, self.selection_sql, [task_id])

    @property
    def selection_sql(self) -> str:
        """SQL of the selected `items_current` rows (one `?`: the task id), unordered."""
        filter_clause = "TRUE" if self.include_dropped else "i.filter_status <> 'dropped'"
        return (
            "SELECT i.* FROM items_current i WHERE i.task = ? "
            f"AND i.validation_status = 'valid' AND {filter_clause} "
            f"AND i.item_id NOT IN ({REJECTED_BY_REVIEW_SQL})"
        )

    def located_sql(self, selected_table: str) -> str:
        """One row per item of `selected_table` and clip position (`clip_position`, 1-based;
        an item without clips has one row, position 1), with `export_row` (the item row's
        rowid), the sort key (column SORT_KEY) and `export_clip` (the struct of the clip
        `clips` knows at that position, or NULL). One `?`: the splits in export order."""
        terms = (
            "list_position(?::VARCHAR[], split)",
            *self.within_split_order,
            "item_id",
            "export_row",
            "clip_position",
        )
        # The key is made before the join, so its terms see the item's columns only.
        placed = (
            "SELECT *, rowid AS export_row, "
            "unnest(range(1, greatest(len(coalesce(clip_ids, [])), 1) + 1)) AS clip_position "
            f"FROM {selected_table}"
        )
        return (
            "SELECT p.*, CASE WHEN c.clip_id IS NULL THEN NULL ELSE struct_pack("
            "  clip_id := c.clip_id, source := c.source, audio_root := c.audio_root, "
            "  audio_path := c.audio_path) END AS export_clip "
            f"FROM (SELECT *, {sort_key_sql(terms)} AS {SORT_KEY} FROM ({placed})) p "
            "LEFT JOIN clips c ON c.clip_id = p.clip_ids[p.clip_position]"
        )

    def ordered(self, within_split_order: Sequence[str]) -> ExportRows:
        """The same rows with another order inside each split."""
        return ExportRows(self.warehouse, self.task_id, self.include_dropped, within_split_order)

    def batches(self) -> Iterator[list[dict[str, Any]]]:
        with (
            scan_connection(self.warehouse) as con,
            scratch_database(con, self.warehouse) as scratch,
        ):
            selected, located = f"{scratch}.selected", f"{scratch}.located"
            con.execute(f"CREATE TABLE {selected} AS {self.selection_sql}", self.params)
            firsts = con.sql(f"SELECT split, min(item_id) FROM {selected} GROUP BY split")
            splits = sorted(firsts.fetchall(), key=lambda s: (split_rank(s[0]), s[1], s[0]))
            con.execute(
                f"CREATE TABLE {located} AS {self.located_sql(selected)}",
                [[split for split, _ in splits]],
            )
            con.execute(f"DROP TABLE {selected}")
            yield from self._items(read_sorted(con, located, self.chunk_rows))

    def _items(self, batches: Iterable[pa.RecordBatch]) -> Iterator[list[dict[str, Any]]]:
        """Rows of one item (consecutive, same export_row) made one row with its clips;
        an item whose rows straddle two batches is handed out with the later batch."""
        item: dict[str, Any] | None = None
        item_number = None
        for batch in batches:
            done = []
            for row in batch.to_pylist():
                number, clip = row.pop("export_row"), row.pop("export_clip")
                del row["clip_position"]
                if item is None or number != item_number:
                    if item is not None:
                        done.append(item)
                    item, item_number = row, number
                    item["export_clips"] = []
                if clip is not None:
                    item["export_clips"].append(clip)
            if done:
                yield self.convert(done)
        if item is not None:
            yield self.convert([item])

    def convert(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for row in rows:
            row["audio_paths"] = [
                str(Path(clip["audio_root"] or "") / clip["audio_path"])
                for clip in row["export_clips"]
            ]
        return rows


def export_rows(
    warehouse: Warehouse, task_id: str, include_dropped: bool = False
) -> list[dict[str, Any]]:
    """Exportable rows as a list (small tasks, tests); exports stream `ExportRows`."""
    return list(ExportRows(warehouse, task_id, include_dropped))


def rows_by_split(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows collected per split (holds them all: for small inputs; exports use split_groups)."""
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
    """Write one task's current valid items in `fmt` under `out_dir`; returns the paths.

    Rows stream from DuckDB chunk by chunk into the writers (`ExportRows`), and the card's
    counts are SQL aggregates: memory does not grow with the number of items.
    """
    task = get_task(task_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt not in (*COMMON_FORMATS, *task.export_formats):
        known = ", ".join((*COMMON_FORMATS, *task.export_formats))
        raise ForgeError(f"task {task_id!r} cannot export format {fmt!r}; choose one of {known}")
    rows = ExportRows(warehouse, task_id, include_dropped)
    if not rows:
        raise ForgeError(
            f"no exportable items for task {task_id!r} in {warehouse.root}: "
            f"run `forge generate --task {task_id}` first"
        )
    if fmt == "hf":
        written = [write_hf(rows, out)]
    elif fmt == "jsonl":
        written = write_jsonl(rows, out)
    elif fmt == "pengi-jsonl":
        from pipeline.tasks.common.pengi import write_pengi_jsonl

        written = write_pengi_jsonl(rows, out)  # type: ignore[arg-type]
    else:
        options = ExportOptions(include_dropped=include_dropped, extra_columns=extra_columns)
        written = task.export(fmt, rows, out, options)  # type: ignore[arg-type]
    write_card(warehouse, task_id, rows, out, written)
    return written


def write_card(
    warehouse: Warehouse, task_id: str, rows: ExportRows, out: Path, written: list[Path]
) -> Path:
    """`<out>/README.md`: the dataset card of exactly these rows (split files in its header)."""
    files = {}
    for path in written:
        split = next((s for s in SPLIT_ORDER if path.stem.endswith(s)), None)
        if split and path.is_file() and path.parent == out:
            files[split] = path.name
    card = out / CARD_NAME
    atomic_write_text(card, dataset_card(card_facts(warehouse, task_id, rows), files))
    return card


def jsonl_record(row: dict[str, Any]) -> dict[str, Any]:
    paths = list(row.get("audio_paths") or [])
    source: str | list[str] | None = paths[0] if len(paths) == 1 else (paths or None)
    return {
        "key": row["item_id"],
        "source": source,
        "prompt": row["input"],
        "target": row["answer"],
    }


def write_jsonl(rows: Iterable[dict[str, Any]], out: Path) -> list[Path]:
    written = []
    for split, split_rows in split_groups(rows):
        path = out / f"{split}.jsonl"
        with atomic_writer(path) as handle:
            for row in split_rows:
                handle.write(json.dumps(jsonl_record(row), ensure_ascii=False) + "\n")
        written.append(path)
    return written


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + rename so a killed export never leaves half a file."""
    with atomic_writer(path) as handle:
        handle.write(text)


@contextmanager
def atomic_writer(path: Path) -> Iterator[TextIO]:
    """A text file written piece by piece into a temp file, renamed onto `path` only when
    the block ends without error (a killed or failed export never leaves half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_list(path: Path, items: Iterable[BaseModel]) -> None:
    """`items` as the JSON list `json.dumps([...], ensure_ascii=False, indent=1) + "\\n"`
    writes, byte for byte, one element at a time: an element at depth one is its own
    indent=1 dump with every line shifted right by one space."""
    with atomic_writer(path) as handle:
        first = True
        for item in items:
            element = json.dumps(item.model_dump(), ensure_ascii=False, indent=1)
            handle.write(("[\n " if first else ",\n ") + element.replace("\n", "\n "))
            first = False
        handle.write("[]\n" if first else "\n]\n")


def write_json_splits(
    rows: Iterable[dict[str, Any]],
    out_dir: Path,
    file_prefix: str,
    to_item: Callable[[dict[str, Any]], BaseModel],
) -> list[Path]:
    """One JSON list per split, `<out_dir>/<file_prefix>_<split>.json`, written atomically."""
    written = []
    for split, split_rows in split_groups(rows):
        path = out_dir / f"{file_prefix}_{split}.json"
        write_json_list(path, (to_item(row) for row in split_rows))
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
