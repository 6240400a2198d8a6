"""`pengi-jsonl`: every task's items as Pengi-style instruction data, audio + prompt -> text.

Pengi (Microsoft; the audio-language model behind Mellow) frames each audio task with one
text template (its paper's task table): audio captioning `generate audio caption` ->
caption; audio question answering `question: {question}` -> answer; sound event
classification `this is a sound of` -> event names. One file per split,
`<out_dir>/pengi_<split>.jsonl`, one object per item:

* `audio`: the item's audio path (a list for two-clip items);
* `prompt`: the Pengi template filled for the item;
* `target`: the expected text;
* `key`, `task`, `template`: our item id, task and the template name, for tracing.

Which template each item takes:

* ReasonAQA captioning items -> `generate audio caption`; every other ReasonAQA family,
  NLAR and AuditoryBench pitch clip pairs (the sentence with its `[MASK]`, answered
  higher / lower) -> `question: {q}`;
* AuditoryBench animal clips -> `this is a sound of` with the animal as target.

Items without audio (the AuditoryBench wiki splits) are left out: a Pengi item needs audio.
The SLAM-AAC style `jsonl` export (`{key, source, prompt, target}`) is separate and stays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.tasks.common.export import atomic_write_text, rows_by_split

FORMAT = "pengi-jsonl"
CAPTION_PROMPT = "generate audio caption"
QUESTION_PROMPT = "question: {question}"
CLASSIFICATION_PROMPT = "this is a sound of"


def pengi_template(task: str, subtask: str | None) -> str:
    if task == "reasonaqa" and subtask == "caption":
        return CAPTION_PROMPT
    if task == "auditorybench-animal":
        return CLASSIFICATION_PROMPT
    return QUESTION_PROMPT


def pengi_record(row: dict[str, Any]) -> dict[str, Any] | None:
    """One item in Pengi's form, or None for an item without audio."""
    paths = list(row.get("audio_paths") or [])
    if not paths:
        return None
    template = pengi_template(row["task"], row.get("subtask"))
    prompt = (
        QUESTION_PROMPT.format(question=row["input"]) if template == QUESTION_PROMPT else template
    )
    return {
        "key": row["item_id"],
        "task": row["task"],
        "template": template,
        "audio": paths[0] if len(paths) == 1 else paths,
        "prompt": prompt,
        "target": row["answer"],
    }


def write_pengi_jsonl(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    written = []
    for split, split_rows in rows_by_split(rows).items():
        records = [r for r in (pengi_record(row) for row in split_rows) if r is not None]
        if not records:
            continue
        path = out / f"pengi_{split}.jsonl"
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        written.append(path)
    return written
