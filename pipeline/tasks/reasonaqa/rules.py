"""Offline rules for the ReasonAQA prompts: realistic items from captions alone.

What they can do: recognise the sound events a caption set names (the shipped lexicon,
`data/sound_events.csv`), rank them by how many captions name them, and phrase
questions, answers, differences and hypotheses from those events plus the lexicon's
source / scene / mood / temporal-pattern columns. What they cannot do: understand a
caption beyond its lexicon words (a clip whose captions name no lexicon event is
declined), or know anything the captions do not say. Moods, scenes and temporal
patterns come from the lexicon row of the clip's main event unless the captions name a
scene or pattern themselves; the README says so.

Every function takes the request variables (the same the template renders) and returns a
reply matching the template's schema; `offline.py` registers them with the engine.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.tasks.common.base import stable_hash
from pipeline.tasks.reasonaqa.lexicon import SoundEvent, caption_support, events_in_text

FOCUSES = ("events", "sources", "scene", "signal", "semantics", "emotion")
FOCUS_HINTS = {
    "events": "which sound events happen",
    "sources": "what produces the sounds",
    "scene": "where the recording was most likely made",
    "signal": "how the sounds behave acoustically: rhythm, duration, loudness, pitch",
    "semantics": "what is going on: the activity or situation",
    "emotion": "how a listener would most likely feel",
}
TEMPORAL_PHRASES = {
    "repeated": "repeated, separate bursts of sound",
    "steady": "a steady, continuous sound",
    "rising": "a sound that rises in pitch or loudness",
    "single": "one brief, isolated sound",
}
# Words in captions that state a temporal pattern outright (they beat the lexicon's guess).
TEMPORAL_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("repeated", re.compile(r"\b(?:repeatedly|several times|\w+ times|twice|again)\b", re.I)),
    ("steady", re.compile(r"\b(?:steady|steadily|continuous\w*|constant\w*)\b", re.I)),
    ("rising", re.compile(r"\b(?:accelerat\w*|speeds? up|revs?|louder|rising|rises)\b", re.I)),
)
SCENE_WORDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rf"\b(?:{pattern})\b", re.I), scene)
    for pattern, scene in (
        ("park", "a park"),
        ("caf[eé]|coffee shop", "a café"),
        ("kitchen", "a kitchen"),
        ("station", "a train station"),
        ("harbou?r", "a harbour"),
        ("office", "an office"),
        ("beach|shore", "a seashore"),
        ("road|street", "a street"),
        ("forest|woods", "a forest"),
        ("church|tower", "a church"),
        ("farm", "a farm"),
        ("stadium", "a stadium"),
        ("town|city", "a town"),
    )
)
MOOD_PHRASES = {
    "calm": "calm and relaxed",
    "alert": "alert and attentive",
    "lively": "lively and busy",
    "cheerful": "cheerful",
    "eerie": "uneasy, with an eerie feeling",
    "tense": "tense or anxious",
    "excited": "excited",
    "neutral": "neutral, neither pleased nor upset",
    "busy": "focused, as in a busy workplace",
    "alarming": "alarmed",
}
QUESTIONS_MCQ = {
    "events": (
        "Which sound event can be heard in the recording?",
        "What sound is heard in this clip?",
    ),
    "sources": (
        "What is the most likely source of the main sound?",
        "What produces the main sound in this clip?",
    ),
    "scene": (
        "Where was this recording most likely made?",
        "In what kind of place does this audio take place?",
    ),
    "signal": (
        "How does the main sound behave over time?",
        "Which description best fits the main sound's rhythm?",
    ),
    "semantics": (
        "Which description best matches what is happening?",
        "What is going on in this recording?",
    ),
    "emotion": (
        "Which feeling would a listener most likely have?",
        "How would this recording most likely make a listener feel?",
    ),
}
QUESTIONS_DETAIL = {
    "events": "What sound events can be heard in this recording, and which one dominates?",
    "sources": "What is producing the sounds in this recording?",
    "scene": "Where could this recording have been made, and what in the audio suggests it?",
    "signal": "How do the sounds in this recording behave over time?",
    "semantics": "What is happening in this recording?",
    "emotion": "How might a listener feel when hearing this recording, and why?",
}
ENTAILMENT_FORMS = (
    "The sound of {event} can be heard in the recording.",
    "At some point in the clip, there is the sound of {event}.",
    "The recording includes the sound of {event}.",
)
CONTRADICTION_FORMS = (
    "The sound of {event} is never heard in the recording.",
    "At no point does the clip contain the sound of {event}.",
)
NEUTRAL_FORMS = (
    "The sound of {event} can also be heard faintly in the background.",
    "Somewhere in the distance, there is also the sound of {event}.",
)


def _pick(options: tuple[str, ...], *key: Any) -> str:
    return options[int(stable_hash(*key, length=8), 16) % len(options)]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def clip_events(captions: list[str]) -> list[tuple[SoundEvent, int]]:
    return caption_support(captions)


def scene_of(captions: list[str], events: list[tuple[SoundEvent, int]]) -> str | None:
    """A scene the captions name, else the lexicon scene of the main event."""
    text = " ".join(captions)
    for pattern, scene in SCENE_WORDS:
        if pattern.search(text):
            return scene
    return events[0][0].scene if events else None


def temporal_of(captions: list[str], events: list[tuple[SoundEvent, int]]) -> str | None:
    text = " ".join(captions)
    for pattern_name, cue in TEMPORAL_CUES:
        if cue.search(text):
            return pattern_name
    return events[0][0].temporal if events else None


def semantic_summary(captions: list[str]) -> str:
    """The shortest caption, as a lower-case phrase without the final full stop."""
    shortest = min(captions, key=lambda c: (len(c.split()), c))
    text = shortest.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def mcq_correct(focus: str, captions: list[str]) -> str | None:
    """The answer the captions support for a focus, or None when they give no basis."""
    events = clip_events(captions)
    if focus == "semantics":
        return semantic_summary(captions) if captions else None
    if not events:
        return None
    main = events[0][0]
    if focus == "events":
        return main.event
    if focus == "sources":
        return main.source
    if focus == "scene":
        return scene_of(captions, events)
    if focus == "signal":
        pattern = temporal_of(captions, events)
        return TEMPORAL_PHRASES[pattern] if pattern else None
    if focus == "emotion":
        return MOOD_PHRASES.get(main.mood)
    raise ValueError(f"unknown focus {focus!r}")


def mentioned_in_captions(phrase: str, captions: list[str]) -> bool:
    """The captions name the phrase itself or one of the lexicon events it names."""
    text = " ".join(captions).lower()
    if phrase.lower().strip(" .") in text:
        return True
    caption_events = {event.event for event, _ in clip_events(captions)}
    return any(event.event in caption_events for event in events_in_text(phrase))


def mcq_rule(variables: dict[str, Any]) -> dict[str, Any]:
    captions: list[str] = list(variables["captions"])
    focus: str = variables["focus"]
    correct = mcq_correct(focus, captions)
    declined = {"decline": True, "question": "", "correct": "", "distractors": []}
    if not correct:
        return declined
    distractors: list[str] = []
    for phrase in variables.get("distractor_pool") or []:
        if phrase.lower() == correct.lower() or phrase in distractors:
            continue
        if mentioned_in_captions(phrase, captions):
            continue
        distractors.append(phrase)
        if len(distractors) == 3:
            break
    if len(distractors) < 3:
        return declined
    question = _pick(QUESTIONS_MCQ[focus], captions, focus)
    return {"decline": False, "question": question, "correct": correct, "distractors": distractors}


def detail_rule(variables: dict[str, Any]) -> dict[str, Any]:
    captions: list[str] = list(variables["captions"])
    focus: str = variables["focus"]
    events = clip_events(captions)
    if not events:
        return {"decline": True, "question": "", "answer": ""}
    main, main_support = events[0]
    others = [event.event for event, _ in events[1:]]
    total = len(captions)
    quote = semantic_summary(captions)
    if focus == "events":
        answer = (
            f"The recording is dominated by {main.event}, which {main_support} of {total} "
            f"descriptions mention."
        )
        if others:
            answer += f" Besides it, {_join(others)} can be heard."
        answer += f" One listener summed it up as: {quote}."
    elif focus == "sources":
        sources = [event.source for event, _ in events[1:]]
        answer = f"The main sound comes from {main.source}, heard as {main.event}."
        if sources:
            answer += f" Other sources are {_join(sources)}."
        answer += f" The descriptions agree on this: {quote}."
    elif focus == "scene":
        scene = scene_of(captions, events)
        answer = (
            f"It was most likely recorded in {scene}: the descriptions mention "
            f"{_join([event.event for event, _ in events])}, which fit that setting."
        )
        answer += f" The captions do not name the place with certainty; {quote} is what was heard."
    elif focus == "signal":
        pattern = temporal_of(captions, events) or main.temporal
        answer = (
            f"The main sound, {main.event}, comes as {TEMPORAL_PHRASES[pattern]}. "
            f"It typically has {main.acoustic}."
        )
        if others:
            answer += f" It is accompanied by {_join(others)}."
    elif focus == "semantics":
        answer = f"Listeners agree that {quote}. The scene is built around {main.event}"
        answer += f" together with {_join(others)}." if others else "."
    elif focus == "emotion":
        answer = (
            f"A listener would most likely feel {MOOD_PHRASES.get(main.mood, main.mood)}, "
            f"because the recording features {main.event}."
        )
        answer += " How a person feels depends on them; the captions only describe the sounds."
    else:
        raise ValueError(f"unknown focus {focus!r}")
    return {"decline": False, "question": QUESTIONS_DETAIL[focus], "answer": answer}


def difference_rule(variables: dict[str, Any]) -> dict[str, Any]:
    captions1: list[str] = list(variables["captions1"])
    captions2: list[str] = list(variables["captions2"])
    events1, events2 = clip_events(captions1), clip_events(captions2)
    names1 = [event.event for event, _ in events1]
    names2 = [event.event for event, _ in events2]
    only1 = [name for name in names1 if name not in names2]
    only2 = [name for name in names2 if name not in names1]
    shared = [name for name in names1 if name in names2]
    declined = {"decline": True, "short": "", "sentence": "", "detailed": ""}
    if not events1 or not events2 or (not only1 and not only2):
        return declined
    first = only1[0] if only1 else f"no {only2[0]}"
    second = only2[0] if only2 else f"no {only1[0]}"
    short = f"{first} vs. {second}"
    if only1 and only2:
        sentence = f"The first recording has {_join(only1)}, while the second has {_join(only2)}."
    elif only1:
        sentence = f"The first recording adds {_join(only1)}, which the second lacks."
    else:
        sentence = f"The second recording adds {_join(only2)}, which the first lacks."
    main1, main2 = events1[0][0], events2[0][0]
    detailed = sentence
    detailed += f" Both contain {_join(shared)}." if shared else " They share no sound event."
    pattern1 = temporal_of(captions1, events1) or main1.temporal
    pattern2 = temporal_of(captions2, events2) or main2.temporal
    detailed += (
        f" In the first, {main1.event} comes as {TEMPORAL_PHRASES[pattern1]}; in the second, "
        f"{main2.event} comes as {TEMPORAL_PHRASES[pattern2]}."
    )
    detailed += (
        f" The first was probably recorded in {scene_of(captions1, events1)} and the second in "
        f"{scene_of(captions2, events2)}."
    )
    return {"decline": False, "short": short, "sentence": sentence, "detailed": detailed}


def entailment_rule(variables: dict[str, Any]) -> dict[str, Any]:
    """Rules: entailment = the main event restated; contradiction = the main event denied;
    neutral = an event from another clip that these captions never mention (its absence
    from the captions does not prove it is absent from the audio, so neither label fits)."""
    captions: list[str] = list(variables["captions"])
    events = clip_events(captions)
    if not events:
        return {"decline": True, "hypotheses": []}
    main = events[0][0].event
    hypotheses = [
        {
            "hypothesis": _pick(ENTAILMENT_FORMS, captions, "e").format(event=main),
            "label": "entailment",
        },
        {
            "hypothesis": _pick(CONTRADICTION_FORMS, captions, "c").format(event=main),
            "label": "contradiction",
        },
    ]
    candidates = [
        e for e in variables.get("other_events") or [] if not mentioned_in_captions(e, captions)
    ]
    if candidates:
        other = candidates[0]
        hypotheses.append(
            {
                "hypothesis": _pick(NEUTRAL_FORMS, captions, "n").format(event=other),
                "label": "neutral",
            }
        )
    return {"decline": False, "hypotheses": hypotheses}
