"""Compaction of `llm_calls` run folders into call-key buckets, and lookups that read only
the buckets they need: exact cache before and after, kills at every step, bounded files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

# The killed child, its config (chunks of 4 rows) and the slow server are the resume
# test's: the test below adds compaction between the kill and the rerun.
from test_llm_resume import CHILD, N_REQUESTS, config, requests, slow_reply

from pipeline.llm import GenerationEngine, PromptLibrary, recording
from pipeline.llm.recording import (
    CallRecorder,
    bucket_of,
    cache_files,
    compact_run,
    compact_stale,
    load_cached_ok,
    run_folder_name,
    run_spending,
    run_usage,
)
from pipeline.llm.scripted_server import ScriptedServer
from pipeline.storage import Warehouse
from pipeline.storage import schema as schemas

PROMPTS = Path(__file__).parent / "prompts"
REPO = Path(__file__).resolve().parents[2]
START = datetime(2024, 5, 1, tzinfo=UTC)
MAX_FILES_PER_RUN = 17  # 16 hex digits + '_' for keys that do not start with one


def key(i: int) -> str:
    """Keys spread over all 16 hex buckets, as the engine's sha256 keys are."""
    return f"{i % 16:x}{i:031d}"


def call_row(call_key: str, run_id: str, *, status: str = "ok", minute: int = 0) -> dict:
    ok = status == "ok"
    return {
        "call_key": call_key,
        "item_key": f"item-{call_key[-4:]}",
        "prompt_name": "demo/animal" if call_key[-1] in "02468" else "demo/pitch",
        "prompt_version": "v1",
        "model": "m",
        "backend": "openai",
        "endpoint": "http://127.0.0.1",
        "origin": "request",
        "params": "{}",
        "seed": 0,
        "messages": f"[{call_key}]",
        "response_format": "json_schema",
        "status": status,
        "error": None if ok else "server said 500",
        "raw_output": f'{{"answer": "{call_key}/{run_id}"}}' if ok else None,
        "parsed": f'{{"answer": "{call_key}/{run_id}"}}' if ok else None,
        "prompt_tokens": 10 + len(run_id),
        "completion_tokens": 5 if ok else None,
        "cost": 0.01 if ok else None,
        "latency_s": 0.5,
        "attempts": 1 if ok else 3,
        "run_id": run_id,
        "created_at": START + timedelta(minutes=minute),
    }


def record(warehouse: Warehouse, run_id: str, rows: list[dict], flush_every: int) -> None:
    recorder = CallRecorder(warehouse, run_id)
    for index, row in enumerate(rows, 1):
        recorder.add(row)
        if index % flush_every == 0:
            recorder.flush()
    recorder.flush()


def two_runs(warehouse: Warehouse) -> list[str]:
    """Run r1: 100 calls (every 7th failed); run r2, later: 60 calls of which 40 repeat
    r1's keys (r1's failures now ok, other repeats failing now), plus a key without a hex
    first digit. Chunks of 9 rows. Returns every key recorded plus two never recorded."""
    first = [
        call_row(key(i), "r1", status="http_error" if i % 7 == 0 else "ok") for i in range(100)
    ]
    record(warehouse, "r1", first, flush_every=9)
    second = [
        call_row(key(i), "r2", status="ok" if i % 7 == 0 or i >= 100 else "timeout", minute=5)
        for i in range(60, 120)
    ]
    second.append(call_row("zz-not-hex-key", "r2", minute=6))
    record(warehouse, "r2", second, flush_every=9)
    return [key(i) for i in range(120)] + ["zz-not-hex-key", key(500), key(501)]


def table_rows(warehouse: Warehouse) -> list[tuple]:
    """Every row of the table through the catalog view, as sortable tuples (a multiset)."""
    rows = warehouse.rows("SELECT * FROM llm_calls")
    return sorted(tuple(str(v) for v in r.values()) for r in rows)


def costs_view(warehouse: Warehouse) -> list[dict[str, Any]]:
    """The `llm_costs` view; costs rounded, as a float sum depends on the order read."""
    rows = warehouse.rows("SELECT * FROM llm_costs ORDER BY run_id, prompt_name")
    return [{**r, "cost": round(r["cost"], 9)} for r in rows]


def spending(warehouse: Warehouse, run_id: str) -> tuple[int, float]:
    tokens, cost = run_spending(warehouse, run_id)
    return tokens, round(cost, 9)


