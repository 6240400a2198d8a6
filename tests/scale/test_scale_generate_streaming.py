"""Generation streams: chunk sizes never change the items, the vectorised duplicate rule
equals the plain walk over sets, and neither a failed nor a killed generation leaves items
or staging files behind."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import ForgeError
from pipeline.ingest import ingest_source
from pipeline.llm import LLMConfig
from pipeline.samples import SAMPLE_PATHS
from pipeline.storage import Warehouse
from pipeline.tasks import generate_task
from pipeline.tasks.common import generate, staging
from pipeline.tasks.common import validators as v
from pipeline.tasks.common.dedup import mark_duplicates, normalize_text
from pipeline.tasks.common.records import SPLIT_ORDER, ItemRecord
from pipeline.tasks.reasonaqa import task as reasonaqa_task

REPO = Path(__file__).resolve().parents[2]
COLUMNS = (
    "item_id, split, subtask, input, answer, options, facts, validation_status, "
    "validation_reasons, llm_call_key"
)


def ingested(root: Path) -> Warehouse:
    wh = Warehouse(root)
    for source in ("audiocaps", "clotho", "clotho-aqa"):
        ingest_source(wh, source, SAMPLE_PATHS[source], "test-ingest", None)
    return wh


def item_rows(wh: Warehouse) -> list[tuple[Any, ...]]:
    rows = wh.rows(f"SELECT {COLUMNS} FROM items_current ORDER BY item_id")
    return [tuple(str(value) for value in row.values()) for row in rows]


def test_chunk_sizes_do_not_change_the_items(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = ingested(tmp_path / "whole")
    summary = generate_task(whole, "reasonaqa", LLMConfig.from_env(backend="offline"), "r")
    # Chunks of 3 clips, 7 drafts and 5 rows: every boundary is crossed many times.
    monkeypatch.setattr(reasonaqa_task, "CLIP_CHUNK", 3)
    monkeypatch.setattr(generate, "STAGE_CHUNK", 7)
    monkeypatch.setattr(staging, "READ_BATCH_ROWS", 5)
    chunked = ingested(tmp_path / "chunked")
    chunked_summary = generate_task(
        chunked, "reasonaqa", LLMConfig.from_env(backend="offline"), "r"
    )
    assert summary.items > 50 and summary.notes.get("mcq_letters")
    assert item_rows(chunked) == item_rows(whole)
    for field in ("items", "valid", "valid_by_split", "rejected_by_reason", "notes"):
        assert getattr(chunked_summary, field) == getattr(summary, field), field
    assert not list((chunked.data_dir / staging.STAGING_DIR).glob("*/*"))
    # The run's calls end compacted: one sorted file per call-key bucket, no chunks.
    run_files = sorted(p.name for p in (chunked.data_dir / "llm_calls" / "run=r").iterdir())
    assert run_files and all(name.startswith("bucket=") for name in run_files)
    assert len(run_files) <= 17


def _record(index: int, split: str, text: str | None, valid: bool) -> ItemRecord:
    return ItemRecord(
        item_id=f"{index:024x}",
        task="t",
        split=split,  # type: ignore[arg-type]
        input=text,
        generation_version="g",
        validation_status="valid" if valid else "rejected",
        validation_reasons=[] if valid else ["schema_invalid"],
        run_id="r",
        created_at=datetime.now(UTC),
    )


def walk_over_sets(records: list[ItemRecord]) -> dict[str, str | None]:
    """The duplicate rule written plainly: visit valid records in precedence order."""
    seen_exact: set[str] = set()
    seen_normalized: set[str] = set()
    reasons: dict[str, str | None] = {}
    ordered = sorted(records, key=lambda r: (SPLIT_ORDER.index(r.split), r.item_id))
    for record in ordered:
        reasons[record.item_id] = None
        if record.validation_status != "valid" or record.input is None:
            continue
        normalized = normalize_text(record.input)
        if record.input in seen_exact:
            reasons[record.item_id] = v.DUPLICATE_EXACT
        elif normalized and normalized in seen_normalized:
            reasons[record.item_id] = v.DUPLICATE_NORMALIZED
        else:
            seen_exact.add(record.input)
            seen_normalized.add(normalized)
    return reasons


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_duplicates_equal_the_walk_over_sets(seed: int) -> None:
    rng = random.Random(seed)
    words = ["A dog barks", "a dog barks!", "A DOG barks.", "Rain", "rain", "?!", "...", "é"]
    records = [
        _record(
            rng.randrange(10**9) * 1000 + index,
            rng.choice(SPLIT_ORDER),
            rng.choice([*words, None]),
            rng.random() > 0.2,
        )
        for index in range(400)
    ]
    expected = walk_over_sets(records)
    counts = mark_duplicates(records, lambda r: r.input)
    got = {
        r.item_id: next((x for x in r.validation_reasons if x.startswith("duplicate")), None)
        for r in records
    }
    assert got == expected
    assert counts[v.DUPLICATE_EXACT] == sum(x == v.DUPLICATE_EXACT for x in expected.values())
    assert counts[v.DUPLICATE_NORMALIZED] == sum(
        x == v.DUPLICATE_NORMALIZED for x in expected.values()
    )
    assert counts[v.DUPLICATE_EXACT] and counts[v.DUPLICATE_NORMALIZED]


def test_repeated_item_ids_are_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh = ingested(tmp_path / "wh")
    original = reasonaqa_task.caption_items

    def twice(ctx: Any, clips: list[dict[str, Any]]) -> Any:
        yield from original(ctx, clips)
        yield from original(ctx, clips[:1])

    monkeypatch.setattr(reasonaqa_task, "caption_items", twice)
    with pytest.raises(ForgeError, match="two items share generation_key 'caption:0'"):
        generate_task(wh, "reasonaqa", LLMConfig.from_env(backend="offline"), "r")
    assert not wh.partitions("item_records")
    assert not list((wh.data_dir / staging.STAGING_DIR).glob("*/*"))


KILLED_CHILD = """
import sys, time
from pipeline.llm import LLMConfig
from pipeline.storage import Warehouse
from pipeline.tasks import generate_task
from pipeline.tasks.common import staging

