"""Prefect overhead of `build`: the build flow on the sample data vs the same stages
called directly as library functions, in the same process, each on a fresh warehouse.

  direct   pipeline.ingest.ingest_source per sample corpus, pipeline.audio.pitch.measure_clips
           on the pitch task's clip pool, pipeline.tasks.generate_task per task, CLAP
           filter (mark_unscored: no checkpoint), export_task (jsonl), report_task + clap_report
  flow     flows.build.build_flow with the same stages, against a warm local Prefect
           server (prefect_test_harness, started and warmed up by one untimed build)
  rerun    the same build again on the flow's warehouse: everything from the cache

Prints wall times and the ratio flow/direct (target <= 1.3).
Usage: python bench/orchestration.py [--tasks T ...] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

for _name, _value in {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}.items():
    os.environ.setdefault(_name, _value)
for _name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "FORGE_CLAP_BACKEND", "FORGE_CLAP_CHECKPOINT"):
    os.environ.pop(_name, None)

ALL_TASKS = ["auditorybench-animal", "auditorybench-pitch", "nlar", "reasonaqa"]


def run_direct(root: Path, tasks: list[str], stages: list[str]) -> float:
    from flows.stages.audio import PITCH_POOL_SQL, PITCH_TASK
    from pipeline.audio.pitch import measure_clips
    from pipeline.ingest import ingest_source
    from pipeline.llm import LLMConfig
    from pipeline.samples import SAMPLE_PATHS, sample_audio_root
    from pipeline.samples.audio import write_sample_audio
    from pipeline.storage import Warehouse, new_run_id
    from pipeline.tasks import TASKS, export_task, generate_task, report_task

    wh = Warehouse(root)
    run_id = new_run_id()
    llm = LLMConfig.from_env(backend="offline")
    start = time.perf_counter()
    audio_dir = wh.root / "sample_audio"
    write_sample_audio(audio_dir)
    for source, path in SAMPLE_PATHS.items():
        ingest_source(wh, source, path, run_id, sample_audio_root(audio_dir, source))
    if "pitch" in stages and PITCH_TASK in tasks:
        pool = [r["clip_id"] for r in wh.rows(f"SELECT clip_id FROM clips WHERE {PITCH_POOL_SQL}")]
        measure_clips(wh, pool, run_id, TASKS[PITCH_TASK].pitch_config)
    for task in tasks:
        generate_task(wh, task, llm, run_id)
    if "filter" in stages:  # no CLAP configured: what the filter stage does then
        from pipeline.clap.config import NOT_CONFIGURED
        from pipeline.clap.filter import mark_unscored

        for task in tasks:
            mark_unscored(wh, task, NOT_CONFIGURED, run_id)
    from pipeline.clap.report import clap_report

    for task in tasks:
        export_task(wh, task, "jsonl", wh.root / "exports" / task / "jsonl")
        figures = wh.root / "reports" / task
        figures.mkdir(parents=True, exist_ok=True)
        report_task(wh, task).markdown() + clap_report(wh, task, figures)
    return time.perf_counter() - start


def run_flow(root: Path, tasks: list[str], stages: list[str]) -> float:
    from flows.build import build_flow
    from flows.stages.params import BuildParams

    params = BuildParams(
        warehouse=str(root), tasks=tasks, stages=stages, llm={"backend": "offline"}
    )
    start = time.perf_counter()
    build_flow(params)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=ALL_TASKS)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-filter", action="store_true", help="leave the CLAP filter out")
    args = parser.parse_args()
    stages = ["ingest", "pitch", "generate", "filter", "export", "report"]
    if args.no_filter:
        stages.remove("filter")

    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        base = Path(tmp)
        warmup = run_flow(base / "warmup", args.tasks, stages)
        print(f"warm-up build (untimed for the ratio): {warmup:.2f} s")
        direct_times, flow_times, rerun_times = [], [], []
        for i in range(args.repeat):
            direct_times.append(run_direct(base / f"direct{i}", args.tasks, stages))
            flow_times.append(run_flow(base / f"flow{i}", args.tasks, stages))
            rerun_times.append(run_flow(base / f"flow{i}", args.tasks, stages))
        direct, flow, rerun = min(direct_times), min(flow_times), min(rerun_times)
        print(f"tasks: {', '.join(args.tasks)}; stages: {', '.join(stages)}")
        print(f"direct library calls : {direct:8.2f} s")
        print(f"build flow           : {flow:8.2f} s")
        print(f"ratio flow/direct    : {flow / direct:8.2f}  (target <= 1.3)")
        print(f"rerun, all cached    : {rerun:8.2f} s  ({rerun / direct:.2f} x direct)")


if __name__ == "__main__":
    main()
