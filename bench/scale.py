"""Scale of every stage from synthetic corpora in the real formats: wall, CPU, peak RSS.

Corpora (bench/synthetic_corpora.py): AudioCaps, Clotho, Clotho-AQA and LAION-Audio-630K
written in the layouts and encodings their loaders read, at `--fraction` of the published
sizes (AudioCaps 57,188 caption rows / 51,308 clips, Clotho 5,929 clips x 5 captions,
Clotho-AQA 1,991 clips x 6 questions x 3 answers, LAION 633,526 clips, here in 1,238
metadata-only shards of 512), captions from a seeded vocabulary so that clips differ. LAION is capped at
`--laion-fraction` (default 1): a 3x size grows the ReasonAQA corpora only. Each corpus is
built once per size under `--work/corpora` and reused when present.

Stages, each run in a fresh subprocess (`--child`) started by a measuring process
(`--measure`) that runs nothing else and reads `resource.getrusage(RUSAGE_CHILDREN)` after
it ends: `ru_maxrss` (the child's peak RSS, KiB on Linux) and user+system CPU.

  ingest                         the four corpora into one fresh warehouse, in the order
                                 AudioCaps, Clotho, Clotho-AQA, LAION (also per corpus,
                                 `ingest <source>`: wall, CPU and the child's peak RSS so
                                 far); items = clips + rejects
  generate-reasonaqa             generate_task, offline backend, on AudioCaps + Clotho +
  generate-nlar                  Clotho-AQA (NLAR reads Clotho-AQA only); items = records
                                 written, valid and rejected. NLAR keeps at most
                                 MAX_PAIRS_PER_SPLIT pairs per split, so its items level
                                 off; its cost ratio is per Clotho-AQA clip instead
  generate-auditorybench-animal  on LAION; auditorybench-pitch reads measured pitch, so
  generate-auditorybench-pitch   the LAION warehouse gets one seeded `clip_pitch` row per
                                 clip, as pipeline.audio.pitch writes them (status ok or
                                 too_little_voiced, f0 log-uniform in 60-4,000 Hz): the
                                 audio stages are not measured here
  export-jsonl                   export_task(..., 'jsonl') + card  } on the items of
  export-mellow                  export_task(..., 'mellow-json')   } generate-reasonaqa;
  report                         report_task(...).markdown()       } items = valid items

Every generation stage starts from a copy of the ingested warehouse with no `llm_calls`
cache, so it pays for every call it makes (the pitch task's categorise calls included).
A LAION-only stage is not measured again at a size whose LAION size was already measured.
Setup (corpora, ingested warehouses) happens outside the measurements, in `--work`
(default: a new temporary folder). Ingest checks that every corpus gives the clips it was
built with, so a format drift fails the bench instead of shrinking it.

Usage: python bench/scale.py [--fraction F ...] [--stages S ...] [--work DIR]
                             [--laion-fraction F]
Prints per size and stage: wall, CPU, peak RSS, files written, items/s and CPU per item;
then per stage the per-item CPU cost ratio of the largest size to the smallest (the
whole ingest only across sizes whose LAION was not capped; each corpus on its own; a
ratio whose smaller run took under MIN_COMPARABLE_CPU_S of CPU is printed but is timing
noise and stays out of the summary), and ends with exactly one line
`scale: peak RSS <max MB> MB, per-item cost ratio <worst>`.

`synthetic_items` (ReasonAQA-shaped items written straight into `item_records`) stays
for tests/scale, which measures export memory on it without running generation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))

from scale_setup import check_clips  # noqa: E402
from synthetic_corpora import (  # noqa: E402
    COMPLETE_MARKER,
    CorpusSizes,
    corpus_folder,
    corpus_sizes,
    ensure_corpus,
)

# A ratio whose smaller run took less CPU than this is printed but left out of the summary
# line: a 0.05 s ingest of 198 Clotho-AQA clips measured 0.049-0.098 s in repeated runs,
# so its ratio says nothing about scaling (the whole ingest's ratio covers that corpus).
MIN_COMPARABLE_CPU_S = 1.0
FULL_ITEMS = 465_862  # an offline ReasonAQA run from full AudioCaps + Clotho
WRITE_CHUNK = 20_000
TASK = "reasonaqa"
RUN_ID = "bench"
CAPTION_SOURCES = ("audiocaps", "clotho", "clotho-aqa")
ALL_SOURCES = (*CAPTION_SOURCES, "laion630k")
GENERATE = {
    "generate-reasonaqa": "reasonaqa",
    "generate-nlar": "nlar",
    "generate-auditorybench-animal": "auditorybench-animal",
    "generate-auditorybench-pitch": "auditorybench-pitch",
}
LAION_TASKS = ("auditorybench-animal", "auditorybench-pitch")
EXPORTS = ("export-jsonl", "export-mellow", "report")
STAGES = ("ingest", *GENERATE, *EXPORTS)
SUBTASKS = ("mcq", "detail", "entailment", "caption", "difference-short", "binary")
DONE = COMPLETE_MARKER  # written last: the folder is complete


def split_of(number: int) -> str:
    return "train" if number % 10 < 8 else ("dev", "test")[number % 10 - 8]


def synthetic_items(warehouse_root: Path, items: int, seed: int = 0) -> None:
    """Write `items` valid current ReasonAQA-shaped items (and their clips) in chunks."""
    import random

    from pipeline.storage import Warehouse
    from pipeline.storage.warehouse import utc_now

    wh = Warehouse(warehouse_root)
    rng = random.Random(seed)
    now = utc_now()
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
                        "run_id": RUN_ID,
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
                subtask = SUBTASKS[n % len(SUBTASKS)]
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
                        "clip_ids": [f"{source}:clip{clip:07d}.wav"],
                        "input": f"Question {n}: what can be heard in recording {clip}?",
                        "answer": f"{'abcd'[rng.randrange(4)]}) option {n % 7}",
                        "options": [f"{x}) option {n % 7}" for x in "abcd"],
                        "facts": json.dumps(facts),
                        "generation_version": "scale-bench",
                        "prompt_name": f"reasonaqa/{subtask}",
                        "prompt_version": "v1",
                        "model": "offline-rules",
                        "validation_status": "valid" if n % 50 else "rejected",
                        "validation_reasons": [] if n % 50 else ["duplicate_exact"],
                        "run_id": RUN_ID,
                        "created_at": now,
                    }
                )
            writer.write(rows)


# ---- the measured child ---------------------------------------------------------------


def ingest_all(root: str, inputs: dict[str, str]) -> dict[str, Any]:
    """Ingest each corpus in turn; per corpus: rows, wall, CPU, running peak RSS."""
    from pipeline.ingest import ingest_source
    from pipeline.storage import Warehouse

    wh = Warehouse(root)
    wh.ensure_catalog()  # once for the warehouse, not charged to the first corpus
    per_source = []
    for source, path in inputs.items():
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        summary = ingest_source(wh, source, Path(path), RUN_ID)
        after = resource.getrusage(resource.RUSAGE_SELF)
        per_source.append(
            {
                "source": source,
                "clips": summary.clips,
                "items": summary.clips + summary.rejects,
                "wall_s": time.perf_counter() - start,
                "cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                "peak_rss_mb": after.ru_maxrss / 1024,
            }
        )
    return {
        "files": len(wh.partitions("clips")) + len(wh.partitions("rejects")),
        "items": sum(s["items"] for s in per_source),
        "per_source": per_source,
    }


def child(stage: str, root: str, out: str, inputs: dict[str, str]) -> None:
    """One stage in this (fresh) process; prints its counts as JSON on the last line."""
    from pipeline.storage import Warehouse
    from pipeline.tasks import export_task, generate_task, report_task

    wh = Warehouse(root)
    result: dict[str, Any]
    if stage == "ingest":
        result = ingest_all(root, inputs)
    elif stage in GENERATE:
        from pipeline.llm import LLMConfig

        summary = generate_task(wh, GENERATE[stage], LLMConfig.from_env(backend="offline"), RUN_ID)
        result = {
            "files": len(summary.partitions),
            "items": summary.items,
            "valid": summary.valid,
            "rejected_by_reason": summary.rejected_by_reason,
        }
    else:
        if stage == "export-jsonl":
            export_task(wh, TASK, "jsonl", out)
        elif stage == "export-mellow":
            export_task(wh, TASK, "mellow-json", out)
        elif stage == "report":
            path = Path(out) / "report.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(report_task(wh, TASK).markdown(), encoding="utf-8")
        result = {}
    result.setdefault("files", sum(1 for p in Path(out).rglob("*") if p.is_file()))
    print(json.dumps(result))


def measure_child(stage: str, root: str, out: str, inputs: str) -> None:
    """Run the stage in one fresh child; print its wall, CPU and peak RSS as JSON.

    This process runs nothing else, so RUSAGE_CHILDREN here is exactly that child's."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", stage, root, out, "--inputs", inputs],
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


