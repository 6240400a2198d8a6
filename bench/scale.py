"""Scale of the export and report stages: wall, CPU, peak RSS, files, items/s per size.

Corpus: ReasonAQA-shaped items written straight into `item_records` (one current
generation, splits train/dev/test 80/10/10, every family of the task, one `clips` row per
two items with Clotho/AudioCaps layouts), in chunks of `WRITE_CHUNK` rows so the setup
itself stays small. Full size (`--fraction 1`) is the size of an offline ReasonAQA run from
full AudioCaps + Clotho: FULL_ITEMS = 465,862 items.

Each stage measurement runs in a fresh subprocess (`--child`), started by a measuring
process (`--measure`) that runs nothing else and reads `resource.getrusage(RUSAGE_CHILDREN)`
after it ends: `ru_maxrss` (the child's peak RSS, KiB on Linux) and user+system CPU. Stages:

  export-jsonl   export_task(..., 'jsonl')          (plus the dataset card)
  export-mellow  export_task(..., 'mellow-json')    (the release layout, plus the card)
  report         report_task(...).markdown()

Not measured here (yet): ingest, generate (offline backend) and the 3x ReasonAQA size;
generation still holds whole lists and is measured by the generation work.

Usage: python bench/scale.py [--fraction F ...] [--stages S ...] [--work DIR]
Prints a table per size and stage, per-item cost ratio (largest size / smallest size, CPU
seconds per item), and ends with exactly one line
`scale: peak RSS <max MB> MB, per-item cost ratio <worst ratio>`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FULL_ITEMS = 465_862
WRITE_CHUNK = 20_000
TASK = "reasonaqa"
STAGES = ("export-jsonl", "export-mellow", "report")
SUBTASKS = ("mcq", "detail", "entailment", "caption", "difference-short", "binary")


def split_of(number: int) -> str:
    return "train" if number % 10 < 8 else ("dev", "test")[number % 10 - 8]


def synthetic_items(warehouse_root: Path, items: int, seed: int = 0) -> None:
    """Write `items` valid current ReasonAQA-shaped items (and their clips) in chunks."""
    import random

    sys.path.insert(0, str(REPO))
    from pipeline.storage import Warehouse
    from pipeline.storage.warehouse import utc_now

    wh = Warehouse(warehouse_root)
    rng = random.Random(seed)
    now = utc_now()
    version = "scale-bench"
    clips_total = max(1, items // 2)
    with wh.writer("clips", "source=bench") as clip_writer:
        for start in range(0, clips_total, WRITE_CHUNK):
            rows = []
            for n in range(start, min(start + WRITE_CHUNK, clips_total)):
                source = "clotho" if n % 3 else "audiocaps"
                rows.append(
                    {
                        "clip_id": f"{source}:clip{n:07d}.wav",
                        "source": source,
                        "split": split_of(n),
                        "source_split": "development",
                        "audio_path": f"development/clip{n:07d}.wav",
                        "audio_root": str(warehouse_root / "audio"),
                        "captions": [f"a sound number {n} with birds and rain"],
                        "license": "CC BY 4.0",
                        "source_file": "bench.csv",
                        "source_row": n + 1,
                        "run_id": "bench",
                        "ingested_at": now,
                    }
                )
            clip_writer.write(rows)
    with wh.writer("item_records", f"task={TASK}/bench") as writer:
        for start in range(0, items, WRITE_CHUNK):
            rows = []
            for n in range(start, min(start + WRITE_CHUNK, items)):
                clip = n // 2
                source = "clotho" if clip % 3 else "audiocaps"
                clip_id = f"{source}:clip{clip:07d}.wav"
                subtask = SUBTASKS[n % len(SUBTASKS)]
                answer = f"{'abcd'[rng.randrange(4)]}) option {n % 7}"
                facts = {
                    "clips": [
                        {
                            "source": source,
                            "audio_path": f"development/clip{clip:07d}.wav",
                            "captions": [f"a sound number {clip} with birds and rain"],
                        }
                    ],
                    "caption_index": n % 5,
                }
                rows.append(
                    {
                        "item_id": f"{n:024x}",
                        "task": TASK,
                        "subtask": subtask,
                        "split": split_of(clip),
                        "clip_ids": [clip_id],
                        "input": f"Question {n}: what can be heard in recording {clip}?",
                        "answer": answer,
                        "options": [f"{x}) option {n % 7}" for x in "abcd"],
                        "facts": json.dumps(facts),
                        "generation_version": version,
                        "prompt_name": f"reasonaqa/{subtask}",
                        "prompt_version": "v1",
                        "model": "offline-rules",
                        "validation_status": "valid" if n % 50 else "rejected",
                        "validation_reasons": [] if n % 50 else ["duplicate_exact"],
                        "run_id": "bench",
                        "created_at": now,
                    }
                )
            writer.write(rows)


def child(stage: str, root: str, out: str) -> None:
    """One stage in this (fresh) process; prints its item count and files as JSON."""
    sys.path.insert(0, str(REPO))
    from pipeline.storage import Warehouse
    from pipeline.tasks import export_task, report_task

    wh = Warehouse(root)
    files: list[Path] = []
    if stage == "export-jsonl":
        files = export_task(wh, TASK, "jsonl", out)
    elif stage == "export-mellow":
        files = export_task(wh, TASK, "mellow-json", out)
    elif stage == "report":
        path = Path(out) / "report.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report_task(wh, TASK).markdown(), encoding="utf-8")
        files = [path]
    written = sorted(p for p in Path(out).rglob("*") if p.is_file())
    print(json.dumps({"files": len(written), "returned": len(files)}))


def measure_child(stage: str, root: str, out: str) -> None:
    """Run the stage in one fresh child; print its wall, CPU and peak RSS as JSON.

    This process runs nothing else, so RUSAGE_CHILDREN here is exactly that child's."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", stage, root, out],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"error: stage {stage} failed: {tail}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
    )
    print(json.dumps(result))


