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

    Memory: per clip only its events (as a bit mask over the corpus's events) and its
    semantic summary are kept, about 0.3 KB; a clip's full profile is recomputed when its
    own items are built (a small cache serves the few requests of one clip).
    """

    SUMMARY_WINDOW = 64
    RECENT_PROFILES = 4_096

    def __init__(self, clips: list[dict[str, Any]], seed: int) -> None:
        self.seed = seed
        event_bits: dict[str, int] = {}
        sources: set[str] = set()
        scenes: set[str] = set()
        temporal: set[str] = set()
        main_moods: set[str] = set()
        self.masks: dict[str, int] = {}
        self.summaries: dict[str, str] = {}
        for clip in clips:
            profile = clip_profile(clip)
            mask = 0
            for event in profile.events:
                mask |= 1 << event_bits.setdefault(event, len(event_bits))
            self.masks[profile.clip_id] = mask
            self.summaries[profile.clip_id] = profile.summary
            sources |= profile.sources
            scenes |= profile.scenes
            if profile.temporal:
                temporal.add(profile.temporal)
            if profile.main_mood:
                main_moods.add(profile.main_mood)
        self.event_bits = event_bits
        self.events = frozenset(event_bits)
        self.sources = frozenset(sources)
        self.scenes = frozenset(scenes)
        self.temporal = frozenset(temporal)
        self.main_moods = frozenset(main_moods)
        self.order = sorted(self.masks, key=lambda cid: stable_hash(cid, seed, "pool"))
        self.position = {cid: index for index, cid in enumerate(self.order)}
        self._recent: dict[str, ClipProfile] = {}

    def profile(self, clip: dict[str, Any]) -> ClipProfile:
        cached = self._recent.get(clip["clip_id"])
        if cached is None:
            if len(self._recent) >= self.RECENT_PROFILES:
                self._recent.clear()
            cached = self._recent[clip["clip_id"]] = clip_profile(clip)
        return cached

    def _ranked(self, clip_id: str, phrases: set[str] | frozenset[str]) -> list[str]:
        ranked = sorted(phrases, key=lambda phrase: stable_hash(clip_id, phrase, self.seed))
        return ranked[:POOL_SIZE]

    def distractor_pool(self, focus: str, clip: dict[str, Any]) -> list[str]:
        """Phrases of the focus's kind heard in other clips and never named by this clip.

        The offline rule takes its distractors from here; a real LLM is asked to prefer them.
        """
        own = self.profile(clip)
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
        own_mask = self.masks.get(own.clip_id)
        if own_mask is None:  # a clip outside the pool: its events by name
            own_mask = self._mask_of(own.events)
        found: list[str] = []
        for step in range(1, min(len(self.order), self.SUMMARY_WINDOW + 1)):
            other = self.order[(start + step) % len(self.order)]
            if other == own.clip_id or own_mask & self.masks[other]:
                continue
            summary = self.summaries[other]
            if summary not in found:
                found.append(summary)
            if len(found) == POOL_SIZE:
                break
        return found

    def other_events(self, clip: dict[str, Any]) -> list[str]:
        """Events named by other clips' captions and not by this clip's (neutral candidates)."""
        own = self.profile(clip)
        return self._ranked(own.clip_id, self.events - own.events)

    def _mask_of(self, events: frozenset[str]) -> int:
        mask = 0
        for event in events:
            if event in self.event_bits:
                mask |= 1 << self.event_bits[event]
        return mask
