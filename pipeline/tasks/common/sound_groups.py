"""Sound groups: clips that are the same sound, across every corpus, form one unit.

What counts as the same sound (each rule is a link kind, kept in `linked_by`):

* `freesound_id`: the same Freesound sound id — Clotho's `sound_id`, LAION-630K's
  `freesound_id`, or the id in a Freesound URL (`freesound.org/.../sounds/<id>`, Clotho's
  `sound_link`, LAION's `download_url`). Identity `freesound:<id>`.
* `youtube_segment`: the same YouTube video and start second — AudioCaps' `youtube_id` and
  `start_time` (also read from `watch?v=<id>&t=<start>s` URLs, so AudioSet-derived clips
  of other corpora that carry one link too). Identity `youtube:<id>@<start>`; a clip
  without a start links only to clips of the same video without one (`@?`).
* `clotho_file`: Clotho-AQA reuses Clotho's audio files, so a Clotho or Clotho-AQA clip
  is identified by its file name. Identity `clotho-file:<file name>`.
* `fingerprint`: content fingerprints (pipeline.audio.fingerprint) within
  `fingerprint_max_bits` of each other — re-encodes at another rate, codec or gain.
* `embedding`: CLAP audio embeddings with cosine ≥ `embedding_min_cosine` (default 0.98:
  near-duplicates, not merely similar sounds), from the embedding model that covers the
  most clips. A model whose random clip pairs already have a median cosine ≥
  `EMBEDDING_SPACE_MAX_MEDIAN` cannot tell sounds apart (e.g. an untrained model) and is
  not used.

Links are merged with union-find; a group's name is its smallest clip_id. No all-pairs
comparison: identities are dictionary keys; fingerprints and embeddings are compared only
within locality-sensitive-hashing buckets — 32 tables, each keyed by k seeded random
positions of the 256 fingerprint bits; embeddings: 24 tables of k sign bits of 64 seeded
random hyperplanes. k = max(16, ⌈log2 n⌉ + 1) (`key_bits`), so unrelated clips meet in a
bucket about n · tables / 4 times in all: linear in n. Recall for a re-encode 12 % of
bits apart: 1 − (1 − 0.88ᵏ)³² ≈ 0.99 at k = 16 (n ≤ 32k), 0.90 at k = 21 (n = 633k);
for 5 % apart (most re-encodes measured on the samples) > 0.9999 at either. Embeddings at
cosine 0.98 (a bit agrees with probability 1 − acos(0.98)/π ≈ 0.936) give 0.99 at k = 21.
Candidates are then checked exactly. Buckets holding more than `max_bucket` clips are
skipped (a key that common says nothing), so the work stays bounded by n · tables ·
max_bucket.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from pipeline.storage.warehouse import Warehouse, utc_now

GROUP_TABLE = "sound_group_members"
LINK_KINDS = ("freesound_id", "youtube_segment", "clotho_file", "fingerprint", "embedding")
CLOTHO_AUDIO_SOURCES = ("clotho", "clotho-aqa")
FINGERPRINT_TABLES, FINGERPRINT_MIN_KEY_BITS = 32, 16
EMBEDDING_PLANES, EMBEDDING_TABLES, EMBEDDING_MIN_KEY_BITS = 64, 24, 16
EMBEDDING_SPACE_MAX_MEDIAN = 0.9
_FREESOUND_URL = re.compile(r"freesound\.org/(?:people/[^/]+/)?sounds/(\d+)")
_YOUTUBE_URL = re.compile(r"(?:youtube\.com/watch\?v=|youtu\.be/)([\w-]{11})")
_YOUTUBE_START = re.compile(r"[?&#]t=(\d+(?:\.\d+)?)s?")


class GroupingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fingerprint_max_bits: int = 51  # of 256; see pipeline.audio.fingerprint.MATCH_MAX_BITS
    embedding_min_cosine: float | None = 0.98  # None: never link on embeddings
    max_bucket: int = 64
    seed: int = 0  # of the random hyperplanes; not the split seed


class SoundGroupRecord(BaseModel):
    """One row of `sound_group_members` (warehouse/tables/sound_group_members.sql)."""

    model_config = ConfigDict(extra="forbid")

    sound_group: str
    clip_id: str
    linked_by: str
    identities: list[str]
    group_size: int
    run_id: str
    grouped_at: Any


@dataclass
class SoundGroups:
    group_of: dict[str, str]  # clip_id → sound group (smallest clip_id of the group)
    linked_by: dict[str, set[str]]  # clip_id → link kinds joining it to others
    identities: dict[str, list[str]]
    notes: dict[str, Any] = field(default_factory=dict)

    def members(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = defaultdict(list)
        for clip_id, group in self.group_of.items():
            groups[group].append(clip_id)
        return groups


class _UnionFind:
    def __init__(self, items: Iterable[str]) -> None:
        self.parent = {item: item for item in items}

    def find(self, item: str) -> str:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:  # path compression keeps later finds short
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: str, b: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:  # the smaller id becomes the root: the group's name
            low, high = sorted((root_a, root_b))
            self.parent[high] = low


def _extra(clip: Mapping[str, Any]) -> dict[str, Any]:
    import json

    raw = clip.get("extra")
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:  # a malformed extra gives no identity; the clip stays alone
        return {}
    return value if isinstance(value, dict) else {}


def _start(value: Any) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return "?"


def clip_identities(clip: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(link kind, identity) pairs of one `clips` row, from its metadata only."""
    extra, url = _extra(clip), clip.get("url") or ""
    found: set[tuple[str, str]] = set()
    for key in ("sound_id", "freesound_id"):
        if str(extra.get(key) or "").strip().isdigit():
            found.add(("freesound_id", f"freesound:{int(extra[key])}"))
    if match := _FREESOUND_URL.search(url):
        found.add(("freesound_id", f"freesound:{int(match.group(1))}"))
    youtube_id = extra.get("youtube_id")
    if isinstance(youtube_id, str) and youtube_id:
        found.add(("youtube_segment", f"youtube:{youtube_id}@{_start(extra.get('start_time'))}"))
    elif match := _YOUTUBE_URL.search(url):
        start = _YOUTUBE_START.search(url)
        found.add(
            ("youtube_segment", f"youtube:{match.group(1)}@{_start(start and start.group(1))}")
        )
    if clip.get("source") in CLOTHO_AUDIO_SOURCES and clip.get("audio_path"):
        found.add(("clotho_file", f"clotho-file:{PurePosixPath(clip['audio_path']).name}"))
    return sorted(found)


