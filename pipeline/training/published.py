"""The published AuditoryBench CSVs (AudioBERT, ICASSP 2025): reading them row by row, and
importing them into the warehouse as a dataset with their splits.

Facts relied on (github HJ-Ok/AudioBERT `dataset/`, and the dev files in
`../shared/data/auditorybench/`; tested on fixture copies in tests/training/data/):

* animal files `animal_sound_recognition_{train,dev,test,wiki}.csv`, header
  `animal,description,sentence`; `description` is the auditory span, `animal` the answer
  (a broad label such as `bird`, stored as published);
* pitch files `sound_pitch_comparsion_{split}.csv` (sic), header
  `sentence,answer,span1,span2`; the first release (`..._dev_with_pitch.csv`) also has
  `id_1,id_2,audio_filename_1,audio_filename_2,avg_pitch_1,avg_pitch_2,
  difference_percentage,answer_pitch`, kept in the item's `facts`;
* every sentence holds one literal `[MASK]`; pitch answers are `higher` / `lower`;
* published dev sizes: 593 animal rows, 1,178 pitch rows (train/dev/test/wiki: animal
  4,211/593/1,211/197, pitch 8,312/1,178/2,387/3,625);
* the items carry no clip: the published pipeline gives them audio by retrieval
  (`"{span} sound"` through CLAP's text tower → nearest clip), which training does here too.

Rows that cannot be used are counted with a reason (and, on import, written to `rejects`
with file, row and field); only a file that cannot be read at all is an error.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import InputFormatError
from pipeline.storage import Warehouse, new_run_id
from pipeline.storage.warehouse import utc_now
from pipeline.tasks.common.completion import write_whole_version_manifest
from pipeline.training.config import TaskName
from pipeline.training.data import MASK, PITCH_ANSWERS, Example, SkipCounter

ANIMAL_COLUMNS = ("animal", "description", "sentence")
PITCH_COLUMNS = ("sentence", "answer", "span1", "span2")
FIRST_RELEASE_PITCH_COLUMNS = (
    "id_1", "id_2", "audio_filename_1", "audio_filename_2",
    "avg_pitch_1", "avg_pitch_2", "difference_percentage", "answer_pitch",
)  # fmt: skip
NUMERIC_COLUMNS = {"avg_pitch_1", "avg_pitch_2", "difference_percentage"}
SPLITS = ("train", "dev", "test", "wiki")
# One generation version for every published split of a task: the current version of a
# task is then the whole published dataset, whichever splits were imported.
PUBLISHED_VERSION = "published-auditorybench"
IMPORT_STAGE = "import"
# The csv module's default field limit; enforced here too because other code in the same
# process may raise the module-wide limit.
FIELD_LIMIT = 131_072
_SPLIT_IN_NAME = re.compile(r"_(train|dev|test|wiki)(?:_|\.|$)")


@dataclass
class CsvReject:
    row: int  # 1-based data row (header excluded)
    reason: str
    field: str | None = None
    detail: str = ""
    raw: str = ""


@dataclass
class PublishedCsv:
    path: Path
    task: TaskName
    rows: int
    examples: list[Example] = field(default_factory=list)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # item_id → extra columns
    rejects: list[CsvReject] = field(default_factory=list)

    def skipped(self) -> SkipCounter:
        counter = SkipCounter()
        for reject in self.rejects:
            if reject.reason != "not_a_number":  # a dropped fact keeps its row
                counter[reject.reason] += 1
        return counter


def split_from_name(path: Path) -> str | None:
    """`..._dev.csv` / `..._dev_with_pitch.csv` → dev; None when the name says no split."""
    match = _SPLIT_IN_NAME.search(path.name)
    return match.group(1) if match else None


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputFormatError(
            path, f"not UTF-8 (byte {exc.start}, file line {line}): {exc.reason}"
        ) from exc


def read_published_csv(path: Path | str) -> PublishedCsv:
    """Every row of an AuditoryBench CSV of either task, or the reason it was refused."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(path, "file not found")
    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputFormatError(path, "empty file: no header row") from None
    except csv.Error as exc:
        raise InputFormatError(path, f"unreadable header: {exc}", row=0) from exc
    if set(ANIMAL_COLUMNS) <= set(header):
        task: TaskName = "auditorybench-animal"
    elif set(PITCH_COLUMNS) <= set(header):
        task = "auditorybench-pitch"
    else:
        raise InputFormatError(
            path,
            f"header {header} has neither the animal columns {list(ANIMAL_COLUMNS)} "
            f"nor the pitch columns {list(PITCH_COLUMNS)}",
        )
    result = PublishedCsv(path, task, rows=0)
    row_number = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # The reader drops the offending line and carries on with the next one.
            row_number += 1
            reason = "field_too_large" if "field larger" in str(exc) else "malformed_csv_row"
            result.rejects.append(CsvReject(row_number, reason, detail=str(exc)))
            continue
        row_number += 1
        if not any(v.strip() for v in values):
            row_number -= 1  # blank lines are not rows
            continue
        _check_row(result, header, values, row_number)
    result.rows = row_number
    return result