def measure(
    stage: str, root: Path, out: Path, inputs: dict[str, str] | None = None
) -> dict[str, Any]:
    """Wall, CPU, peak RSS and counts of `stage` run in a fresh subprocess."""
    command = [sys.executable, __file__, "--measure", stage, str(root), str(out)]
    done = subprocess.run(
        [*command, "--inputs", json.dumps(inputs or {})],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit((done.stderr.strip().splitlines() or ["error: no output"])[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- setup outside the measurements ---------------------------------------------------


class SizeSetup:
    """Corpora and ingested warehouses of one size, built on first need and kept in `work`.

    Base warehouses (`work/warehouses/<sources and clip counts>`) are shared by the sizes
    that have the same corpora (LAION at 1x and 3x). When the ingest stage ran at this
    size they are assembled from its partitions (`clips/source=<s>/...`,
    `rejects/stage=ingest/source=<s>/...`, the layout pipeline.ingest writes) instead of
    ingesting again."""

    def __init__(self, work: Path, fraction: float, sizes: CorpusSizes) -> None:
        self.work, self.fraction, self.sizes = work, fraction, sizes
        self.dir = work / f"x{fraction:g}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ingest_root = self.dir / "ingest"
        self.ingest_measured = False

    def corpus(self, source: str) -> Path:
        start = time.perf_counter()
        folder = corpus_folder(self.work / "corpora", source, self.sizes)
        built = not (folder / COMPLETE_MARKER).is_file()
        folder = ensure_corpus(self.work / "corpora", source, self.sizes)
        if built:
            print(f"setup: corpus {folder.name} in {time.perf_counter() - start:.1f} s", flush=True)
        return folder

    def base(self, sources: tuple[str, ...]) -> Path:
        """A warehouse with `sources` ingested (and LAION's pitch seeded)."""
        from scale_setup import seed_pitch

        from pipeline.ingest import ingest_source
        from pipeline.storage import Warehouse

        name = "-".join(f"{source}{self.sizes.clips(source)}" for source in sources)
        root = self.work / "warehouses" / name
        if (root / DONE).is_file():
            return root
        shutil.rmtree(root, ignore_errors=True)
        start = time.perf_counter()
        for source in sources:
            if self.ingest_measured:
                for table, prefix in (("clips", ""), ("rejects", "stage=ingest/")):
                    folder = Path("data") / table / f"{prefix}source={source}"
                    if (self.ingest_root / folder).is_dir():
                        shutil.copytree(self.ingest_root / folder, root / folder)
            else:
                summary = ingest_source(Warehouse(root), source, self.corpus(source), RUN_ID)
                check_clips(source, summary.clips, self.sizes.clips(source))
        if "laion630k" in sources:
            seed_pitch(Warehouse(root))
        (root / DONE).write_text(json.dumps({"sources": list(sources)}))
        print(f"setup: warehouse {name} in {time.perf_counter() - start:.1f} s", flush=True)
        return root

    def fresh_copy(self, sources: tuple[str, ...], root: Path) -> Path:
        """A base warehouse's data in a new root: the stage starts from the ingested state."""
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(self.base(sources) / "data", root / "data")
        return root

    def run(self, stage: str) -> dict[str, Any]:
        out = self.dir / f"out-{stage}"
        shutil.rmtree(out, ignore_errors=True)
        if stage == "ingest":
            shutil.rmtree(self.ingest_root, ignore_errors=True)
            inputs = {source: str(self.corpus(source)) for source in ALL_SOURCES}
            row = measure(stage, self.ingest_root, out, inputs)
            self.ingest_measured = True
            return row
        if stage in GENERATE:
            task = GENERATE[stage]
            sources = ("laion630k",) if task in LAION_TASKS else CAPTION_SOURCES
            root = self.fresh_copy(sources, self.dir / stage)
            row = measure(stage, root, out)
            (root / DONE).write_text(json.dumps(row))
            return row
        root = self.dir / "generate-reasonaqa"
        if not (root / DONE).is_file():  # exports need generated items: make them, unreported
            self.fresh_copy(CAPTION_SOURCES, root)
            (root / DONE).write_text(json.dumps(measure("generate-reasonaqa", root, out)))
            print("setup: generated reasonaqa items for the exports", flush=True)
        row = measure(stage, root, out)
        row["items"] = json.loads((root / DONE).read_text())["valid"]
        return row


def report_row(row: dict[str, Any]) -> None:
    row["items_per_s"] = row["items"] / row["wall_s"] if row["wall_s"] else 0.0
    row["cpu_per_item_us"] = 1e6 * row["cpu_s"] / max(1, row["items"])
    print(
        f"{row['stage']:30} x{row['fraction']:<5g} {row['items']:>9} items  "
        f"wall {row['wall_s']:7.1f} s  cpu {row['cpu_s']:7.1f} s  "
        f"peak RSS {row['peak_rss_mb']:6.0f} MB  files {row['files']:4d}  "
        f"{row['items_per_s']:8.0f} items/s  {row['cpu_per_item_us']:8.1f} us cpu/item",
        flush=True,
    )


def cost_ratios(results: list[dict[str, Any]]) -> float | None:
    """Print per stage CPU per unit at its largest size / at its smallest; the worst.

    The unit is the item, except where a stage's items stop growing with the corpus
    (`units` names another count, e.g. NLAR's input clips)."""
    worst: float | None = None
    for stage in dict.fromkeys(r["stage"] for r in results):
        runs = sorted(
            (r for r in results if r["stage"] == stage and r.get("comparable", True)),
            key=lambda r: r.get("units", r["items"]),
        )
        if len(runs) < 2 or runs[-1].get("units", runs[-1]["items"]) == runs[0].get(
            "units", runs[0]["items"]
        ):
            continue
        large, small = runs[-1], runs[0]
        unit = large.get("unit", "items")
        ratio = (large["cpu_s"] / large.get("units", large["items"])) / (
            small["cpu_s"] / small.get("units", small["items"])
        )
        comparable = small["cpu_s"] >= MIN_COMPARABLE_CPU_S
        if comparable:
            worst = ratio if worst is None else max(worst, ratio)
        print(
            f"{stage}: per-{unit.rstrip('s')} CPU cost ratio x{large['fraction']:g} "
            f"({large.get('units', large['items'])} {unit}) / x{small['fraction']:g} "
            f"({small.get('units', small['items'])} {unit}) = {ratio:.2f}"
            + (
                ""
                if comparable
                else f" (x{small['fraction']:g} under {MIN_COMPARABLE_CPU_S:g} s CPU: "
                "within timing noise, left out of the summary)"
            )
        )
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fraction", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--work", type=Path, default=None, help="keep corpora here")
    parser.add_argument("--laion-fraction", type=float, default=1.0, help="cap on LAION's fraction")
    parser.add_argument("--child", nargs=3, metavar=("STAGE", "ROOT", "OUT"), help="internal")
    parser.add_argument("--measure", nargs=3, metavar=("STAGE", "ROOT", "OUT"), help="internal")
    parser.add_argument("--inputs", default="{}", help="internal: ingest's {source: path}")
    args = parser.parse_args()
    if args.child:
        child(*args.child, json.loads(args.inputs))
        return
    if args.measure:
        measure_child(*args.measure, args.inputs)
        return
    work = (args.work or Path(tempfile.mkdtemp(prefix="forge-scale-"))).resolve()
    stages = [s for s in STAGES if s in args.stages]
    results: list[dict[str, Any]] = []
    laion_measured: set[int] = set()
    for fraction in sorted(args.fraction):
        sizes = corpus_sizes(fraction, min(fraction, args.laion_fraction))
        setup = SizeSetup(work, fraction, sizes)
        for stage in stages:
            if GENERATE.get(stage) in LAION_TASKS and sizes.laion_clips in laion_measured:
                print(f"{stage:30} x{fraction:<5g} same LAION size as before: not measured again")
                continue
            row = setup.run(stage)
            capped = stage == "ingest" and fraction > args.laion_fraction
            row.update(stage=stage, fraction=fraction, comparable=not capped)
            if stage == "generate-nlar":  # at most MAX_PAIRS_PER_SPLIT pairs: items level off
                row.update(units=sizes.clips("clotho-aqa"), unit="Clotho-AQA clips")
            results.append(row)
            report_row(row)
            for corpus in row.get("per_source", []):
                check_clips(corpus["source"], corpus["clips"], sizes.clips(corpus["source"]))
                sub = {**corpus, "stage": f"ingest {corpus['source']}", "fraction": fraction}
                sub["files"] = 2  # its clips and rejects partitions
                results.append(sub)
                report_row(sub)
        if any(GENERATE.get(stage) in LAION_TASKS for stage in stages):
            laion_measured.add(sizes.laion_clips)
    worst = cost_ratios(results)
    peak = max((r["peak_rss_mb"] for r in results if r["stage"] in STAGES), default=0.0)
    ratio = "n/a (one size)" if worst is None else f"{worst:.2f}"
    print(f"scale: peak RSS {peak:.0f} MB, per-item cost ratio {ratio}")


if __name__ == "__main__":
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    main()