def key_bits(n_clips: int, minimum: int) -> int:
    """Bits per table key: at least `minimum`, and log2(n) + 1 so that random clips share a
    bucket about n · tables / 4 times in all — linear in n, not quadratic."""
    return min(62, max(minimum, math.ceil(math.log2(max(n_clips, 2))) + 1))


def _codes(bits: np.ndarray, tables: int, bits_per_table: int, seed: int) -> np.ndarray:
    """(n, tables) bucket keys: each table reads `bits_per_table` seeded random bit positions."""
    rng = np.random.default_rng(seed)
    positions = np.stack(
        [rng.choice(bits.shape[1], bits_per_table, replace=False) for _ in range(tables)]
    )
    weights = 1 << np.arange(bits_per_table, dtype=np.int64)
    return (bits[:, positions].astype(np.int64) * weights).sum(axis=2)


def _bucket_pairs(codes: np.ndarray, max_bucket: int) -> np.ndarray:
    """(m, 2) distinct row pairs (a < b) sharing a bucket in any table; over-full buckets
    are skipped. Buckets of two, the common case, are paired without a Python loop."""
    found: list[np.ndarray] = [np.empty((0, 2), dtype=np.int64)]
    for table in range(codes.shape[1]):
        order = np.argsort(codes[:, table], kind="stable")
        ordered = codes[order, table]
        bounds = np.flatnonzero(np.diff(ordered)) + 1
        starts, ends = np.r_[0, bounds], np.r_[bounds, len(ordered)]
        sizes = ends - starts
        twos = starts[sizes == 2]
        found.append(np.stack([order[twos], order[twos + 1]], axis=1))
        larger = (sizes > 2) & (sizes <= max_bucket)
        for start, end in zip(starts[larger], ends[larger], strict=True):
            members = order[start:end]
            first, second = np.triu_indices(len(members), k=1)
            found.append(np.stack([members[first], members[second]], axis=1))
    pairs = np.sort(np.concatenate(found), axis=1)
    return np.unique(pairs, axis=0)