def _check_row(result: PublishedCsv, header: list[str], values: list[str], row: int) -> None:
    raw = ",".join(values)[:500]
    for name, value in zip(header, values, strict=False):
        if len(value) > FIELD_LIMIT:
            detail = f"{len(value)} characters, over {FIELD_LIMIT}"
            result.rejects.append(CsvReject(row, "field_too_large", name, detail, raw))
            return
        if "\n" in value or "\r" in value:
            # A stray quote makes the csv module swallow the following lines into one field.
            detail = "field spans several lines (unbalanced quote?)"
            result.rejects.append(CsvReject(row, "multiline_field", name, detail, raw))
            return
    if len(values) != len(header):
        reason = "short_row" if len(values) < len(header) else "long_row"
        detail = f"{len(values)} fields, header has {len(header)}"
        result.rejects.append(CsvReject(row, reason, detail=detail, raw=raw))
        return
    record = {name: value.strip() for name, value in zip(header, values, strict=True)}
    sentence = record["sentence"]
    if sentence.count(MASK) != 1:
        result.rejects.append(
            CsvReject(row, "sentence_without_single_mask", "sentence", f"needs one {MASK}", raw)
        )
        return
    if result.task == "auditorybench-animal":
        answer, spans, answer_field = record["animal"], [record["description"]], "animal"
    else:
        answer, spans, answer_field = record["answer"].lower(), [record["span1"], record["span2"]], "answer"  # fmt: skip
    if not answer or (result.task == "auditorybench-pitch" and answer not in PITCH_ANSWERS):
        detail = f"expected one of {list(PITCH_ANSWERS)}" if answer else "empty"
        result.rejects.append(CsvReject(row, "bad_answer", answer_field, detail, raw))
        return
    item_id = f"{result.path.name}:{row}"
    facts: dict[str, Any] = {}
    for name in FIRST_RELEASE_PITCH_COLUMNS:
        if name not in record or record[name] == "":
            continue
        value: Any = record[name]
        if name in NUMERIC_COLUMNS:
            try:
                value = float(value)
            except ValueError:
                result.rejects.append(
                    CsvReject(row, "not_a_number", name, "value dropped from facts", record[name])
                )
                continue
        facts[name] = value
    if facts:
        result.facts[item_id] = facts
    result.examples.append(
        Example(
            item_id=item_id,
            task=result.task,
            split=split_from_name(result.path) or result.path.stem,
            sentence=sentence,
            answer=answer,
            spans=[s for s in spans if s],
        )
    )


def read_auditorybench_csv(
    path: Path | str, skipped: SkipCounter | None = None
) -> tuple[TaskName, list[Example]]:
    """(task, usable examples); refused rows are added to `skipped` by reason."""
    parsed = read_published_csv(path)
    if skipped is not None:
        skipped.update(parsed.skipped())
    return parsed.task, parsed.examples


