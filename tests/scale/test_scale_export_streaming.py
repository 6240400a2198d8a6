"""Exports stream from DuckDB: the written files equal, byte for byte, what a whole-table
read written in one piece gives (chunks of 3 rows and sort ranges of 7, so every split
crosses chunk and range boundaries), and peak RSS of an export barely grows when the task
has 4x the items, and not at all once DuckDB works at its memory limit."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest import ingest_source
from pipeline.llm import LLMConfig
from pipeline.samples import SAMPLE_PATHS, sample_audio_root
from pipeline.storage import Warehouse
from pipeline.tasks import export_task, generate_task, report_task
from pipeline.tasks.auditorybench.export import ANIMAL_COLUMNS, animal_row
from pipeline.tasks.common import streaming
from pipeline.tasks.common.export import jsonl_record
from pipeline.tasks.common.records import SPLIT_ORDER
from pipeline.tasks.reasonaqa.export import caption_groups_together, mellow_item, release_file_name

REPO = Path(__file__).resolve().parents[2]
TASKS = ("reasonaqa", "auditorybench-animal")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    from pipeline.samples.audio import write_sample_audio

    root = tmp_path_factory.mktemp("streamed")
    audio = root / "audio"
    write_sample_audio(audio)
    wh = Warehouse(root / "warehouse")
    for source, path in SAMPLE_PATHS.items():
        ingest_source(wh, source, path, "test-ingest", sample_audio_root(audio, source))
    for task in TASKS:
        generate_task(wh, task, LLMConfig.from_env(backend="offline"), "test-generate")
    return wh


def whole_rows(wh: Warehouse, task: str) -> dict[str, list[dict[str, Any]]]:
    """The reference: every exportable row read at once, sorted and grouped in Python."""
    rows = wh.rows(
        "SELECT * FROM items_current WHERE task = ? AND validation_status = 'valid' "
        "AND filter_status <> 'dropped'",
        [task],
    )
    clips = {c["clip_id"]: c for c in wh.rows("SELECT * FROM clips")}
    for row in rows:
        row["audio_paths"] = [
            str(Path(clips[c]["audio_root"] or "") / clips[c]["audio_path"])
            for c in row["clip_ids"] or []
            if c in clips
        ]
    rank = {s: i for i, s in enumerate(SPLIT_ORDER)}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (rank.get(r["split"], 99), r["item_id"])):
        grouped.setdefault(row["split"], []).append(row)
    return grouped


def test_streamed_exports_equal_whole_reads_byte_for_byte(
    generated: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "CHUNK_ROWS", 3)
    # Ranges of 7 rows, keys read 5 at a time: every split spans several sort ranges.
    monkeypatch.setattr(streaming, "SORT_RANGE_ROWS", 7)
    monkeypatch.setattr(streaming, "KEY_BATCH_ROWS", 5)
    # jsonl, every task
    for task in TASKS:
        out = tmp_path / task / "jsonl"
        written = export_task(generated, task, "jsonl", out)
        reference = whole_rows(generated, task)
        assert [p.name for p in written] == [f"{s}.jsonl" for s in reference]
        for split, rows in reference.items():
            expected = "".join(json.dumps(jsonl_record(r), ensure_ascii=False) + "\n" for r in rows)
            assert (out / f"{split}.jsonl").read_bytes() == expected.encode()
    # mellow-json: JSON lists written element by element, captions grouped by SQL order
    out = tmp_path / "mellow"
    export_task(generated, "reasonaqa", "mellow-json", out)
    reference = whole_rows(generated, "reasonaqa")
    assert sum(len(r) for r in reference.values()) > 3 * len(reference)  # several chunks
    assert sum(len(r) for r in reference.values()) > 3 * streaming.SORT_RANGE_ROWS
    for split, rows in reference.items():
        items = [mellow_item(r).model_dump() for r in caption_groups_together(rows)]
        expected = json.dumps(items, ensure_ascii=False, indent=1) + "\n"
        assert (out / release_file_name(split)).read_bytes() == expected.encode()
    # auditorybench-csv: CSV written row by row (wiki keeps its \r\n line ends)
    out = tmp_path / "csv"
    export_task(generated, "auditorybench-animal", "auditorybench-csv", out)
    for split, rows in whole_rows(generated, "auditorybench-animal").items():
        buffer = io.StringIO()
        line_end = "\r\n" if split == "wiki" else "\n"
        writer = csv.DictWriter(
            buffer, fieldnames=ANIMAL_COLUMNS, extrasaction="ignore", lineterminator=line_end
        )
        writer.writeheader()
        writer.writerows(animal_row(r) for r in rows)
        path = out / f"animal_sound_recognition_{split}.csv"
        assert path.read_bytes() == buffer.getvalue().encode()


def test_card_and_report_counts_come_from_sql(generated: Warehouse, tmp_path: Path) -> None:
    from pipeline.tasks.common.card import card_facts
    from pipeline.tasks.common.export import ExportRows

    reference = whole_rows(generated, "reasonaqa")
    facts = card_facts(generated, "reasonaqa", ExportRows(generated, "reasonaqa"))
    assert facts["items"] == sum(len(r) for r in reference.values())
    assert facts["splits"] == {s: len(r) for s, r in sorted(reference.items())}
    used = {c for rows in reference.values() for r in rows for c in r["clip_ids"] or []}
    assert facts["clips"] == len(used)
    assert facts["models"] == sorted({r["model"] for rows in reference.values() for r in rows})
    report = report_task(generated, "reasonaqa")
    assert {s.split: s.valid for s in report.splits} == {s: len(r) for s, r in reference.items()}
    (_title, body), *_ = report.extra_sections
    mcq = sum(1 for rows in reference.values() for r in rows if r["subtask"] == "mcq")
    assert f"mcq {mcq}" in body


def export_peak_rss_mb(root: Path, items: int, out: Path) -> float:
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from scale import synthetic_items; from pathlib import Path; "
            "synthetic_items(Path(sys.argv[2]), int(sys.argv[3]))",
            str(REPO / "bench"),
            str(root),
            str(items),
        ],
        check=True,
    )
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "scale.py"),
            "--measure",
            "export-mellow",
            str(root),
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["files"] == 4  # train, val, test and the card
    return float(result["peak_rss_mb"])


def test_export_peak_rss_does_not_grow_with_items(tmp_path: Path) -> None:
    small = export_peak_rss_mb(tmp_path / "small", 6_000, tmp_path / "out-small")
    large = export_peak_rss_mb(tmp_path / "large", 24_000, tmp_path / "out-large")
    # Default settings. A whole-list export held ~4.6 KB per item (2.16 GB for 465,862
    # items): +83 MB here; a streamed export whose DuckDB sorted and joined whole item rows,
    # +72 MB. What is left (~+30 MB) is DuckDB keeping the pages it read and wrote while it
    # is under its memory limit, and the input's larger row groups (6,000 vs 20,000 rows).
    assert large - small < 40, (small, large)


def test_export_peak_rss_stays_flat_past_the_duckdb_memory_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DuckDB reaches a 64 MB limit at ~20,000 of these items (the default 256 MB only at
    # ~200,000, too many for a test); from there on 4x the items must cost next to nothing
    # (measured: peak RSS 243 MB at 24,000 items, 262 MB at 96,000, 305 MB at 1,397,586).
    monkeypatch.setenv(streaming.MEMORY_LIMIT_ENV, "64MB")
    small = export_peak_rss_mb(tmp_path / "small", 24_000, tmp_path / "out-small")
    large = export_peak_rss_mb(tmp_path / "large", 96_000, tmp_path / "out-large")
    # The export query DuckDB sorted and joined whole item rows in held ~4 KB per item.
    assert large - small < 30, (small, large)


def test_hf_export_writes_each_split_through_a_file_with_the_same_rows(
    generated: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    from pipeline.tasks.common import hf_export
    from pipeline.tasks.common.export import export_rows, rows_by_split

    monkeypatch.setattr(streaming, "CHUNK_ROWS", 3)
    monkeypatch.setattr(hf_export, "WRITER_BATCH_ROWS", 2)  # several record batches a split
    out = tmp_path / "exports" / "hf"
    export_task(generated, "auditorybench-animal", "hf", out)
    loaded = datasets.load_from_disk(str(out))
    rows = export_rows(generated, "auditorybench-animal")
    types = hf_export.fact_types(rows)
    reference = {
        split: [hf_export._record(r, types) for r in split_rows]
        for split, split_rows in rows_by_split(rows).items()
    }
    assert list(loaded) == list(reference)
    for split, records in reference.items():
        got = loaded[split].to_list()
        assert len(got) == len(records)
        for saved, record in zip(got, records, strict=True):
            for name in hf_export.AUDIO_COLUMNS:
                # save_to_disk embeds each clip: its bytes, under the file's name.
                audio, expected = saved.pop(name), record.pop(name)
                if expected is None:
                    assert audio is None
                else:
                    source = Path(expected["path"])
                    assert audio == {"bytes": source.read_bytes(), "path": source.name}
            assert saved == record
    assert sorted(p.name for p in out.parent.iterdir()) == ["hf"]  # no build folder left
