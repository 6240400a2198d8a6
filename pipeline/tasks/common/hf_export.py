"""The `hf` export: a `datasets.DatasetDict` with real audio columns, saved with `save_to_disk`.

Columns, every split alike:

* `audio`, `audio_2`: `datasets.Audio` features for the item's first and second clip
  (None when the item has fewer clips, e.g. wiki items have none). A plain file is given
  by its resolved absolute path; a member of a webdataset tar shard by its bytes.
  `save_to_disk` embeds the bytes of every clip, so the saved folder is self-contained.
* the item's text columns (`input`, `answer`, `options`, `spans`, ...), lineage
  (`prompt_name`, `prompt_version`, `model`, `generation_version`) and `facts` as JSON;
* `fact_<name>`: one typed column per scalar fact that every fact-carrying item of the task
  has with one type (e.g. `fact_avg_pitch_1` float64 for pitch comparison).

Decoding, facts checked with datasets 5.2 on these machines: `datasets.Audio(decode=True)`
returns a torchcodec `AudioDecoder` and needs the `torchcodec` package plus FFmpeg's shared
libraries; PyPI's torchcodec 0.17 wheel links CUDA libraries (libnvrtc) and does not load
next to the CPU-only torch used here, and reading any row of a decoding Audio column then
raises ImportError. So the columns are saved as `Audio(decode=False)`: rows read anywhere,
each audio value is `{"path", "bytes"}`, and soundfile decodes the bytes::

    ds = datasets.load_from_disk(path)["test"]
    samples, rate = soundfile.read(io.BytesIO(ds[0]["audio"]["bytes"]))

Where torchcodec works, `ds.cast_column("audio", datasets.Audio())` gives decoded audio.

Writing the column never needs torchcodec: rows are built as `{path, bytes}` structs and
cast to `Audio`, which only converts Arrow storage.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.audio.io import read_audio_bytes, split_location

AUDIO_COLUMNS = ("audio", "audio_2")
TEXT_COLUMNS = (
    "item_id",
    "task",
    "subtask",
    "input",
    "answer",
    "focus",
    "facts",
    "model",
    "prompt_name",
    "prompt_version",
    "generation_version",
    "filter_status",
)
LIST_COLUMNS = ("clip_ids", "audio_paths", "options", "spans")
FACT_PREFIX = "fact_"
WRITER_BATCH_ROWS = 1_000  # records per Arrow record batch while a split is written


def fact_types(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Scalar facts with one type across all items that have facts: name → datasets dtype."""
    seen: dict[str, set[str]] = {}
    with_facts = 0
    for row in rows:
        facts = _facts(row)
        if not facts:
            continue
        with_facts += 1
        for name, value in facts.items():
            seen.setdefault(name, set()).add(_dtype(value))
    types = {}
    for name, kinds in sorted(seen.items()):
        kinds.discard("null")
        if len(kinds) == 1 and "other" not in kinds:
            types[name] = kinds.pop()
        elif kinds == {"int64", "float64"}:
            types[name] = "float64"
    return types if with_facts else {}


def _dtype(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    return "other"


def _facts(row: dict[str, Any]) -> dict[str, Any]:
    try:
        facts = json.loads(row.get("facts") or "{}")
    except json.JSONDecodeError:
        return {}
    return facts if isinstance(facts, dict) else {}


def audio_value(clip: dict[str, Any]) -> dict[str, Any]:
    """The `{path, bytes}` struct of one clip: a resolved path, or a tar member's bytes."""
    path, member = split_location(clip)
    if member is None:
        return {"path": str(path.resolve()), "bytes": None}
    return {"path": member, "bytes": read_audio_bytes(clip)}


def write_hf(rows: Iterable[dict[str, Any]], out: Path) -> Path:
    """Save `rows` (export rows with `export_clips`, grouped by split) as a DatasetDict.

    The fact types take one streamed pass over the rows. A second pass writes each split's
    records, WRITER_BATCH_ROWS at a time, into an Arrow file (datasets' `ArrowWriter`, in a
    temporary folder beside `out`) that the split's Dataset maps from disk, so no split is
    held in memory; `save_to_disk` then copies them into `out`.
    """
    import datasets
    from datasets.arrow_writer import ArrowWriter

    from pipeline.tasks.common.streaming import split_groups

    types = fact_types(rows)
    audio_struct = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    features = datasets.Features(
        {
            **{name: audio_struct for name in AUDIO_COLUMNS},
            **{name: datasets.Value("string") for name in TEXT_COLUMNS},
            **{name: datasets.Sequence(datasets.Value("string")) for name in LIST_COLUMNS},
            **{FACT_PREFIX + name: datasets.Value(dtype) for name, dtype in types.items()},
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.hf-", dir=out.parent) as build:
        splits = {}
        for split, split_rows in split_groups(rows):
            path = str(Path(build) / f"{split}.arrow")
            with ArrowWriter(
                features=features, path=path, writer_batch_size=WRITER_BATCH_ROWS
            ) as writer:
                for row in split_rows:
                    writer.write(_record(row, types))
                writer.finalize()
            dataset = datasets.Dataset.from_file(path)
            for name in AUDIO_COLUMNS:
                dataset = dataset.cast_column(name, datasets.Audio(decode=False))
            splits[split] = dataset
        datasets.DatasetDict(splits).save_to_disk(str(out))
        splits.clear()  # the datasets map files of `build`, removed next
    return out


def _record(row: dict[str, Any], types: dict[str, str]) -> dict[str, Any]:
    clips = {clip["clip_id"]: clip for clip in row.get("export_clips") or []}
    clip_ids = list(row.get("clip_ids") or [])
    record: dict[str, Any] = {name: row.get(name) for name in TEXT_COLUMNS}
    record.update({name: list(row.get(name) or []) for name in LIST_COLUMNS})
    for index, name in enumerate(AUDIO_COLUMNS):
        clip = clips.get(clip_ids[index]) if index < len(clip_ids) else None
        record[name] = audio_value(clip) if clip else None
    facts = _facts(row)
    for name, dtype in types.items():
        value = facts.get(name)
        record[FACT_PREFIX + name] = (
            float(value) if dtype == "float64" and value is not None else value
        )
    return record
