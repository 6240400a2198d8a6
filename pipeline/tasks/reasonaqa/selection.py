"""ReasonAQA clip selection: clips by split, difference pairs, and the distractor pools
(phrases heard in other clips of the split) the MCQ prompts draw from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.tasks.common.base import TaskContext, stable_hash
from pipeline.tasks.reasonaqa import rules

POOL_SIZE = 8


# ---- clip selection ------------------------------------------------------------------


def clips_by_split(
    ctx: TaskContext, clips: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for clip in clips:
        grouped.setdefault(ctx.splits.clip_split(clip["clip_id"]), []).append(clip)
    return grouped


def difference_pairs(
    ctx: TaskContext, clips: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each clip paired with its neighbour in a seeded order, within one (source, split).

    n clips give n pairs (a ring) when n > 2, one pair when n == 2; every clip appears
    in at most two pairs, so the pair count grows linearly with the corpus.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for clip in clips:
        groups.setdefault((clip["source"], ctx.splits.clip_split(clip["clip_id"])), []).append(clip)
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for key in sorted(groups):
        ordered = sorted(groups[key], key=lambda c: stable_hash(c["clip_id"], ctx.seed, "pair"))
        count = len(ordered)
        if count < 2:
            continue
        for index in range(count if count > 2 else 1):
            first, second = ordered[index], ordered[(index + 1) % count]
            if ctx.splits.pair_split(first["clip_id"], second["clip_id"]) is not None:
                pairs.append((first, second))
    return pairs


@dataclass(frozen=True)
class ClipProfile:
    """What the distractor pools need from one clip's captions, computed once per clip."""

    clip_id: str
    events: frozenset[str]
    sources: frozenset[str]
    scenes: frozenset[str]  # the scene the captions name or imply, plus event scenes
    temporal: str | None
    moods: frozenset[str]
    main_mood: str | None
    summary: str


def clip_profile(clip: dict[str, Any]) -> ClipProfile:
    captions = list(clip["captions"])
    events = rules.clip_events(captions)
    scene = rules.scene_of(captions, events)
    return ClipProfile(
        clip_id=clip["clip_id"],
        events=frozenset(e.event for e, _ in events),
        sources=frozenset(e.source for e, _ in events),
        scenes=frozenset({scene} if scene else set()) | {e.scene for e, _ in events},
        temporal=rules.temporal_of(captions, events),
        moods=frozenset(e.mood for e, _ in events),
        main_mood=events[0][0].mood if events else None,
        summary=rules.semantic_summary(captions),
    )


class PoolIndex:
    """Phrases heard across the caption corpus, to draw distractors and neutral events from.

    Built once per run (linear in the number of clips); per clip, pools are the corpus
    phrases of a kind minus the clip's own, so the cost per clip does not grow with the
    corpus (semantic summaries are drawn from a bounded, seeded window of other clips).
    """

    SUMMARY_WINDOW = 64

    def __init__(self, clips: list[dict[str, Any]], seed: int) -> None:
        self.seed = seed
        self.profiles = {clip["clip_id"]: clip_profile(clip) for clip in clips}
        self.order = sorted(self.profiles, key=lambda cid: stable_hash(cid, seed, "pool"))
        self.position = {cid: index for index, cid in enumerate(self.order)}
        profiles = list(self.profiles.values())
        self.events = frozenset().union(*(p.events for p in profiles))
        self.sources = frozenset().union(*(p.sources for p in profiles))
        self.scenes = frozenset().union(*(p.scenes for p in profiles))
        self.temporal = frozenset(p.temporal for p in profiles if p.temporal)
        self.main_moods = frozenset(p.main_mood for p in profiles if p.main_mood)

    def _ranked(self, clip_id: str, phrases: set[str] | frozenset[str]) -> list[str]:
        ranked = sorted(phrases, key=lambda phrase: stable_hash(clip_id, phrase, self.seed))
        return ranked[:POOL_SIZE]

    def distractor_pool(self, focus: str, clip: dict[str, Any]) -> list[str]:
        """Phrases of the focus's kind heard in other clips and never named by this clip.

        The offline rule takes its distractors from here; a real LLM is asked to prefer them.
        """
        own = self.profiles.get(clip["clip_id"]) or clip_profile(clip)
        if focus == "events":
            return self._ranked(own.clip_id, self.events - own.events)
        if focus == "sources":
            return self._ranked(own.clip_id, self.sources - own.sources)
        if focus == "scene":
            return self._ranked(own.clip_id, self.scenes - own.scenes)
        if focus == "signal":
            return self._ranked(
                own.clip_id,
                {rules.TEMPORAL_PHRASES[p] for p in self.temporal if p != own.temporal},
            )
        if focus == "emotion":
            return self._ranked(
                own.clip_id,
                {
                    rules.MOOD_PHRASES[m]
                    for m in self.main_moods - own.moods
                    if m in rules.MOOD_PHRASES
                },
            )
        if focus == "semantics":
            return self._summaries(own)
        raise ValueError(f"unknown focus {focus!r}")

    def _summaries(self, own: ClipProfile) -> list[str]:
        """Summaries of clips sharing no event with this one, from a seeded window."""
        start = self.position.get(own.clip_id, 0)
        found: list[str] = []
        for step in range(1, min(len(self.order), self.SUMMARY_WINDOW + 1)):
            other = self.profiles[self.order[(start + step) % len(self.order)]]
            if other.clip_id == own.clip_id or own.events & other.events:
                continue
            if other.summary not in found:
                found.append(other.summary)
            if len(found) == POOL_SIZE:
                break
        return found

    def other_events(self, clip: dict[str, Any]) -> list[str]:
        """Events named by other clips' captions and not by this clip's (neutral candidates)."""
        own = self.profiles.get(clip["clip_id"]) or clip_profile(clip)
        return self._ranked(own.clip_id, self.events - own.events)