def fingerprint_pairs(
    fingerprints: Mapping[str, str], max_bits: int, max_bucket: int, seed: int = 0
) -> list[tuple[str, str]]:
    """Pairs of clips whose fingerprints (hex) differ in at most `max_bits` bits."""
    if len(fingerprints) < 2:
        return []
    ids = sorted(fingerprints)
    packed = np.stack([np.frombuffer(bytes.fromhex(fingerprints[c]), np.uint8) for c in ids])
    codes = _codes(
        np.unpackbits(packed, axis=1).astype(bool),
        FINGERPRINT_TABLES,
        key_bits(len(ids), FINGERPRINT_MIN_KEY_BITS),
        seed,
    )
    pairs = _bucket_pairs(codes, max_bucket)
    words = packed.view(np.uint64)
    distance = np.bitwise_count(words[pairs[:, 0]] ^ words[pairs[:, 1]]).sum(axis=1)
    return sorted((ids[a], ids[b]) for a, b in pairs[distance <= max_bits].tolist())


def _unit_rows(embeddings: Mapping[str, np.ndarray], ids: list[str]) -> np.ndarray:
    matrix = np.stack([np.asarray(embeddings[c], dtype=np.float32) for c in ids])
    return matrix / (np.linalg.norm(matrix, axis=1, keepdims=True) + 1e-12)


def embedding_pairs(
    embeddings: Mapping[str, np.ndarray], min_cosine: float, max_bucket: int, seed: int = 0
) -> list[tuple[str, str]]:
    """Pairs of clips whose embeddings have cosine ≥ `min_cosine` (random-hyperplane LSH)."""
    if len(embeddings) < 2:
        return []
    ids = sorted(embeddings)
    matrix = _unit_rows(embeddings, ids)
    rng = np.random.default_rng(seed)
    planes = rng.standard_normal((matrix.shape[1], EMBEDDING_PLANES)).astype(np.float32)
    signs = matrix @ planes > 0
    codes = _codes(signs, EMBEDDING_TABLES, key_bits(len(ids), EMBEDDING_MIN_KEY_BITS), seed)
    pairs = _bucket_pairs(codes, max_bucket)
    cosine = np.einsum("ij,ij->i", matrix[pairs[:, 0]], matrix[pairs[:, 1]])
    return sorted((ids[a], ids[b]) for a, b in pairs[cosine >= min_cosine].tolist())


def embedding_space_median(embeddings: Mapping[str, np.ndarray], seed: int = 0) -> float:
    """Median cosine of up to 2,000 seeded random clip pairs: how alike unrelated clips look."""
    ids = sorted(embeddings)
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(ids), 2000), rng.integers(0, len(ids), 2000)
    keep = a != b
    if not keep.any():
        return 0.0
    vectors = _unit_rows(embeddings, ids)
    return float(np.median((vectors[a[keep]] * vectors[b[keep]]).sum(axis=1)))


