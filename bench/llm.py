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


def start_server(latency_s: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.llm.scripted_server",
            "--latency",
            str(latency_s),
            "--reply-json",
            json.dumps(REPLY),
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
    with tempfile.TemporaryDirectory() as folder:
        warehouse = Warehouse(folder)
        warehouse.ensure_catalog()
        cpu_started = time.process_time()
        started = time.perf_counter()
        results = GenerationEngine(warehouse, library, config, "bench").run(requests)
        elapsed = time.perf_counter() - started
        cpu_ms = (time.process_time() - cpu_started) * 1000 / len(requests)
        assert all(r.status == "ok" for r in results), {r.status for r in results}
        stored = warehouse.rows("SELECT count(*) AS n FROM llm_calls")[0]["n"]
        assert stored == len(requests), stored
    return len(requests) / elapsed, cpu_ms


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
    args = parser.parse_args()

    server, base_url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as prompt_dir:
            (Path(prompt_dir) / "bench").mkdir()
            (Path(prompt_dir) / "bench" / "animal.j2").write_text(TEMPLATE)
            library = PromptLibrary.load(base_dir=prompt_dir)
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
