"""Benchmark: LLM engine throughput against a local OpenAI-compatible server.

Starts `pipeline.llm.scripted_server` in its own process with a fixed reply latency and
measures items/s for N distinct requests at concurrency C:

  (a) GenerationEngine.run end to end: render, cache lookup, call, parse, validate,
      record in llm_calls (fresh warehouse each repeat, so nothing is cached);
  (b) a bare AsyncOpenAI + asyncio.Semaphore loop sending the same messages and
      parsing the JSON reply (no validation, no recording);
  (c) the bound C / latency.

Repeats alternate (a) and (b) and report the median. Target: (a)/(b) >= 0.85.

    .venv/bin/python bench/llm.py [--requests 2000] [--concurrency 64] [--latency 0.05]

`--sweep` measures adaptive concurrency instead: the server shares its compute among the
requests in flight (reply latency = latency × max(1, in flight / knee)) and answers 429
above `capacity` in flight (scripted_server's load model). The engine runs with fixed
concurrencies (adaptive off) and then adaptively (bounded by --concurrency); printed:
items/s and 429s received for each, adaptive / best fixed (target >= 0.9) and the 429s
of the default fixed setting (concurrency 32) against the adaptive run's.

    .venv/bin/python bench/llm.py --sweep [--knee 16] [--capacity 24] [--requests 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

from pipeline.llm import GenerationEngine, LLMConfig, LLMRequest, PromptLibrary
from pipeline.llm.engine import messages_for_mode, response_format_for
from pipeline.storage import Warehouse

TEMPLATE = """{#---
description: Benchmark prompt - a masked sentence for one clip.
sampling: {temperature: 0.6, top_p: 0.9, max_tokens: 128}
system: You write short English sentences. Reply with a JSON object only.
schema:
  type: object
  properties:
    decline: {type: boolean}
    sentence: {type: string, minLength: 3}
    answer: {type: string}
  required: [decline]
  additionalProperties: false
---#}
Clip title: {{ title }}
Description: {{ description }}
Tags: {{ tags | join(", ") }}
Write one sentence with [MASK] for the animal.
"""
REPLY = {"decline": False, "sentence": "Woof is the sound a [MASK] makes.", "answer": "dog"}


def start_server(
    latency_s: float, knee: int | None = None, capacity: int | None = None
) -> tuple[subprocess.Popen[str], str]:
    load = []
    if knee is not None:
        load += ["--knee", str(knee)]
    if capacity is not None:
        load += ["--capacity", str(capacity)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.llm.scripted_server",
            "--latency",
            str(latency_s),
            "--reply-json",
            json.dumps(REPLY),
            *load,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return process, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def make_requests(n: int, tag: str) -> list[LLMRequest]:
    return [
        LLMRequest(
            item_key=f"{tag}-{i}",
            prompt="bench/animal",
            variables={
                "title": f"Dog barking {tag} {i}",
                "description": "A medium sized dog barking at the mailman in a backyard.",
                "tags": ["dog", "bark", "woof", "animal"],
            },
        )
        for i in range(n)
    ]


def run_engine(
    library: PromptLibrary, config: LLMConfig, requests: list[LLMRequest]
) -> tuple[float, float]:
    """(items/s, CPU ms per item of this process) for the engine end to end."""
    rate, cpu_ms, _ = run_engine_counted(library, config, requests)
    return rate, cpu_ms


def run_engine_counted(
    library: PromptLibrary, config: LLMConfig, requests: list[LLMRequest]
) -> tuple[float, float, int]:
    """(items/s, CPU ms per item, HTTP attempts beyond one per call = 429s received)."""
    with tempfile.TemporaryDirectory() as folder:
        warehouse = Warehouse(folder)
        warehouse.ensure_catalog()
        cpu_started = time.process_time()
        started = time.perf_counter()
        results = GenerationEngine(warehouse, library, config, "bench").run(requests)
        elapsed = time.perf_counter() - started
        cpu_ms = (time.process_time() - cpu_started) * 1000 / len(requests)
        assert all(r.status == "ok" for r in results), {r.status for r in results}
        counts = warehouse.rows("SELECT count(*) AS n, sum(attempts) AS a FROM llm_calls")[0]
        assert counts["n"] == len(requests), counts
    return len(requests) / elapsed, cpu_ms, int(counts["a"]) - len(requests)


def sweep(args: argparse.Namespace, library: PromptLibrary, base_url: str) -> None:
    """Fixed concurrencies against the adaptive limit (see module docstring)."""

    def config(concurrency: int, adaptive: bool) -> LLMConfig:
        return LLMConfig(
            backend="openai",
            base_url=base_url,
            model="bench-model",
            concurrency=concurrency,
            adaptive_concurrency=adaptive,
            max_retries=10_000,  # every 429 is retried: the figure is how many
            backoff_base_s=0.02,
            backoff_max_s=0.5,
            max_failed_share=1.0,
        )

    run_engine_counted(library, config(8, False), make_requests(100, "warm"))
    fixed_levels = sorted({4, 8, args.knee, args.capacity, 32, args.concurrency})
    results: dict[str, tuple[float, int]] = {}
    for repeat in range(args.repeats):
        for level in fixed_levels:
            rate, _, retried = run_engine_counted(
                library, config(level, False), make_requests(args.requests, f"f{level}-{repeat}")
            )
            best = results.get(f"fixed {level}")
            if best is None or rate > best[0]:
                results[f"fixed {level}"] = (rate, retried)
            print(f"fixed {level:4d}: {rate:7.1f} items/s, {retried:6d} 429s", flush=True)
        rate, _, retried = run_engine_counted(
            library, config(args.concurrency, True), make_requests(args.requests, f"a-{repeat}")
        )
        best = results.get("adaptive")
        if best is None or rate > best[0]:
            results["adaptive"] = (rate, retried)
        print(f"adaptive (max {args.concurrency}): {rate:7.1f} items/s, {retried:6d} 429s")
    best_fixed = max((v for k, v in results.items() if k != "adaptive"), key=lambda v: v[0])
    best_name = next(k for k, v in results.items() if v == best_fixed)
    adaptive_rate, adaptive_429 = results["adaptive"]
    default_429 = results["fixed 32"][1]
    print(
        f"\n{args.requests} requests; server: latency {args.latency * 1000:.0f} ms, knee "
        f"{args.knee}, 429 above {args.capacity} in flight; best of {args.repeats} repeats"
    )
    print(f"best fixed: {best_name} at {best_fixed[0]:.1f} items/s")
    print(
        f"adaptive / best fixed = {adaptive_rate / best_fixed[0]:.3f} (target >= 0.9); "
        f"429s: adaptive {adaptive_429}, default fixed 32 {default_429}; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )


def run_bare(
    library: PromptLibrary, config: LLMConfig, requests: list[LLMRequest], concurrency: int
) -> tuple[float, float]:
    """(items/s, CPU ms per item) for a bare AsyncOpenAI + semaphore loop."""
    template = library.get("bench/animal")
    bodies = [
        messages_for_mode(template, template.render_messages(r.variables), "json_schema")
        for r in requests
    ]
    response_format = response_format_for(template, "json_schema")
    sampling = template.sampling

    async def main() -> None:
        client = openai.AsyncOpenAI(
            api_key="not-needed",
            base_url=config.base_url,
            max_retries=0,
            http_client=httpx.AsyncClient(
                limits=httpx.Limits(
                    max_connections=concurrency, max_keepalive_connections=concurrency
                )
            ),
        )
        semaphore = asyncio.Semaphore(concurrency)

        async def one(messages: list[dict[str, str]]) -> None:
            async with semaphore:
                completion = await client.chat.completions.create(
                    model=config.model,
                    messages=messages,  # type: ignore[arg-type]
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    max_tokens=sampling.max_tokens,
                    seed=0,
                    response_format=response_format,  # type: ignore[arg-type]
                )
                json.loads(completion.choices[0].message.content or "")

        await asyncio.gather(*(one(m) for m in bodies))
        await client.close()

    cpu_started = time.process_time()
    started = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - started
    return len(requests) / elapsed, (time.process_time() - cpu_started) * 1000 / len(requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", action="store_true", help="adaptive vs fixed concurrency")
    parser.add_argument("--knee", type=int, default=16, help="--sweep: server load knee")
    parser.add_argument("--capacity", type=int, default=24, help="--sweep: 429 above this")
    args = parser.parse_args()

    if args.sweep:
        server, base_url = start_server(args.latency, args.knee, args.capacity)
    else:
        server, base_url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as prompt_dir:
            (Path(prompt_dir) / "bench").mkdir()
            (Path(prompt_dir) / "bench" / "animal.j2").write_text(TEMPLATE)
            library = PromptLibrary.load(base_dir=prompt_dir)
            if args.sweep:
                sweep(args, library, base_url)
                return
            config = LLMConfig(
                backend="openai",
                base_url=base_url,
                model="bench-model",
                concurrency=args.concurrency,
                max_retries=0,
            )
            # Warm-up: imports, connection setup, pyarrow's first conversion.
            run_engine(library, config, make_requests(args.concurrency * 2, "warm"))
            run_bare(library, config, make_requests(args.concurrency * 2, "warm"), args.concurrency)
            engine_runs, bare_runs = [], []
            for repeat in range(args.repeats):
                requests = make_requests(args.requests, f"r{repeat}")
                engine_runs.append(run_engine(library, config, requests))
                bare_runs.append(run_bare(library, config, requests, args.concurrency))
                print(
                    f"repeat {repeat + 1}: engine {engine_runs[-1][0]:.0f} items/s "
                    f"({engine_runs[-1][1]:.2f} CPU ms/item), bare {bare_runs[-1][0]:.0f} "
                    f"items/s ({bare_runs[-1][1]:.2f} CPU ms/item)",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(timeout=10)

    engine_rate = statistics.median(r for r, _ in engine_runs)
    bare_rate = statistics.median(r for r, _ in bare_runs)
    engine_cpu = statistics.median(c for _, c in engine_runs)
    bare_cpu = statistics.median(c for _, c in bare_runs)
    bound = args.concurrency / args.latency
    print(
        f"\n{args.requests} requests, concurrency {args.concurrency}, "
        f"server latency {args.latency * 1000:.0f} ms (median of {args.repeats})"
    )
    print(f"(a) engine end to end    {engine_rate:8.0f} items/s")
    print(f"(b) bare AsyncOpenAI loop {bare_rate:7.0f} items/s")
    print(f"(c) bound C/latency      {bound:8.0f} items/s")
    print(f"(a)/(b) = {engine_rate / bare_rate:.3f}   (target >= 0.85)")
    print(f"(a)/(c) = {engine_rate / bound:.3f}   (b)/(c) = {bare_rate / bound:.3f}")
    # CPU time per item does not depend on how busy the machine is: it shows the
    # engine's own overhead even when the wall-clock figures are CPU-starved.
    print(
        f"client CPU per item: engine {engine_cpu:.2f} ms, bare {bare_cpu:.2f} ms "
        f"(bare/engine = {bare_cpu / engine_cpu:.3f}); load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
