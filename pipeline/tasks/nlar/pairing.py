"""NLAR clip pairs: which two clips of a split are asked about together.

The rule: pairs of clips in the same split, those sharing more annotated events first
(their questions compare something), ties broken by a seeded hash, at most
`MAX_PAIRS_PER_SPLIT` per split. Test pairs are made of test clips only, because pairs are
formed inside one split (and `pair_split` refuses any pair across splits).

Ranking every pair of a split is quadratic (1,174 clips: 35 s), so a split of more than
`EXACT_PAIRING_MAX_CLIPS` clips ranks a bounded candidate set instead (documented, seeded,
same guarantees):

* blocking by shared events: in each event's list of clips (seeded order), every clip is
  paired with its next `NEIGHBOURS` clips, so pairs that share an event are candidates;
* a seeded ring over the whole split (each clip with its next `NEIGHBOURS`) supplies
  pairs sharing nothing, for splits where few clips share events.

Candidates are ranked as in the exact path, with a cheaper seeded hash (blake2b) for the
ties. Work is O(clips x events per clip x NEIGHBOURS). Splits up to the limit (every
sample split) are ranked exactly, so small datasets are unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pipeline.tasks.common.base import TaskContext, stable_hash

MAX_PAIRS_PER_SPLIT = 200
EXACT_PAIRING_MAX_CLIPS = 200
NEIGHBOURS = 4


def select_pairs(
    ctx: TaskContext,
    clips: list[dict[str, Any]],
    annotations: Mapping[str, Mapping[str, Any]],
) -> list[tuple[str, str]]:
    """Unordered pairs (first id < second id) of clips in the same split, capped per split."""
    by_split: dict[str, list[str]] = {}
    for clip in clips:
        by_split.setdefault(ctx.splits.clip_split(clip["clip_id"]), []).append(clip["clip_id"])
    chosen: list[tuple[str, str]] = []
    for _split, clip_ids in sorted(by_split.items()):
        if len(clip_ids) <= EXACT_PAIRING_MAX_CLIPS:
            chosen += _exact_pairs(ctx, sorted(clip_ids), annotations)
        else:
            chosen += _blocked_pairs(ctx.seed, clip_ids, annotations)
    return chosen


def _exact_pairs(
    ctx: TaskContext, ordered: list[str], annotations: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, str]]:
    candidates = [
        (a, b)
        for i, a in enumerate(ordered)
        for b in ordered[i + 1 :]
        if ctx.splits.pair_split(a, b) is not None
    ]
    candidates.sort(
        key=lambda pair: (
            -len(set(annotations[pair[0]]) & set(annotations[pair[1]])),
            stable_hash(pair, ctx.seed),
        )
    )
    return sorted(candidates[:MAX_PAIRS_PER_SPLIT])


def _seeded(seed: int, *parts: str) -> bytes:
    text = "\x1f".join((str(seed), *parts))
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def _blocked_pairs(
    seed: int, clip_ids: list[str], annotations: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """The candidates of the module docstring, ranked; all clips are of one split."""
    order = sorted(clip_ids, key=lambda clip_id: _seeded(seed, "order", clip_id))
    events = {clip_id: frozenset(annotations.get(clip_id, ())) for clip_id in order}
    lists: dict[str, list[str]] = {}
    for clip_id in order:
        for event in events[clip_id]:
            lists.setdefault(event, []).append(clip_id)
    candidates: set[tuple[str, str]] = set()
    for members in [*lists.values(), order]:
        count = len(members)
        for index, first in enumerate(members):
            for step in range(1, min(NEIGHBOURS, count - 1) + 1):
                second = members[(index + step) % count]
                candidates.add((first, second) if first < second else (second, first))
    ranked = sorted(
        candidates,
        key=lambda pair: (-len(events[pair[0]] & events[pair[1]]), _seeded(seed, *pair)),
    )
    return sorted(ranked[:MAX_PAIRS_PER_SPLIT])