def group_clips(
    clips: Iterable[Mapping[str, Any]],
    fingerprints: Mapping[str, str] | None = None,
    embeddings: Mapping[str, np.ndarray] | None = None,
    settings: GroupingSettings = GroupingSettings(),
) -> SoundGroups:
    """Union-find over every link kind; clips with no link are groups of one."""
    clip_rows = list(clips)
    union = _UnionFind(c["clip_id"] for c in clip_rows)
    linked_by: dict[str, set[str]] = defaultdict(set)
    identities: dict[str, list[str]] = {}
    first_holder: dict[str, str] = {}
    notes: dict[str, Any] = {}

    def link(a: str, b: str, kind: str) -> None:
        union.union(a, b)
        linked_by[a].add(kind)
        linked_by[b].add(kind)

    for clip in clip_rows:
        found = clip_identities(clip)
        identities[clip["clip_id"]] = [identity for _, identity in found]
        for kind, identity in found:
            holder = first_holder.setdefault(identity, clip["clip_id"])
            if holder != clip["clip_id"]:
                link(holder, clip["clip_id"], kind)
    known = union.parent
    if fingerprints:
        usable = {c: bits for c, bits in fingerprints.items() if c in known}
        found_pairs = fingerprint_pairs(usable, settings.fingerprint_max_bits, settings.max_bucket)
        for a, b in found_pairs:
            link(a, b, "fingerprint")
        notes["fingerprint_pairs"] = len(found_pairs)
    if embeddings and settings.embedding_min_cosine is not None:
        usable_vectors = {c: v for c, v in embeddings.items() if c in known}
        median = embedding_space_median(usable_vectors, settings.seed) if usable_vectors else 0.0
        notes["embedding_space_median_cosine"] = round(median, 4)
        if median < EMBEDDING_SPACE_MAX_MEDIAN:
            found_pairs = embedding_pairs(
                usable_vectors, settings.embedding_min_cosine, settings.max_bucket, settings.seed
            )
            for a, b in found_pairs:
                link(a, b, "embedding")
            notes["embedding_pairs"] = len(found_pairs)
        else:
            notes["embedding_links"] = "skipped: random clip pairs are already alike"
    group_of = {clip_id: union.find(clip_id) for clip_id in known}
    return SoundGroups(group_of, dict(linked_by), identities, notes)


def load_embeddings(warehouse: Warehouse) -> dict[str, np.ndarray]:
    """Embeddings of the (backend, checkpoint, crop policy) that covers the most clips."""
    best = warehouse.rows(
        "SELECT backend, checkpoint, crop_policy, count(DISTINCT clip_id) AS n "
        "FROM clip_embeddings GROUP BY ALL ORDER BY n DESC, checkpoint LIMIT 1"
    )
    if not best:
        return {}
    rows = warehouse.rows(
        "SELECT clip_id, embedding FROM clip_embeddings "
        "WHERE backend = ? AND checkpoint = ? AND crop_policy = ? "
        "QUALIFY row_number() OVER (PARTITION BY clip_id ORDER BY computed_at DESC) = 1",
        [best[0]["backend"], best[0]["checkpoint"], best[0]["crop_policy"]],
    )
    return {r["clip_id"]: np.asarray(r["embedding"], dtype=np.float32) for r in rows}


GROUPING_CLIP_COLUMNS = "clip_id, source, split, source_split, audio_path, url, extra"


def compute_sound_groups(
    warehouse: Warehouse, settings: GroupingSettings = GroupingSettings()
) -> tuple[list[dict[str, Any]], SoundGroups]:
    """(clip rows, their groups) from `clips`, `clip_fingerprints` and `clip_embeddings`."""
    from pipeline.audio.fingerprint import load_fingerprints

    clips = warehouse.rows(f"SELECT {GROUPING_CLIP_COLUMNS} FROM clips ORDER BY clip_id")
    embeddings = load_embeddings(warehouse) if settings.embedding_min_cosine is not None else {}
    return clips, group_clips(clips, load_fingerprints(warehouse), embeddings, settings)


def write_sound_groups(warehouse: Warehouse, groups: SoundGroups, run_id: str) -> int:
    """Replace `sound_group_members` with these groups (one partition, written atomically);
    returns the rows written, 0 when the stored groups are already these."""
    members = groups.members()
    now = utc_now()
    rows = [
        SoundGroupRecord(
            sound_group=group,
            clip_id=clip_id,
            linked_by=",".join(sorted(groups.linked_by.get(clip_id, ()))) or "self",
            identities=groups.identities.get(clip_id, []),
            group_size=len(members[group]),
            run_id=run_id,
            grouped_at=now,
        ).model_dump()
        for clip_id, group in sorted(groups.group_of.items())
    ]

    def content(records: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(
            (r["clip_id"], r["sound_group"], r["linked_by"], tuple(r["identities"] or ()))
            for r in records
        )

    stored = warehouse.rows(
        f"SELECT clip_id, sound_group, linked_by, identities FROM {GROUP_TABLE}"
    )
    if content(stored) == content(rows):  # unchanged: a rerun rewrites nothing
        return 0
    return warehouse.write_partition(GROUP_TABLE, "current", rows)
