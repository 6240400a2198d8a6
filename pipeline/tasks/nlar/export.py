"""`nlar-json`: our documented NLAR format, one JSON list per split (`nlar_<split>.json`).

No public file format exists for NLAR (the APT paper describes the procedure, not a
file); ours carries, per question:

* `id` (items.item_id), `split`;
* `clip_id1`, `clip_id2` and `audio_path1`, `audio_path2` (relative to the Clotho-AQA
  audio root) in the order the question uses them: "the first (recording)" is clip 1;
* `question`, `answer` ("unclear" when the annotations do not settle it), `answer_type`
  (clip-choice | yes-no | position | count), `question_family` (presence | frequency |
  acoustic, APT's three), `question_type` (which_contains | both_contain | where_occurs |
  more_count | total_count | acoustic_compare), `options` (the closed answer set; [] for
  counts), `event` (for acoustic questions: the event whose description the feature was
  to come from);
* `feature` (acoustic questions: the compared quality, words of the events'
  descriptions; null otherwise) and `feature_support` (per clip: `yes` | `maybe` | `no`
  and the events whose descriptions support the feature; null otherwise);
* `order_dependent` (swapping the clips changes the answer), `swapped` (this item is the
  swapped copy of another), `independent` (false exactly for swapped copies: report
  accuracy on `independent` items to count each question once) and `twin_of` (for a
  swapped copy, the `id` of its original; null otherwise);
* `evidence`: the annotations of the event in each clip (`first`, `second`: present,
  count, position, not_positions and the voted Clotho-AQA questions behind them, or
  null when that clip's annotators were not asked), and `event_description`.

`read_nlar_json` parses a file back into validated `NLARJsonItem`s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from pipeline.tasks.common.export import read_json_items, write_json_splits
from pipeline.tasks.nlar.labels import FAMILY_OF


class NLARJsonItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    split: str
    clip_id1: str
    clip_id2: str
    audio_path1: str | None
    audio_path2: str | None
    question: str
    answer: str
    answer_type: str
    question_family: str
    question_type: str
    options: list[str]
    event: str
    feature: str | None
    feature_support: dict[str, Any] | None
    order_dependent: bool
    swapped: bool
    independent: bool
    twin_of: str | None
    evidence: dict[str, Any]
    event_description: str | None


def nlar_item(row: dict[str, Any]) -> NLARJsonItem:
    facts = json.loads(row["facts"]) if row.get("facts") else {}
    first, second = row["clip_ids"]
    path1, path2 = facts.get("audio_paths") or [None, None]
    return NLARJsonItem(
        id=row["item_id"],
        split=row["split"],
        clip_id1=first,
        clip_id2=second,
        audio_path1=path1,
        audio_path2=path2,
        question=row["input"],
        answer=row["answer"],
        answer_type=facts["answer_type"],
        question_family=facts.get("family") or FAMILY_OF[facts["kind"]],
        question_type=facts["kind"],
        options=list(row.get("options") or []),
        event=facts["event"],
        feature=facts.get("feature"),
        feature_support=facts.get("feature_support"),
        order_dependent=facts["order_dependent"],
        swapped=facts["swapped"],
        independent=facts.get("independent", not facts["swapped"]),
        twin_of=facts.get("twin_of"),
        evidence=facts["evidence"],
        event_description=facts.get("description"),
    )


def write_nlar_json(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    return write_json_splits(rows, out_dir, "nlar", nlar_item)


def read_nlar_json(path: Path) -> list[NLARJsonItem]:
    return read_json_items(path, NLARJsonItem)
