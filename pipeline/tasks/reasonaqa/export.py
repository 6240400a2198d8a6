"""`mellow-json`: ReasonAQA's published layout, one JSON list per split.

Files: the release's split files `<out>/train.json`, `val.json` (our `dev`), `test.json`;
other splits (e.g. `wiki`) keep `reasonaqa_<split>.json`. Each element has exactly the
published fields:

* `taskname`: `audiocaps` for AudioCaps clips, `clothov21` for Clotho and Clotho-AQA clips
  (a pair takes the first clip's);
* `filepath1`, `filepath2`: audio paths in the release's layout,
  `AudioCapsLarger/<train|val|test>/Y<youtube_id>.wav`, `ClothoV21/<development|validation|
  evaluation>/<file>`; Clotho-AQA audio (binary items) as `ClothoAQA/<file>` (the release
  documents no layout for it). `filepath2` is "" for one-clip items;
* `caption1`, `caption2`: the clip's first caption ("" when it has none, e.g. Clotho-AQA);
  for a captioning item, `caption1` is the item's own caption (Mellow's eval loader
  answers captioning items with `caption1`);
* `input`, `answer`;
* `subtype`: the release's source-file name for the item's family and corpus
  (`release.release_subtype`, e.g. `ACD-1.json`, `CLE.json`, `AudioCaps.json`).

How Mellow's code consumes these files, and so what this export must keep true, is
stated in `pipeline.tasks.reasonaqa.release` (loader inputs, option parsing, metrics);
`tests/tasks/test_reasonaqa_mellow_replay.py` replays those rules on an export.

`read_mellow_json` parses a file back into validated `MellowItem`s (unknown or missing
fields are errors naming the file and element).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from pipeline.tasks.common.export import (
    ExportRows,
    read_json_items,
    rows_by_split,
    write_json_list,
)
from pipeline.tasks.common.streaming import split_groups
from pipeline.tasks.reasonaqa.release import RELEASE_FILE, release_subtype

AUDIO_PREFIX = {"audiocaps": "AudioCapsLarger", "clotho": "ClothoV21", "clotho-aqa": "ClothoAQA"}
TASKNAME = {"audiocaps": "audiocaps", "clotho": "clothov21", "clotho-aqa": "clothov21"}


class MellowItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    taskname: str
    filepath1: str
    filepath2: str
    caption1: str
    caption2: str
    input: str
    answer: str
    subtype: str


def mellow_path(clip: dict[str, Any]) -> str:
    return f"{AUDIO_PREFIX[clip['source']]}/{clip['audio_path']}"


def mellow_item(row: dict[str, Any]) -> MellowItem:
    """One `items_current` row of task reasonaqa in the published layout."""
    facts = json.loads(row["facts"]) if row.get("facts") else {}
    clips = facts.get("clips") or []
    if not clips:
        raise ValueError(f"item {row['item_id']} has no facts.clips; regenerate the task")
    first = clips[0]
    second = clips[1] if len(clips) > 1 else None
    caption1 = (first.get("captions") or [""])[0]
    if row["subtask"] == "caption":
        caption1 = row["answer"]
    return MellowItem(
        taskname=TASKNAME[first["source"]],
        filepath1=mellow_path(first),
        filepath2=mellow_path(second) if second else "",
        caption1=caption1,
        caption2=(second.get("captions") or [""])[0] if second else "",
        input=row["input"],
        answer=row["answer"],
        subtype=release_subtype(row["subtask"], first["source"]),
    )


def release_file_name(split: str) -> str:
    return RELEASE_FILE.get(split, f"reasonaqa_{split}.json")


def caption_groups_together(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Captioning items last, each clip's captions consecutive and in caption order.

    Mellow's captioning metric scores five consecutive items as one clip's references.
    """

    def key(indexed: tuple[int, dict[str, Any]]) -> tuple[Any, ...]:
        index, row = indexed
        if row["subtask"] != "caption":
            return (0, index)
        facts = json.loads(row["facts"]) if row.get("facts") else {}
        return (1, list(row["clip_ids"] or []), facts.get("caption_index", 0))

    return [row for _, row in sorted(enumerate(rows), key=key)]


# `caption_groups_together` as ORDER BY terms inside each split, so streamed exports need no
# sort in Python: other items first (by item_id), then captions by clip list and caption index.
CAPTION_GROUPS_ORDER: tuple[str, ...] = (
    "coalesce(subtask = 'caption', false)",
    "CASE WHEN subtask = 'caption' THEN coalesce(clip_ids, []::VARCHAR[]) END",
    "CASE WHEN subtask = 'caption' THEN "
    "coalesce(TRY_CAST(json_extract(facts, '$.caption_index') AS BIGINT), 0) END",
)


def write_mellow_json(rows: Iterable[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One JSON list per split under the release's file names, written atomically.

    Streamed export rows are re-queried in caption-group order; a plain list is sorted.
    """
    if isinstance(rows, ExportRows):
        ordered: Iterable[dict[str, Any]] = rows.ordered(CAPTION_GROUPS_ORDER)
    else:
        ordered = [
            row
            for split_rows in rows_by_split(rows).values()
            for row in caption_groups_together(split_rows)
        ]
    written = []
    for split, split_rows in split_groups(ordered):
        path = out_dir / release_file_name(split)
        write_json_list(path, (mellow_item(row) for row in split_rows))
        written.append(path)
    return written


def read_mellow_json(path: Path) -> list[MellowItem]:
    return read_json_items(path, MellowItem)