original = staging.StagedItems.write_partitions

def stall(self, *args, **kwargs):
    print("staged", flush=True)
    time.sleep(60)

staging.StagedItems.write_partitions = stall
generate_task(Warehouse(sys.argv[1]), "reasonaqa", LLMConfig.from_env(backend="offline"), "k")
"""


def test_a_killed_generation_leaves_no_items_and_its_staging_is_removed_later(
    tmp_path: Path,
) -> None:
    wh = ingested(tmp_path / "wh")
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, str(wh.root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "staged"
        staged = list((wh.data_dir / staging.STAGING_DIR).glob("*/items.parquet"))
        assert len(staged) == 1  # everything was staged, nothing written yet
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    time.sleep(0.1)
    assert not wh.partitions("item_records")
    assert not wh.rows("SELECT * FROM items_current")
    summary = generate_task(wh, "reasonaqa", LLMConfig.from_env(backend="offline"), "k")
    assert summary.items and len(wh.rows("SELECT * FROM items_current")) == summary.items
    assert not list((wh.data_dir / staging.STAGING_DIR).iterdir())


def test_generation_runs_with_rarer_full_collections_and_restores_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc
    import threading

    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []

    def failing_stage(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.get_threshold())
        raise RuntimeError("stage failed")

    monkeypatch.setattr(generate, "_stage", failing_stage)
    with pytest.raises(RuntimeError, match="stage failed"):
        generate_task(ingested(tmp_path), "reasonaqa", LLMConfig.from_env(backend="offline"), "r")
    assert seen and seen[0][2] == max(before[2], generate.FULL_COLLECTION_EVERY)
    assert seen[0][:2] == before[:2]  # young generations as they were
    assert gc.get_threshold() == before  # restored, also after a failure

    # Two generations in threads: the setting holds until the last one ends.
    first_inside, second_done, release = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with generate.rarer_full_collections():
            first_inside.set()
            release.wait(10)

    def second() -> None:
        first_inside.wait(10)
        with generate.rarer_full_collections():
            pass
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert second_done.wait(10)
    assert gc.get_threshold()[2] == max(before[2], generate.FULL_COLLECTION_EVERY)
    release.set()
    for thread in threads:
        thread.join(10)
    assert gc.get_threshold() == before
