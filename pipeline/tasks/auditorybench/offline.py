"""Offline rules for the three AuditoryBench prompts (model `offline-rules`).

They stand in for the LLM when no endpoint is configured: deterministic replies built
from a clip's tags, title, description and captions with the shipped lexicons
(`knowledge.py`). Sentence wording varies deterministically by clip, from a small set of
templates, so the offline dataset is not one sentence repeated. They decline when the
metadata does not support an answer, exactly as the prompt asks the LLM to.
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any

from pipeline.llm.offline import offline_rule
from pipeline.tasks.auditorybench.knowledge import (
    animal_vocabulary,
    category_keywords,
    tables_fingerprint,
)

_WORD_RE = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_TABLES = tables_fingerprint()

ANIMAL_TEMPLATES = (
    "{Sound} is the sound a [MASK] makes.",
    "The {sound} you can hear in this recording comes from a [MASK].",
    "A [MASK] makes this {sound} sound.",
    "If you hear the {sound} outside, there is probably a [MASK] nearby.",
    "Somewhere nearby, a [MASK] lets out a loud {sound}.",
)
PITCH_TEMPLATES = (
    "The sound of {first} has a [MASK] pitch than the sound of {second}.",
    "In these recordings, {first} sounds [MASK] in pitch than {second}.",
    "Compared by pitch, {first} is [MASK] than {second}.",
    "The pitch of {first} is [MASK] than the pitch of {second}.",
)


def pick(options: tuple[str, ...], *keys: Any) -> str:
    """A template chosen by a hash of the clip's metadata: stable, but varied across clips."""
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


def _phrases(variables: dict[str, Any]) -> list[str]:
    """Tags first (in order), then the title, as lower-case phrases to look up."""
    phrases = [str(tag).strip().lower() for tag in variables.get("tags") or []]
    phrases.append(str(variables.get("title") or "").strip().lower())
    return [p for p in phrases if p]


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


@offline_rule("auditorybench/categorize", version=_TABLES)
def categorize_rule(variables: dict[str, Any]) -> dict[str, Any]:
    vocabulary = animal_vocabulary()
    keywords = category_keywords()
    for phrase in _phrases(variables):
        for candidate in [phrase, *_words(phrase)]:
            animal = vocabulary.normalise(candidate)
            if animal:
                sound = _animal_sound(animal, variables) or "call"
                return {"decline": False, "category": f"animal/{animal}/{sound}"}
            if candidate in keywords:
                return {"decline": False, "category": keywords[candidate]}
    return {"decline": True, "category": ""}


def _animal_sound(animal: str, variables: dict[str, Any]) -> str | None:
    """The first sound word of this animal (or any animal) found in the clip's metadata."""
    vocabulary = animal_vocabulary()
    own = vocabulary.get(animal).sounds if animal in vocabulary.animals else ()
    texts = [
        *(str(t).lower() for t in variables.get("tags") or []),
        str(variables.get("title") or ""),
        str(variables.get("description") or ""),
        *(str(c) for c in variables.get("captions") or []),
    ]
    words = [w for text in texts for w in [text.strip().lower(), *_words(text)]]
    for lexicon in (own, tuple(sorted(vocabulary.sound_words))):
        forms = _sound_forms(lexicon)
        for word in words:
            if word in forms:
                return forms[word]
    return None


@functools.lru_cache(maxsize=512)
def _sound_forms(lexicon: tuple[str, ...]) -> dict[str, str]:
    """Each spelling a sound word is matched in ('bark', 'barks', 'barkes', 'barking'),
    mapped to the first sound of `lexicon` that has it: one lookup per metadata word."""
    forms: dict[str, str] = {}
    for sound in lexicon:
        for form in (sound, sound + "s", sound + "es", sound + "ing"):
            forms.setdefault(form, sound)
    return forms


@offline_rule("auditorybench/animal", version=_TABLES)
def animal_rule(variables: dict[str, Any]) -> dict[str, Any]:
    vocabulary = animal_vocabulary()
    decline = {"decline": True, "sentence": "", "span": "", "answer": ""}
    mention = next((p for p in _phrases(variables) if vocabulary.normalise(p)), None)
    if mention is None:
        return decline
    sound = _animal_sound(vocabulary.normalise(mention) or "", variables)
    if sound is None:
        return decline
    template = pick(ANIMAL_TEMPLATES, variables.get("title"), variables.get("tags"))
    span = sound.capitalize() if template.startswith("{Sound}") else sound
    sentence = template.format(Sound=span, sound=span)
    # The raw mention (e.g. 'Pomeranian'), as an LLM might answer; the task normalises it.
    return {"decline": False, "sentence": sentence, "span": span, "answer": mention.title()}


def source_phrase(recording: dict[str, Any]) -> str | None:
    """'Kettle whistle' → 'the kettle whistle' (None when the title names nothing)."""
    words = _words(str(recording.get("title") or ""))
    return "the " + " ".join(words) if words else None


@offline_rule("auditorybench/pitch", version=_TABLES)
def pitch_rule(variables: dict[str, Any]) -> dict[str, Any]:
    first = source_phrase(variables.get("first") or {})
    second = source_phrase(variables.get("second") or {})
    if not first or not second:
        return {"decline": True, "sentence": "", "span1": "", "span2": ""}
    template = pick(PITCH_TEMPLATES, first, second)
    sentence = template.format(first=first, second=second)
    return {"decline": False, "sentence": sentence, "span1": first, "span2": second}
