"""Ingest throughput and memory on a synthetic LAION-Audio-630K-sized metadata set.

Builds N (default 633,000) Freesound-style JSON records packed as webdataset tar shards
of 512 (metadata only: the audio members would dominate disk, not parsing), then measures
in separate worker processes, so each peak RSS is its own:

  forge      pipeline.ingest.ingest_source: stream shards -> validate -> Parquet partitions
  baseline   the practical limit: a bare tarfile stream + json.loads of the same members

Prints rows/s, peak RSS and the ratio forge/baseline.  Usage: python bench/ingest.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import resource
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

SHARD_SIZE = 512
WORDS = [
    "dog",
    "cat",
    "rain",
    "wind",
    "engine",
    "bird",
    "piano",
    "violin",
    "door",
    "bell",
    "water",
    "crowd",
    "train",
    "car",
    "kettle",
]


def build_shards(folder: Path, rows: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for shard_index in range(0, rows, SHARD_SIZE):
        with tarfile.open(folder / f"{shard_index // SHARD_SIZE:06d}.tar", "w") as tar:
            for clip in range(shard_index, min(rows, shard_index + SHARD_SIZE)):
                words = rng.sample(WORDS, 3)
                payload = json.dumps(
                    {
                        "text": [f"A {words[0]} and a {words[1]} near a {words[2]}."],
                        "tag": words,
                        "original_data": {
                            "title": f"{words[0]} recording {clip}",
                            "description": "Recorded outdoors with a handheld recorder. " * 3,
                            "license": "http://creativecommons.org/licenses/by/3.0/",
                            "username": f"user{clip % 997}",
                            "download_url": f"https://freesound.org/s/{clip}/download/",
                            "id": clip,
                        },
                    }
                ).encode()
                info = tarfile.TarInfo(f"{clip}.json")
                info.size = len(payload)
                tar.addfile(info, BytesIO(payload))
                written += 1
    return written


def run_forge(shards: str, warehouse: str, queue: mp.Queue) -> None:
    from pipeline.ingest import ingest_source
    from pipeline.storage import Warehouse

    start = time.perf_counter()
    summary = ingest_source(Warehouse(warehouse), "laion630k", Path(shards), "bench")
    elapsed = time.perf_counter() - start
    queue.put((summary.clips, elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def run_baseline(shards: str, queue: mp.Queue) -> None:
    start = time.perf_counter()
    count = 0
    for shard in sorted(Path(shards).glob("*.tar")):
        with tarfile.open(shard, mode="r|*") as stream:
            for member in stream:
                handle = stream.extractfile(member)
                if handle is not None:
                    json.loads(handle.read())
                    count += 1
    elapsed = time.perf_counter() - start
    queue.put((count, elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(target, *args) -> tuple[int, float, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=633_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "shards"
        t0 = time.perf_counter()
        build_shards(shards, args.rows)
        print(
            f"built {args.rows:,} records in {len(list(shards.glob('*.tar'))):,} shards "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        base_rows, base_s, base_rss = measure(run_baseline, str(shards))
        ours_rows, ours_s, ours_rss = measure(run_forge, str(shards), str(Path(tmp) / "wh"))
        assert base_rows == ours_rows == args.rows, (base_rows, ours_rows)
        print(f"{'':10} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'peak RSS MiB':>13}")
        print(
            f"{'baseline':10} {base_rows:>9,} {base_s:>8.1f} {base_rows / base_s:>9,.0f} {base_rss:>13,.0f}"
        )
        print(
            f"{'forge':10} {ours_rows:>9,} {ours_s:>8.1f} {ours_rows / ours_s:>9,.0f} {ours_rss:>13,.0f}"
        )
        print(f"ratio forge/baseline throughput: {base_s / ours_s:.2f}")
        change_detection(shards, Path(tmp) / "wh")


def change_detection(shards: Path, warehouse: Path) -> None:
    """What a cached ingest rerun spends deciding that nothing changed: the input
    fingerprint of the cache key, against reading every input file whole (the old key)."""
    from flows.stages.cache import files_fingerprint, inputs_fingerprint
    from pipeline.storage import Warehouse

    wh = Warehouse(warehouse)
    t0 = time.perf_counter()
    files_fingerprint([shards])
    whole = time.perf_counter() - t0
    t0 = time.perf_counter()
    inputs_fingerprint([shards], wh)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    inputs_fingerprint([shards], wh)
    again = time.perf_counter() - t0
    print(
        f"change detection: read every file whole {whole:.2f} s; stat + metadata hashes "
        f"{first:.2f} s first, {again:.2f} s unchanged rerun ({whole / again:.0f}x less)"
    )


if __name__ == "__main__":
    main()
