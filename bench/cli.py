"""Wall time of everyday `forge` commands vs the library call that does their work.

    python bench/cli.py [--warehouse DIR] [--rounds 3]

Builds the sample warehouse once (`forge run --no-train`, unless DIR already holds one),
then times, as a user would run them (a fresh `forge` process each), `forge export`,
`forge report`, `forge ingest` of one sample corpus and `forge generate` of an already
generated task (a Prefect cache hit) against the same work called directly as library
functions in this process (imports excluded). Both use the same warehouse. The local
Prefect server forge keeps (flows.server) is started before the timings and its start-up
is reported on its own; the best of `--rounds` is reported for each. A private
PREFECT_HOME under the warehouse keeps the measurement away from the user's server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FORGE = Path(sys.executable).with_name("forge")


def forge(env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([str(FORGE), *args], env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def best(fn, rounds: int) -> float:
    return min(fn() for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = args.warehouse or Path(tempfile.mkdtemp(prefix="forge-bench-cli-")) / "warehouse"
    home = root.parent / "prefect_home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), FORGE_WAREHOUSE=str(root))
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        env.pop(name, None)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    started = forge(env, "server", "start")
    print(f"local Prefect server start (first command only): {started:.1f} s")
    if not (root / "data" / "item_records").exists():
        built = forge(env, "run", "--no-train")
        print(f"sample build (forge run --no-train): {built:.1f} s")

    from pipeline.ingest import ingest_source
    from pipeline.llm import LLMConfig
    from pipeline.samples import SAMPLE_PATHS, sample_audio_root
    from pipeline.storage import Warehouse, new_run_id
    from pipeline.tasks import export_task, generate_task, report_task

    wh = Warehouse(root)
    out = root.parent / "bench_out"
    clotho = str(SAMPLE_PATHS["clotho"])
    audio = sample_audio_root(root / "sample_audio", "clotho")
    offline = LLMConfig.from_env(backend="offline")
    cases = [
        (
            "export nlar jsonl",
            ["export", "--task", "nlar", "--format", "jsonl", "--out", str(out / "cli")],
            lambda: export_task(wh, "nlar", "jsonl", out / "lib"),
        ),
        ("report nlar", ["report", "--task", "nlar"], lambda: report_task(wh, "nlar")),
        (
            "ingest clotho sample",
            ["ingest", "--source", "clotho", "--path", clotho],
            lambda: ingest_source(wh, "clotho", Path(clotho), new_run_id(), audio),
        ),
        (
            "generate nlar (cached)",
            ["generate", "--task", "nlar"],
            lambda: generate_task(wh, "nlar", offline, new_run_id()),
        ),
    ]
    print(f"{'command':<24} {'library':>9} {'forge':>9} {'ratio':>7}")
    for name, cli_args, library in cases:
        lib_s = best(lambda library=library: _timed(library), args.rounds)
        cli_s = best(lambda cli_args=cli_args: forge(env, *cli_args), args.rounds)
        print(f"{name:<24} {lib_s:>8.2f}s {cli_s:>8.2f}s {cli_s / lib_s:>6.1f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    forge(env, "server", "stop")
    if args.warehouse is None:
        shutil.rmtree(root.parent, ignore_errors=True)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
