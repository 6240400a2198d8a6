"""Split assignment by sound group: every clip of one sound, in every corpus, shares a split.

Clips are first grouped into sounds (pipeline.tasks.common.sound_groups: Freesound ids,
YouTube segments, Clotho file names, content fingerprints, CLAP near-duplicates). A clip
with no link is a group of one. Each group gets one split, by these rules in order:

* protected evaluation sets (`SplitPolicy.protected_sets`, (source, split) pairs; the split
  may be the source's own name or the normalised one): a group with any member in one is
  test, everywhere. Default: AudioCaps test, Clotho evaluation, Clotho-AQA test;
* otherwise the most protected member split wins: test > dev > train. So the source's own
  test split still never moves, and a sound in some source's test split is test in all;
* a train group from sources that have no dev split of their own (LAION's Freesound
  folders) may be carved into dev by a seeded hash of the group (`dev_fraction_of_train`);
  if any of its train members comes from a source with a dev split, it stays train;
* a group with no source split gets a seeded hash split (`ratios`, default 80/10/10).

The hash key is the group's name (its smallest clip_id), so a clip alone hashes on its own
id. Pairs take the split of their clips; a pair whose clips sit in different splits is not
formed (`pair_split` returns None), so no sound ever appears in two splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from pipeline.tasks.common.sound_groups import GroupingSettings, compute_sound_groups

SPLITS = ("train", "dev", "test")
SPLIT_RANK = {"train": 0, "dev": 1, "test": 2}
CROSS_CORPUS_LEAK = "cross_corpus_leak"  # reject reason: an item whose sounds sit in another split


class ProtectedSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    split: str  # the source's own split name (e.g. 'evaluation') or the normalised one

    def holds(self, clip: Mapping[str, Any]) -> bool:
        return clip.get("source") == self.source and self.split in (
            clip.get("split"),
            clip.get("source_split"),
        )


DEFAULT_PROTECTED_SETS = (
    ProtectedSet(source="audiocaps", split="test"),
    ProtectedSet(source="clotho", split="evaluation"),
    ProtectedSet(source="clotho-aqa", split="test"),
)


class SplitPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, dev, test for unsplit clips
    dev_fraction_of_train: float = 0.1  # only for sources that have no dev split of their own
    protected_sets: tuple[ProtectedSet, ...] = DEFAULT_PROTECTED_SETS
    grouping: GroupingSettings = GroupingSettings()


def seeded_fraction(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by (key, seed): the same group always lands in the same split."""
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SplitAssigner:
    """Assigns splits per sound group; built from the clips it will be asked about.

    `groups` maps clip_id → sound group; clips missing from it are groups of one.
    """

    def __init__(
        self,
        clips: Iterable[Mapping[str, Any]],
        policy: SplitPolicy,
        groups: Mapping[str, str] | None = None,
    ) -> None:
        self.policy = policy
        groups = groups or {}
        source_splits: dict[str, set[str]] = {}
        members: dict[str, list[Mapping[str, Any]]] = {}
        self._group_of: dict[str, str] = {}
        for clip in clips:
            group = groups.get(clip["clip_id"], clip["clip_id"])
            self._group_of[clip["clip_id"]] = group
            members.setdefault(group, []).append(clip)
            if clip.get("split"):
                source_splits.setdefault(clip["source"], set()).add(clip["split"])
        self._group_split = {
            group: self._decide(group, rows, source_splits) for group, rows in members.items()
        }

    @classmethod
    def from_warehouse(cls, warehouse: Any, policy: SplitPolicy) -> SplitAssigner:
        """Knows every ingested clip and its sound group, computed from the warehouse now
        (so a stale `sound_group_members` table can never decide a split)."""
        clips, groups = compute_sound_groups(warehouse, policy.grouping)
        return cls(clips, policy, groups.group_of)

    def _decide(
        self, group: str, rows: list[Mapping[str, Any]], source_splits: dict[str, set[str]]
    ) -> str:
        if any(protected.holds(row) for row in rows for protected in self.policy.protected_sets):
            return "test"
        fraction = seeded_fraction(group, self.policy.seed)
        member_splits = [row["split"] for row in rows if row.get("split") in SPLIT_RANK]
        if member_splits:
            best = max(member_splits, key=SPLIT_RANK.__getitem__)
            if best != "train":
                return best
            sources_with_dev = any(
                "dev" in source_splits.get(row["source"], set())
                for row in rows
                if row.get("split") == "train"
            )
            if not sources_with_dev and fraction < self.policy.dev_fraction_of_train:
                return "dev"
            return "train"
        train, dev, _ = self.policy.ratios
        if fraction < train:
            return "train"
        if fraction < train + dev:
            return "dev"
        return "test"

    def sound_group(self, clip_id: str) -> str:
        return self._group_of[clip_id]

    def clip_split(self, clip_id: str) -> str:
        return self._group_split[self._group_of[clip_id]]

    def pair_split(self, *clip_ids: str) -> str | None:
        """The split shared by all clips, or None when they disagree (pair not formed)."""
        splits = {self.clip_split(clip_id) for clip_id in clip_ids}
        return splits.pop() if len(splits) == 1 else None

    def knows(self, clip_id: str) -> bool:
        return clip_id in self._group_of


def reject_cross_split_items(assigner: SplitAssigner, drafts: Iterable[Any]) -> int:
    """Mark drafts whose clips' sound groups are not all in the draft's split (reason
    `cross_corpus_leak`); they are kept as rejected items, never exported. Tasks form items
    from `clip_split`/`pair_split`, so this guards against a task that does not; returns
    how many drafts it marked."""
    marked = 0
    for draft in drafts:
        known = [c for c in draft.clip_ids if assigner.knows(c)]
        if draft.split not in SPLITS or not known:
            continue
        if any(assigner.clip_split(c) != draft.split for c in known):
            if CROSS_CORPUS_LEAK not in draft.reasons:
                draft.reasons.append(CROSS_CORPUS_LEAK)
            marked += 1
    return marked
