"""Benchmark: `llm_calls` cache lookups over chunk files against compacted bucket files.

Builds a warehouse holding `--calls` recorded calls in `--runs` runs, written as the
recorder writes them while a run goes: chunk partitions of `--chunk-rows` rows
(`run=<run>/part=<seq>-<token>.parquet`, through `Warehouse.write_partition`). Row sizes
are ReasonAQA-like: rendered messages ~1.6 kB, reply ~0.4 kB, parsed reply ~0.2 kB; 2% of
the calls failed. Then, in this one process:

  baseline   the lookup as it was before compaction existed: one query over the catalog
             view (every file of the table), `call_key IN (SELECT unnest(?))`, on chunks
  chunks     `load_cached_ok` on the same chunks (reads every chunk: nothing is compacted)
  compact    `compact_run` of every run (time per run, files before/after)
  compacted  `load_cached_ok` on the compacted table (bucket files of the keys' buckets)
  view       the baseline query on the compacted table (fewer files, every bucket)

for a lookup of `--keys` keys (random recorded keys plus 2% never recorded) and of
`--small-keys` keys, each the best of `--repeats` runs; plus `run_spending`/`run_usage`
of one run before and after. Every lookup's result is checked equal to the baseline's.
Prints the figures, the files each lookup reads, and compacted / baseline ratios.

    .venv/bin/python bench/llm_calls.py [--calls 700000] [--runs 5] [--chunk-rows 200]
                                        [--keys 6000] [--small-keys 20] [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from pipeline.llm.recording import (
    cache_files,
    compact_run,
    load_cached_ok,
    run_folder_name,
    run_spending,
    run_usage,
)
from pipeline.storage import Warehouse
from pipeline.storage import schema as schemas

CALL_KEY_HEX_CHARS = 32  # as pipeline.llm.engine.CALL_KEY_HEX_CHARS


def call_key(index: int) -> str:
    return hashlib.sha256(f"call {index}".encode()).hexdigest()[:CALL_KEY_HEX_CHARS]


def build(warehouse: Warehouse, calls: int, runs: int, chunk_rows: int) -> int:
    """Write the calls as chunk partitions; returns the number of files written."""
    warehouse.ensure_catalog()
    arrow = schemas.table("llm_calls").arrow
    con = duckdb.connect()
    per_run = -(-calls // runs)
    files = 0
    for run in range(runs):
        first, last = run * per_run, min(calls, (run + 1) * per_run)
        table = con.sql(
            f"""
            SELECT left(sha256('call ' || i::VARCHAR), {CALL_KEY_HEX_CHARS}) AS call_key,
                   'clip-' || i AS item_key,
                   'reasonaqa/qa' AS prompt_name, 'v' || (i % 3) AS prompt_version,
                   'model-x' AS model, 'openai' AS backend,
                   'http://127.0.0.1:8000/v1' AS endpoint, 'request' AS origin,
                   '{{"max_tokens": 512, "temperature": 0.7}}' AS params, 0::BIGINT AS seed,
                   '[{{"role": "system", "content": "' || repeat('You write questions about
                   sounds. ', 24) || '"}}, {{"role": "user", "content": "clip ' || i || ': '
                   || repeat('a dog barks while rain falls; ', 24) || '"}}]' AS messages,
                   'json_schema' AS response_format,
                   CASE WHEN i % 50 = 0 THEN 'http_error' ELSE 'ok' END AS status,
                   CASE WHEN i % 50 = 0 THEN 'HTTP 500' END AS error,
                   CASE WHEN i % 50 = 0 THEN 500 ELSE 200 END AS http_status,
                   'stop' AS finish_reason,
                   CASE WHEN i % 50 <> 0 THEN '{{"question": "What is heard in clip ' || i
                   || '?", "answer": "' || sha256('a' || i::VARCHAR) || '", "notes": "'
                   || repeat('the dog barks twice ', 12) || '"}}' END AS raw_output,
                   CASE WHEN i % 50 <> 0 THEN '{{"question": "What is heard in clip ' || i
                   || '?", "answer": "' || sha256('a' || i::VARCHAR) || '"}}' END AS parsed,
                   (300 + i % 97)::BIGINT AS prompt_tokens,
                   (60 + i % 41)::BIGINT AS completion_tokens,
                   0.0004 + (i % 7) * 0.00001 AS cost, 0.8 AS latency_s, 1 AS attempts,
                   'run-{run}' AS run_id,
                   TIMESTAMPTZ '2025-01-01 00:00:00+00' + to_milliseconds(i) AS created_at
            FROM range({first}, {last}) AS t(i)
            """
        ).to_arrow_table()
        table = table.select(arrow.names).cast(arrow)
        for seq, start in enumerate(range(0, table.num_rows, chunk_rows), 1):
            partition = f"{run_folder_name(f'run-{run}')}/part={seq:06d}-bench0"
            warehouse.write_partition("llm_calls", partition, table.slice(start, chunk_rows))
            files += 1
    con.close()
    return files


def baseline_lookup(warehouse: Warehouse, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The lookup before compaction existed: every file of the table through the view."""
    rows = warehouse.rows(
        "SELECT call_key, model, backend, raw_output, parsed, attempts FROM llm_calls "
        "WHERE status = 'ok' AND call_key IN (SELECT unnest(?::VARCHAR[])) "
        "QUALIFY row_number() OVER (PARTITION BY call_key ORDER BY created_at DESC) = 1",
        [keys],
    )
    return {row["call_key"]: row for row in rows}


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=700_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunk-rows", type=int, default=200)
    parser.add_argument("--keys", type=int, default=6000)
    parser.add_argument("--small-keys", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-llm-calls-"))
    warehouse = Warehouse(work / "warehouse")
    if warehouse.root.exists():
        shutil.rmtree(warehouse.root)
    started = time.perf_counter()
    files = build(warehouse, args.calls, args.runs, args.chunk_rows)
    print(
        f"built {args.calls} calls in {args.runs} runs as {files} chunk files of "
        f"{args.chunk_rows} rows in {time.perf_counter() - started:.1f} s "
        f"({sum(f.stat().st_size for f in warehouse.data_dir.rglob('*.parquet')) / 1e6:.0f} MB)"
    )

    rng = random.Random(7)
    absent = max(1, args.keys // 50)
    lookups = {
        "large": [call_key(i) for i in rng.sample(range(args.calls), args.keys - absent)]
        + [call_key(args.calls + i) for i in range(absent)],
        "small": [call_key(i) for i in rng.sample(range(args.calls), args.small_keys)],
    }
    one_run = "run-0"
    all_files = len(list((warehouse.data_dir / "llm_calls").rglob("*.parquet")))
    timings: dict[str, dict[str, float]] = {}
    expected: dict[str, Any] = {}
    for name, keys in lookups.items():
        seconds, found = best_of(args.repeats, lambda k=keys: baseline_lookup(warehouse, k))
        expected[name] = found
        timings.setdefault(name, {})["baseline"] = seconds
        print(
            f"baseline  {name:5} lookup of {len(keys):5} keys: {seconds:7.3f} s, "
            f"{len(found)} found, reads {all_files} files"
        )
        seconds, found = best_of(args.repeats, lambda k=keys: load_cached_ok(warehouse, k))
        assert found == expected[name], "load_cached_ok differs from the baseline on chunks"
        timings[name]["chunks"] = seconds
        print(
            f"chunks    {name:5} lookup of {len(keys):5} keys: {seconds:7.3f} s, "
            f"reads {len(cache_files(warehouse, keys))} files"
        )
    spend_before = best_of(
        args.repeats, lambda: (run_spending(warehouse, one_run), run_usage(warehouse, one_run))
    )

    compact_seconds = []
    for run in range(args.runs):
        result = compact_run(warehouse, f"run-{run}")
        assert result.compacted, result.note
        compact_seconds.append(result.seconds)
        print(
            f"compact   run-{run}: {result.rows} rows, {result.files_before} -> "
            f"{result.files_after} files in {result.seconds:.2f} s"
        )
    all_files = len(list((warehouse.data_dir / "llm_calls").rglob("*.parquet")))
    for name, keys in lookups.items():
        seconds, found = best_of(args.repeats, lambda k=keys: load_cached_ok(warehouse, k))
        assert found == expected[name], "load_cached_ok differs from the baseline after compaction"
        timings[name]["compacted"] = seconds
        print(
            f"compacted {name:5} lookup of {len(keys):5} keys: {seconds:7.3f} s, "
            f"reads {len(cache_files(warehouse, keys))} files"
        )
        seconds, found = best_of(args.repeats, lambda k=keys: baseline_lookup(warehouse, k))
        assert found == expected[name]
        timings[name]["view"] = seconds
        print(
            f"view      {name:5} lookup of {len(keys):5} keys: {seconds:7.3f} s, "
            f"reads {all_files} files (the baseline query on the compacted table)"
        )
    spend_after = best_of(
        args.repeats, lambda: (run_spending(warehouse, one_run), run_usage(warehouse, one_run))
    )
    assert spend_after[1][0][0] == spend_before[1][0][0]
    assert spend_after[1][1]["calls"] == spend_before[1][1]["calls"]
    print(
        f"run_spending + run_usage of {one_run}: {spend_before[0]:.3f} s on chunks, "
        f"{spend_after[0]:.3f} s compacted"
    )
    for name, keys in lookups.items():
        t = timings[name]
        print(
            f"ratio {name} lookup ({len(keys)} keys): compacted / baseline = "
            f"{t['compacted'] / t['baseline']:.3f} ({t['baseline'] / t['compacted']:.1f}x faster); "
            f"chunks / baseline = {t['chunks'] / t['baseline']:.3f}"
        )
    print(f"compaction: {sum(compact_seconds):.1f} s for {args.calls} calls")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
