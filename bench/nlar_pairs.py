"""NLAR pair selection time: blocked candidates vs ranking every pair of a split.

Synthetic Clotho-AQA-shaped splits (60 event names, 4 annotated events per clip). The
exact ranking (every pair, the path for splits up to `EXACT_PAIRING_MAX_CLIPS`) is run on
1,174 clips per split as the baseline; the blocked path at 1,000 and 10,000 clips per
split. Prints seconds, per-clip cost and its ratio, and the mean shared events of the
chosen pairs (quality: random pairs share ~0.27).

    .venv/bin/python bench/nlar_pairs.py [--sizes 1000 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "scale"))

from test_scale_nlar_pairs import Context, corpus

from pipeline.tasks.common.splits import SplitAssigner, SplitPolicy
from pipeline.tasks.nlar import pairing


def timed(clips_per_split: int, exact: bool) -> tuple[float, float]:
    clips, annotations = corpus(clips_per_split)
    context = Context(SplitAssigner(clips, SplitPolicy()), seed=0)
    limit = pairing.EXACT_PAIRING_MAX_CLIPS
    pairing.EXACT_PAIRING_MAX_CLIPS = 10**9 if exact else 0
    try:
        started = time.perf_counter()
        pairs = pairing.select_pairs(context, clips, annotations)
        seconds = time.perf_counter() - started
    finally:
        pairing.EXACT_PAIRING_MAX_CLIPS = limit
    shared = sum(len(set(annotations[a]) & set(annotations[b])) for a, b in pairs) / len(pairs)
    return seconds, shared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    args = parser.parse_args()
    base_s, base_shared = timed(1_174, exact=True)
    base = base_s / (3 * 1_174)
    print(
        f"{'path':8} {'clips/split':>11} {'seconds':>8} {'µs/clip':>8} {'ratio':>6} {'shared':>6}"
    )
    print(
        f"{'exact':8} {1_174:>11,} {base_s:>8.2f} {base * 1e6:>8.0f} {1.0:>6.2f} {base_shared:>6.2f}"
    )
    for size in args.sizes:
        seconds, shared = timed(size, exact=False)
        per = seconds / (3 * size)
        print(
            f"{'blocked':8} {size:>11,} {seconds:>8.2f} {per * 1e6:>8.0f} "
            f"{per / base:>6.3f} {shared:>6.2f}"
        )


if __name__ == "__main__":
    main()
