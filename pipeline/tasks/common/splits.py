"""Split assignment by source clip: every item built from a clip lives in that clip's split.

Rules, in order:

* the source's own split wins: a clip the source put in `test` only ever goes to test,
  `dev` stays dev, `train` stays train;
* a source with train and test but no dev split (LAION's Freesound folders) gets a dev
  split carved out of its train clips by a seeded hash (`dev_fraction_of_train`);
* clips without a source split get a seeded hash split (`ratios`, default 80/10/10).

Pairs take the split of their clips; a pair whose clips sit in different splits is not
formed (`pair_split` returns None), so no clip ever appears in two splits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

SPLITS = ("train", "dev", "test")


class SplitPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, dev, test for unsplit clips
    dev_fraction_of_train: float = 0.1  # only for sources that have no dev split of their own


def seeded_fraction(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by (key, seed): the same clip always lands in the same split."""
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SplitAssigner:
    """Assigns clip splits; built from the clips it will be asked about."""

    def __init__(self, clips: Iterable[Mapping[str, Any]], policy: SplitPolicy) -> None:
        self.policy = policy
        self._source_splits: dict[str, set[str]] = {}
        self._clips: dict[str, tuple[str, str | None]] = {}
        for clip in clips:
            source, split = clip["source"], clip.get("split")
            self._clips[clip["clip_id"]] = (source, split)
            if split:
                self._source_splits.setdefault(source, set()).add(split)

    @classmethod
    def from_warehouse(cls, warehouse: Any, policy: SplitPolicy) -> SplitAssigner:
        """Knows every ingested clip, so 'does this source have a dev split' is decided once."""
        return cls(warehouse.rows("SELECT clip_id, source, split FROM clips"), policy)

    def clip_split(self, clip_id: str) -> str:
        source, split = self._clips[clip_id]
        fraction = seeded_fraction(clip_id, self.policy.seed)
        if split in ("test", "dev"):
            return split
        if split == "train":
            has_dev = "dev" in self._source_splits.get(source, set())
            if not has_dev and fraction < self.policy.dev_fraction_of_train:
                return "dev"
            return "train"
        train, dev, _ = self.policy.ratios
        if fraction < train:
            return "train"
        if fraction < train + dev:
            return "dev"
        return "test"

    def pair_split(self, *clip_ids: str) -> str | None:
        """The split shared by all clips, or None when they disagree (pair not formed)."""
        splits = {self.clip_split(clip_id) for clip_id in clip_ids}
        return splits.pop() if len(splits) == 1 else None