def usage(warehouse: Warehouse, run_id: str) -> dict[str, Any]:
    found = run_usage(warehouse, run_id)
    found["cost"] = round(found["cost"], 9)
    for prompt in found["by_prompt"].values():
        prompt["cost"] = round(prompt["cost"], 9)
    return found


def run_files(warehouse: Warehouse, run_id: str) -> list[Path]:
    return sorted((warehouse.data_dir / "llm_calls" / run_folder_name(run_id)).glob("*.parquet"))


def staging_left(warehouse: Warehouse) -> list[Path]:
    base = warehouse.data_dir / ".compaction" / "llm_calls"
    return [
        p for sub in ("staging", "spill") if (base / sub).is_dir() for p in (base / sub).iterdir()
    ]


def test_compaction_keeps_rows_cache_and_spending_exact(warehouse: Warehouse) -> None:
    keys = two_runs(warehouse)
    chunks_per_run = {run: len(run_files(warehouse, run)) for run in ("r1", "r2")}
    assert chunks_per_run == {"r1": 12, "r2": 7}
    rows_before = table_rows(warehouse)
    cache_before = load_cached_ok(warehouse, keys)
    spending_before = {run: spending(warehouse, run) for run in ("r1", "r2")}
    usage_before = {run: usage(warehouse, run) for run in ("r1", "r2")}
    costs_before = costs_view(warehouse)
    # The latest ok row wins: r2's for keys 63, 70, ... (failed in r1), r1's where r2 failed.
    assert cache_before[key(70)]["raw_output"].endswith('/r2"}')
    assert cache_before[key(61)]["raw_output"].endswith('/r1"}')
    assert key(0) not in cache_before and key(500) not in cache_before
    assert len(rows_before) == 161

    results = [compact_run(warehouse, run) for run in ("r1", "r2")]

    assert [(r.compacted, r.files_before, r.rows) for r in results] == [
        (True, 12, 100),
        (True, 7, 61),
    ]
    assert table_rows(warehouse) == rows_before
    assert load_cached_ok(warehouse, keys) == cache_before
    assert {run: spending(warehouse, run) for run in ("r1", "r2")} == spending_before
    assert {run: usage(warehouse, run) for run in ("r1", "r2")} == usage_before
    assert costs_view(warehouse) == costs_before
    # The view's columns are exactly the table's: the folders add no hive column.
    described = [r["column_name"] for r in warehouse.rows("DESCRIBE llm_calls")]
    assert described == schemas.table("llm_calls").columns
    # Bounded files, one per bucket, each sorted and holding only its bucket's keys.
    assert [f.name for f in run_files(warehouse, "r1")] == [
        f"bucket={h:x}.parquet" for h in range(16)
    ]
    assert len(run_files(warehouse, "r2")) == 17 <= MAX_FILES_PER_RUN
    for path in run_files(warehouse, "r1") + run_files(warehouse, "r2"):
        stored = pq.read_table(path).to_pylist()
        order = [(r["call_key"], r["created_at"]) for r in stored]
        assert order == sorted(order)
        assert {bucket_of(r["call_key"]) for r in stored} == {path.stem.removeprefix("bucket=")}
    assert staging_left(warehouse) == []


def test_a_lookup_reads_only_the_buckets_of_its_keys_and_the_chunks(warehouse: Warehouse) -> None:
    keys = two_runs(warehouse)
    compact_run(warehouse, "r1")
    wanted = [key(3), key(19), key(70)]  # buckets 3 and 6
    files = cache_files(warehouse, wanted)
    names = sorted(f"{f.parent.name}/{f.name}" for f in files)
    r2_chunks = [f"run=r2/{f.name}" for f in run_files(warehouse, "r2")]
    assert names == sorted(["run=r1/bucket=3.parquet", "run=r1/bucket=6.parquet", *r2_chunks])
    found = load_cached_ok(warehouse, wanted)
    assert set(found) == {key(3), key(19), key(70)}
    assert found == {k: v for k, v in load_cached_ok(warehouse, keys).items() if k in wanted}


def test_compacting_again_changes_nothing_and_new_chunks_of_the_run_are_merged(
    warehouse: Warehouse,
) -> None:
    two_runs(warehouse)
    compact_run(warehouse, "r1")
    stamps = {f: f.stat().st_mtime_ns for f in run_files(warehouse, "r1")}
    again = compact_run(warehouse, "r1")
    assert (again.compacted, again.note) == (False, "no chunk to compact")
    assert {f: f.stat().st_mtime_ns for f in run_files(warehouse, "r1")} == stamps

    # A retried stage keeps its run id: its new chunks join the run's bucket files.
    extra = [call_row(key(i), "r1", minute=9) for i in range(200, 240)]
    record(warehouse, "r1", extra, flush_every=9)
    assert len(run_files(warehouse, "r1")) == 16 + 5
    rows_before = table_rows(warehouse)
    merged = compact_run(warehouse, "r1")
    assert (merged.compacted, merged.rows, merged.files_after) == (True, 140, 16)
    assert table_rows(warehouse) == rows_before
    assert run_usage(warehouse, "r1")["calls"] == 140


