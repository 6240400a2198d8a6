"""The knowledge tables AuditoryBench ships (written for this project from general knowledge).

* `data/animals.csv` — `animal,plural,aliases,sounds`: 177 animal names, their plural, the
  narrower names that fold into them (breeds, young, sexes, varieties, common misspellings;
  `;`-separated) and their sounds (onomatopoeia and sound words; the first is the
  canonical one used by the wiki split). It is both the answer vocabulary and the
  onomatopoeia lexicon. The 93 rows with sounds make the wiki split; the 84 rows without
  are answer names only: every species and broad class (`bird`, `insect`, `creature`)
  that the published AuditoryBench labels name (590 of the 593 published dev labels are
  accepted, 543 under their own name; the rest fold into the animal they are a breed,
  young, sex or variety of, as the paper's broad answers do — dog, not Pomeranian). A
  species the published labels name is never an alias of another (nightingale is not a
  songbird alias, mosquito not a fly).
* `data/pitch_sources.csv` — `source,kind,phrase,low_hz,high_hz`: 106 instruments, voices,
  animal calls and everyday objects with the usual range of their fundamental (or, for
  unpitched-but-tonal sources, dominant) frequency in Hz.
* `data/category_keywords.csv` — `keyword,category`: keywords → category paths for the
  offline categorisation rule (animals come from the animal vocabulary).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pipeline.errors import InputFormatError

DATA_DIR = Path(__file__).resolve().parent / "data"
ANIMALS_CSV = DATA_DIR / "animals.csv"
PITCH_SOURCES_CSV = DATA_DIR / "pitch_sources.csv"
CATEGORY_KEYWORDS_CSV = DATA_DIR / "category_keywords.csv"
_ARTICLE_RE = re.compile(r"^(a|an|the|some)\s+")
_SPACE_RE = re.compile(r"\s+")


def _read(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise InputFormatError(
                path, f"missing column(s) {', '.join(missing)}", field=missing[0]
            )
        rows = list(reader)
    for index, row in enumerate(rows, start=1):
        for column in required:
            if row[column] is None:
                raise InputFormatError(path, "row has too few cells", row=index, field=column)
    return rows


def _split(cell: str) -> list[str]:
    return [part.strip().lower() for part in cell.split(";") if part.strip()]


def tables_fingerprint() -> str:
    """Changes when any shipped table changes (offline rule version, item versions)."""
    digest = hashlib.sha256()
    for path in (ANIMALS_CSV, PITCH_SOURCES_CSV, CATEGORY_KEYWORDS_CSV):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Animal:
    name: str
    plural: str
    aliases: tuple[str, ...]
    sounds: tuple[str, ...]

    def forms(self) -> tuple[str, ...]:
        """Every word that would give the answer away in a sentence."""
        return (self.name, self.plural, *self.aliases)


class AnimalVocabulary:
    """Answer normalisation: any mention of an animal → its broad name, or None."""

    def __init__(self, animals: list[Animal]) -> None:
        self.animals = {animal.name: animal for animal in animals}
        self._lookup: dict[str, str] = {}
        # Broad names and plurals first, so an animal that is also someone's alias
        # (e.g. 'crow' vs the rooster's sound) keeps its own name.
        for animal in animals:
            self._lookup.setdefault(animal.plural, animal.name)
        for animal in animals:
            for alias in animal.aliases:
                self._lookup.setdefault(alias, animal.name)
        for animal in animals:
            self._lookup[animal.name] = animal.name
        self.sound_words = {sound for animal in animals for sound in animal.sounds}

    def normalise(self, text: str) -> str | None:
        """'Pomeranian' → dog, 'Two ducks' → duck; None for anything unknown."""
        phrase = _SPACE_RE.sub(" ", re.sub(r"[^a-z\- ]", " ", text.lower())).strip()
        phrase = _ARTICLE_RE.sub("", phrase)
        if not phrase:
            return None
        for candidate in (phrase, _singular(phrase)):
            if candidate in self._lookup:
                return self._lookup[candidate]
        words = phrase.split(" ")
        for size in range(min(3, len(words)), 0, -1):  # "small white dog" → dog (last words)
            tail = " ".join(words[-size:])
            for candidate in (tail, _singular(tail)):
                if candidate in self._lookup:
                    return self._lookup[candidate]
        return None

    def get(self, name: str) -> Animal:
        return self.animals[name]


# Answer names that are classes rather than animals: a clip categorised `animal/bird/…`
# may be answered with any bird, so these never make a category mismatch.
GENERIC_ANIMALS = frozenset({"animal", "creature", "bird", "insect", "bug", "rodent", "songbird"})


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


@cache
def animal_vocabulary() -> AnimalVocabulary:
    rows = _read(ANIMALS_CSV, ("animal", "plural", "aliases", "sounds"))
    return AnimalVocabulary(
        [
            Animal(
                name=row["animal"].strip().lower(),
                plural=row["plural"].strip().lower(),
                aliases=tuple(_split(row["aliases"])),
                sounds=tuple(_split(row["sounds"])),
            )
            for row in rows
        ]
    )


@dataclass(frozen=True)
class PitchSource:
    source: str
    kind: str
    phrase: str
    low_hz: float
    high_hz: float


@cache
def pitch_sources() -> tuple[PitchSource, ...]:
    rows = _read(PITCH_SOURCES_CSV, ("source", "kind", "phrase", "low_hz", "high_hz"))
    sources = []
    for index, row in enumerate(rows, start=1):
        try:
            low, high = float(row["low_hz"]), float(row["high_hz"])
        except ValueError as exc:
            raise InputFormatError(PITCH_SOURCES_CSV, str(exc), row=index, field="low_hz") from exc
        if not 0 < low <= high:
            raise InputFormatError(
                PITCH_SOURCES_CSV, f"need 0 < low_hz <= high_hz, got {low}, {high}", row=index
            )
        sources.append(PitchSource(row["source"], row["kind"], row["phrase"], low, high))
    return tuple(sources)


@cache
def category_keywords() -> dict[str, str]:
    return {
        row["keyword"].strip().lower(): row["category"].strip()
        for row in _read(CATEGORY_KEYWORDS_CSV, ("keyword", "category"))
    }
