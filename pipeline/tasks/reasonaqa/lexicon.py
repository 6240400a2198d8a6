"""Sound-event lexicon shipped with the project (`data/sound_events.csv`).

Each row is one canonical sound event with a regular expression of the words that
name it in captions and questions, the source that makes it, a coarse category, the
mood a listener most often associates with it, a typical scene, its temporal pattern
(repeated / steady / rising / single) and a one-line acoustic description written for
this project. ReasonAQA's offline rules and NLAR's annotation cleanup both map free
text onto these events; text naming no lexicon event is handled by each caller.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from pipeline.errors import InputFormatError

LEXICON_PATH = Path(__file__).resolve().parent / "data" / "sound_events.csv"
COLUMNS = ("event", "source", "pattern", "category", "mood", "scene", "temporal", "acoustic")
TEMPORAL_PATTERNS = ("repeated", "steady", "rising", "single")


@dataclass(frozen=True)
class SoundEvent:
    event: str
    source: str
    regex: re.Pattern[str]
    category: str
    mood: str
    scene: str
    temporal: str
    acoustic: str


@cache
def sound_events(path: Path = LEXICON_PATH) -> tuple[SoundEvent, ...]:
    """The lexicon in file order (earlier rows win when two match at the same place)."""
    events: list[SoundEvent] = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise InputFormatError(path, f"header must be {','.join(COLUMNS)}")
        for row_no, row in enumerate(reader, start=1):
            if row["temporal"] not in TEMPORAL_PATTERNS:
                raise InputFormatError(
                    path, "unknown temporal pattern", row=row_no, field="temporal"
                )
            try:
                regex = re.compile(rf"\b(?:{row['pattern']})\b", re.IGNORECASE)
            except re.error as exc:
                raise InputFormatError(
                    path, f"bad regex: {exc}", row=row_no, field="pattern"
                ) from exc
            events.append(
                SoundEvent(
                    event=row["event"],
                    source=row["source"],
                    regex=regex,
                    category=row["category"],
                    mood=row["mood"],
                    scene=row["scene"],
                    temporal=row["temporal"],
                    acoustic=row["acoustic"],
                )
            )
    return tuple(events)


def event_by_name(name: str) -> SoundEvent | None:
    for event in sound_events():
        if event.event == name:
            return event
    return None


def events_in_text(text: str) -> list[SoundEvent]:
    """Every lexicon event named in `text`, ordered by where it is first named."""
    return list(_events_in_text(text))


@lru_cache(maxsize=65536)  # captions are scanned by several families and validators
def _events_in_text(text: str) -> tuple[SoundEvent, ...]:
    found: list[tuple[int, int, SoundEvent]] = []
    for order, event in enumerate(sound_events()):
        match = event.regex.search(text)
        if match:
            found.append((match.start(), order, event))
    return tuple(event for _, _, event in sorted(found, key=lambda item: (item[0], item[1])))


def first_event_in_text(text: str) -> SoundEvent | None:
    events = events_in_text(text)
    return events[0] if events else None


def caption_support(captions: Iterable[str]) -> list[tuple[SoundEvent, int]]:
    """Events named in a caption set with how many captions name each, most supported first.

    Ties keep the order of first mention in the first caption that names them, so the
    result is deterministic for a given caption list.
    """
    return list(_caption_support(tuple(captions)))


@lru_cache(maxsize=65536)
def _caption_support(captions: tuple[str, ...]) -> tuple[tuple[SoundEvent, int], ...]:
    support: Counter[str] = Counter()
    first_seen: dict[str, tuple[int, int]] = {}
    by_name: dict[str, SoundEvent] = {}
    for caption_index, caption in enumerate(captions):
        for position, event in enumerate(events_in_text(caption)):
            support[event.event] += 1
            by_name[event.event] = event
            first_seen.setdefault(event.event, (caption_index, position))
    ranked = sorted(support, key=lambda name: (-support[name], first_seen[name]))
    return tuple((by_name[name], support[name]) for name in ranked)