def measure(stage: str, root: Path, out: Path) -> dict[str, Any]:
    """Wall, CPU, peak RSS and files of `stage` run in a fresh subprocess."""
    done = subprocess.run(
        [sys.executable, __file__, "--measure", stage, str(root), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit((done.stderr.strip().splitlines() or ["error: no output"])[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fraction", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--work", type=Path, default=None, help="keep corpora here")
    parser.add_argument("--child", nargs=3, metavar=("STAGE", "ROOT", "OUT"), help="internal")
    parser.add_argument("--measure", nargs=3, metavar=("STAGE", "ROOT", "OUT"), help="internal")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.measure:
        measure_child(*args.measure)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="forge-scale-"))
    results: list[dict[str, Any]] = []
    for fraction in sorted(args.fraction):
        items = max(1, round(FULL_ITEMS * fraction))
        root = work / f"items-{items}"
        if not (root / "data" / "item_records").exists():
            start = time.perf_counter()
            synthetic_items(root, items)
            print(f"corpus {items} items written in {time.perf_counter() - start:.1f} s")
        valid = items - len(range(0, items, 50))
        for stage in args.stages:
            row = measure(stage, root, work / f"out-{items}-{stage}")
            row.update(stage=stage, fraction=fraction, items=valid)
            row["items_per_s"] = valid / row["wall_s"]
            row["cpu_per_item_us"] = 1e6 * row["cpu_s"] / valid
            results.append(row)
            print(
                f"{stage:14} {fraction:>6.1%} {valid:>9} items  wall {row['wall_s']:7.1f} s  "
                f"cpu {row['cpu_s']:7.1f} s  peak RSS {row['peak_rss_mb']:7.0f} MB  "
                f"files {row['files']:3d}  {row['items_per_s']:9.0f} items/s  "
                f"{row['cpu_per_item_us']:6.1f} us cpu/item"
            )
    worst = 0.0
    for stage in args.stages:
        runs = sorted((r for r in results if r["stage"] == stage), key=lambda r: r["items"])
        if len(runs) >= 2:
            ratio = runs[-1]["cpu_per_item_us"] / runs[0]["cpu_per_item_us"]
            worst = max(worst, ratio)
            print(
                f"{stage}: per-item CPU cost ratio {runs[-1]['fraction']:.1%}/"
                f"{runs[0]['fraction']:.1%} = {ratio:.2f}"
            )
    peak = max(r["peak_rss_mb"] for r in results)
    print(f"scale: peak RSS {peak:.0f} MB, per-item cost ratio {worst:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()
