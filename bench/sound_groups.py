"""Sound grouping at full size: is union-find over metadata identities near-linear?

Synthetic clip rows shaped like the real corpora (LAION Freesound ids, Clotho sound ids
and file names, Clotho-AQA file names, AudioCaps YouTube segments; about 10 % of the
sounds appear in two corpora), at 10k → 100k → 633k clips, plus the same number of
random 256-bit fingerprints with 1 % re-encoded copies (the LSH path). Prints seconds
and the per-clip cost relative to the smallest size; near-linear keeps it near 1.

    .venv/bin/python bench/sound_groups.py [--sizes 10000 100000 633526]
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import numpy as np

from pipeline.tasks.common.sound_groups import group_clips


def synthetic_clips(n: int, seed: int = 0) -> tuple[list[dict], dict[str, str]]:
    rng = np.random.default_rng(seed)
    clips: list[dict] = []
    fingerprints: dict[str, str] = {}
    for i in range(n):
        shared = rng.random() < 0.1  # the sound also sits in another corpus
        sound = int(rng.integers(0, n // 2)) if shared else n + i
        kind = i % 4
        if kind == 0:
            row = {"source": "laion630k", "extra": {"freesound_id": str(sound)}}
        elif kind == 1:
            row = {"source": "clotho", "extra": {"sound_id": str(sound)}}
            row["audio_path"] = f"development/{sound}.wav"
        elif kind == 2:
            row = {"source": "clotho-aqa", "audio_path": f"{sound}.wav"}
        else:
            row = {
                "source": "audiocaps",
                "extra": {"youtube_id": f"{sound:011d}", "start_time": 30},
            }
        clip_id = f"{row['source']}:{i}"
        clips.append(
            {
                "clip_id": clip_id,
                "source": row["source"],
                "split": "train",
                "audio_path": row.get("audio_path", f"{i}.flac"),
                "url": None,
                "extra": json.dumps(row.get("extra", {})),
            }
        )
        fingerprints[clip_id] = (
            np.packbits(rng.integers(0, 2, 256).astype(np.uint8)).tobytes().hex()
        )
    ids = list(fingerprints)
    for index in rng.choice(n, n // 100, replace=False):  # 1 % re-encoded copies: 20 bits off
        value = int(fingerprints[ids[index]], 16)
        for bit in rng.choice(256, 20, replace=False):
            value ^= 1 << int(bit)
        fingerprints[f"copy:{index}"] = f"{value:064x}"
        clips.append({"clip_id": f"copy:{index}", "source": "copy", "split": None})
    return clips, fingerprints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 633_526])
    args = parser.parse_args()
    base = None
    print(
        f"{'clips':>8} {'metadata s':>11} {'+fingerprints s':>16} {'per-clip µs':>12} {'ratio':>6}"
    )
    for n in args.sizes:
        clips, fingerprints = synthetic_clips(n)
        # the input rows are built outside the timing; freezing them keeps the cyclic
        # garbage collector from re-walking them on every collection while grouping
        gc.collect()
        gc.freeze()
        start = time.perf_counter()
        group_clips(clips)
        metadata_s = time.perf_counter() - start
        start = time.perf_counter()
        groups = group_clips(clips, fingerprints=fingerprints)
        total_s = time.perf_counter() - start
        per_clip = total_s / len(clips) * 1e6
        base = base or per_clip
        copies = sum(1 for c in groups.linked_by.values() if "fingerprint" in c) // 2
        print(
            f"{len(clips):>8} {metadata_s:>11.2f} {total_s:>16.2f} {per_clip:>12.1f} "
            f"{per_clip / base:>6.2f}  (fingerprint pairs found {copies} of {n // 100})"
        )
        gc.unfreeze()


if __name__ == "__main__":
    main()