def test_a_flush_waits_while_compaction_swaps_the_run_folder(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk written while the run is compacted lands after the swap, in the new
    folder: it is neither swapped out with the old chunks nor lost."""
    record(warehouse, "r1", [call_row(key(i), "r1") for i in range(30)], flush_every=10)
    late = CallRecorder(warehouse, "r1")
    late.add(call_row(key(999), "r1", minute=3))
    flushed = threading.Event()

    def flush_late() -> None:
        late.flush()
        flushed.set()

    def during_compaction(step: str) -> None:
        if step == "staged":
            threading.Thread(target=flush_late).start()
            assert not flushed.wait(0.5), "a flush went through while the run was compacted"

    monkeypatch.setattr(recording, "_after_step", during_compaction)
    result = compact_run(warehouse, "r1")
    assert flushed.wait(10)
    assert result.compacted and result.rows == 30
    names = [f.name for f in run_files(warehouse, "r1")]
    assert sum(n.startswith("part=") for n in names) == 1
    assert warehouse.rows("SELECT count(*) AS n FROM llm_calls")[0]["n"] == 31
    assert key(999) in load_cached_ok(warehouse, [key(999)])


def test_a_failed_compaction_keeps_the_chunks(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.errors import ForgeError

    two_runs(warehouse)
    before = table_rows(warehouse)
    chunks = run_files(warehouse, "r1")

    def disk_full(*args: Any) -> None:
        raise ForgeError("cannot write bucket=3.parquet: No space left on device")

    monkeypatch.setattr(recording, "_exchange", disk_full)
    result = compact_run(warehouse, "r1")
    assert not result.compacted and "No space left" in (result.note or "")
    assert run_files(warehouse, "r1") == chunks
    assert table_rows(warehouse) == before
    assert staging_left(warehouse) == []

    def no_exchange(*args: Any) -> None:
        raise recording._NoExchange("no atomic folder exchange on testos")

    monkeypatch.setattr(recording, "_exchange", no_exchange)
    result = compact_run(warehouse, "r1")
    assert not result.compacted and "testos" in (result.note or "")
    assert run_files(warehouse, "r1") == chunks
    assert table_rows(warehouse) == before


KILL_AT = """
import os, signal, sys
from pipeline.llm import recording
from pipeline.storage import Warehouse

def kill(step):
    if step == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)