# ---- import into the warehouse -----------------------------------------------------------


class ImportSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csv: str
    task: str
    split: str
    rows: int
    imported: int
    rejected: int
    rejects_by_reason: dict[str, int] = Field(default_factory=dict)
    generation_version: str = PUBLISHED_VERSION

    def line(self) -> str:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.rejects_by_reason.items()))
        return (
            f"{self.csv}: {self.task}/{self.split}: {self.imported} of {self.rows} rows imported"
            + (f"; rejected {self.rejected} ({reasons})" if self.rejected else "")
        )


def published_item_id(task: str, split: str, row: int, sentence: str) -> str:
    # The row number keeps the published file's duplicate sentences apart.
    key = json.dumps(["published", task, split, row, sentence])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def import_published_csv(
    warehouse: Warehouse,
    path: Path | str,
    split: Literal["train", "dev", "test", "wiki"] | None = None,
    run_id: str | None = None,
) -> ImportSummary:
    """Write one published CSV as the `published-auditorybench` version of its task/split.

    Re-importing the same split replaces its partition (same item ids). `split` defaults to
    the one in the file name.
    """
    path = Path(path)
    split = split or split_from_name(path)  # type: ignore[assignment]
    if split not in SPLITS:
        raise InputFormatError(
            path, f"cannot tell the split from the file name: pass --split ({', '.join(SPLITS)})"
        )
    parsed = read_published_csv(path)
    run_id = run_id or new_run_id()
    now = utc_now()
    items = []
    for example in parsed.examples:
        row = int(example.item_id.rsplit(":", 1)[1])
        items.append(
            {
                "item_id": published_item_id(parsed.task, split, row, example.sentence),
                "task": parsed.task,
                "subtask": "published",
                "split": split,
                "clip_ids": [],
                "input": example.sentence,
                "answer": example.answer,
                "spans": example.spans,
                "facts": json.dumps(
                    {
                        "source_file": path.name,
                        "source_row": row,
                        **parsed.facts.get(example.item_id, {}),
                    },
                    sort_keys=True,
                ),
                "generation_key": path.name,
                "generation_version": PUBLISHED_VERSION,
                "model": "published",
                "validation_status": "valid",
                "validation_reasons": [],
                "run_id": run_id,
                "created_at": now,
            }
        )
    rejects = [
        {
            "stage": IMPORT_STAGE,
            "source": parsed.task,
            "source_file": str(path),
            "source_row": reject.row,
            "record_id": None,
            "field": reject.field,
            "reason": reject.reason,
            "action": "field_dropped" if reject.reason == "not_a_number" else "row_rejected",
            "detail": reject.detail,
            "raw": reject.raw[:500],
            "run_id": run_id,
            "rejected_at": now,
        }
        for reject in parsed.rejects
    ]
    partition = f"task={parsed.task}/split={split}/version={PUBLISHED_VERSION}"
    warehouse.write_partition("item_records", partition, items)
    # The published splits imported so far become the task's current data, together.
    write_whole_version_manifest(warehouse, parsed.task, PUBLISHED_VERSION, run_id)
    reject_partition = f"stage={IMPORT_STAGE}/source={parsed.task}/split={split}"
    if rejects:
        warehouse.write_partition("rejects", reject_partition, rejects)
    else:
        warehouse.delete_partition("rejects", reject_partition)
    rows_rejected = [r for r in parsed.rejects if r.reason != "not_a_number"]
    reasons: dict[str, int] = {}
    for reject in parsed.rejects:
        reasons[reject.reason] = reasons.get(reject.reason, 0) + 1
    return ImportSummary(
        csv=str(path),
        task=parsed.task,
        split=split,
        rows=parsed.rows,
        imported=len(items),
        rejected=len(rows_rejected),
        rejects_by_reason=reasons,
    )
