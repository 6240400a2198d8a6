"""`mellow-json`: ReasonAQA's published layout, one JSON list per split.

Files: `<out>/reasonaqa_<split>.json`. Each element has exactly the published fields:

* `taskname`: `audiocaps` for AudioCaps clips, `clothov21` for Clotho and Clotho-AQA clips
  (a pair takes the first clip's);
* `filepath1`, `filepath2`: audio paths in the release's layout,
  `AudioCapsLarger/<train|val|test>/Y<youtube_id>.wav`, `ClothoV21/<development|validation|
  evaluation>/<file>`; Clotho-AQA audio (binary items) as `ClothoAQA/<file>` (the release
  documents no layout for it). `filepath2` is "" for one-clip items;
* `caption1`, `caption2`: the clip's first caption ("" when it has none, e.g. Clotho-AQA);
* `input`, `answer`, `subtype` (our `items.subtask`).

`read_mellow_json` parses a file back into validated `MellowItem`s (unknown or missing
fields are errors naming the file and element).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from pipeline.tasks.common.export import read_json_items, write_json_splits

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
    return MellowItem(
        taskname=TASKNAME[first["source"]],
        filepath1=mellow_path(first),
        filepath2=mellow_path(second) if second else "",
        caption1=(first.get("captions") or [""])[0],
        caption2=(second.get("captions") or [""])[0] if second else "",
        input=row["input"],
        answer=row["answer"],
        subtype=row["subtask"],
    )


def write_mellow_json(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    return write_json_splits(rows, out_dir, "reasonaqa", mellow_item)


def read_mellow_json(path: Path) -> list[MellowItem]:
    return read_json_items(path, MellowItem)