recording._after_step = kill
recording.compact_run(Warehouse(sys.argv[1]), "r1")
"""


@pytest.mark.parametrize(
    "step", ["locked", "writing", "bucket-committed", "staged", "exchanged", "retired"]
)
def test_a_kill_at_any_step_of_compaction_loses_and_doubles_nothing(
    warehouse: Warehouse, step: str
) -> None:
    keys = two_runs(warehouse)
    rows_before = table_rows(warehouse)
    cache_before = load_cached_ok(warehouse, keys)
    costs_before = costs_view(warehouse)

    child = subprocess.run(
        [sys.executable, "-c", KILL_AT, str(warehouse.root), step], cwd=REPO, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, f"compaction was not killed at {step}"

    # Right after the kill, SQL sees every row once: the chunks or the buckets, not both.
    assert table_rows(warehouse) == rows_before
    assert load_cached_ok(warehouse, keys) == cache_before
    assert costs_view(warehouse) == costs_before
    names = {f.name.split("=")[0] for f in run_files(warehouse, "r1")}
    assert names == ({"bucket"} if step in ("exchanged", "retired") else {"part"})
    # What the kill left (staged buckets, or the swapped-out chunks) is out of SQL's sight.
    assert bool(staging_left(warehouse)) == (step not in ("locked", "retired"))

    # The next compaction (here: at the start of a later run) finishes the job and tidies.
    results = compact_stale(warehouse, stale_after_s=0)
    compacted = {r.run_folder for r in results if r.compacted}
    assert compacted == ({"run=r2"} if step in ("exchanged", "retired") else {"run=r1", "run=r2"})
    assert table_rows(warehouse) == rows_before
    assert load_cached_ok(warehouse, keys) == cache_before
    assert costs_view(warehouse) == costs_before
    assert all(f.name.startswith("bucket=") for f in run_files(warehouse, "r1"))
    assert staging_left(warehouse) == []


def test_compact_stale_leaves_a_run_that_is_still_writing(warehouse: Warehouse) -> None:
    two_runs(warehouse)
    assert compact_stale(warehouse, stale_after_s=3600) == []
    assert len(run_files(warehouse, "r1")) == 12
    assert {r.run_folder for r in compact_stale(warehouse, stale_after_s=0)} == {
        "run=r1",
        "run=r2",
    }


# ---- a real engine run killed midway, then resumed and compacted -----------------------


def test_a_killed_engine_run_is_compacted_and_resumed_from_exactly_its_flushed_calls(
    tmp_path: Path,
) -> None:
    warehouse = Warehouse(tmp_path / "wh")
    warehouse.ensure_catalog()
    with ScriptedServer(slow_reply) as server:
        code = CHILD.format(
            tests=str(Path(__file__).parent),
            warehouse=str(warehouse.root),
            prompts=str(PROMPTS),
            url=server.base_url,
        )
        child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
        try:
            deadline = time.monotonic() + 60
            # Kill once a third of the requests went out and at least two chunks were flushed.
            while time.monotonic() < deadline and not (
                server.request_count >= N_REQUESTS // 3
                and len(run_files(warehouse, "killed-run")) >= 2
            ):
                if child.poll() is not None:
                    break
                time.sleep(0.01)
            assert child.poll() is None, "the child finished before it could be killed"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(timeout=30)
        sent_before_kill = server.request_count
        flushed = warehouse.rows("SELECT count(*) AS n FROM llm_calls")[0]["n"]
        assert 0 < flushed < N_REQUESTS and sent_before_kill < N_REQUESTS

        # The next run starts by compacting what the killed run left.
        [leftover] = compact_stale(warehouse, stale_after_s=0)
        assert (leftover.run_folder, leftover.compacted, leftover.rows) == (
            "run=killed-run",
            True,
            flushed,
        )
        assert all(f.name.startswith("bucket=") for f in run_files(warehouse, "killed-run"))

        engine = GenerationEngine(
            warehouse, PromptLibrary.load(base_dir=PROMPTS), config(server.base_url), "resume"
        )
        resumed = engine.run(requests())
        assert sum(r.cached for r in resumed) == flushed
        assert server.request_count - sent_before_kill == N_REQUESTS - flushed
        assert all(r.status == "ok" for r in resumed)
        assert len(run_files(warehouse, "resume")) > 1  # chunks of 4 rows
        done = engine.recorder.compact()

    assert (done.compacted, done.rows) == (True, N_REQUESTS - flushed)
    for run_id in ("killed-run", "resume"):
        assert 0 < len(run_files(warehouse, run_id)) <= MAX_FILES_PER_RUN
    counts = warehouse.rows(
        "SELECT count(*) AS n, count(DISTINCT call_key) AS calls FROM llm_calls"
    )[0]
    assert counts == {"n": N_REQUESTS, "calls": N_REQUESTS}
    assert run_usage(warehouse, "killed-run")["calls"] == flushed
    assert run_usage(warehouse, "resume")["calls"] == N_REQUESTS - flushed
    assert staging_left(warehouse) == []


def test_a_run_reads_its_own_chunks_only_for_the_keys_it_recorded_ok(
    warehouse: Warehouse,
) -> None:
    recorder = CallRecorder(warehouse, "long-run")
    for i in range(3):
        recorder.add(call_row(key(i), "long-run", status="ok" if i < 2 else "http_error"))
    recorder.flush()
    own = run_files(warehouse, "long-run")
    assert own and all(f.name.endswith(f"-{recorder.token}.parquet") for f in own)
    # Keys it never recorded ok: none of its chunks is read.
    unknown = [key(i) for i in range(2, 40)]
    assert not set(own) & set(cache_files(warehouse, unknown, recorder))
    assert load_cached_ok(warehouse, unknown, recorder) == {}
    # Keys it recorded ok are still answered from its chunks, exactly as without it.
    both = [key(0), key(1), key(2)]
    assert load_cached_ok(warehouse, both, recorder) == load_cached_ok(warehouse, both)
    assert set(load_cached_ok(warehouse, both, recorder)) == {key(0), key(1)}
    # Another recorder of the same run id (a retried stage) reads them as any chunk.
    other = CallRecorder(warehouse, "long-run")
    assert set(own) <= set(cache_files(warehouse, unknown, other))
