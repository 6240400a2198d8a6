"""Acoustic-feature questions: LLM-proposed, checked against descriptions and annotations.

APT's question-answer pairs cover acoustic features as well as presence and frequency
(its own example asks which recording has the more sudden and startling event). The LLM
proposes such a question for a slot and names the `feature` it compares (one to three
words taken from the events' one-line descriptions, e.g. "sudden", "high-pitched"). The
check, with words compared by `stem` (lower case, "-er"/"-est"/"-ly" comparatives
removed, "noisier" -> "noisy"):

1. `feature` has content words (`feature_missing`), all of them appear in the question
   (`feature_not_in_question`), and the question asks for more of the feature, not less
   ("less", "fewer", "not", "without", "lacks" -> `feature_negated`).
2. Each clip's support for the feature comes from its annotated events: an event whose
   description contains every feature word supports it when the annotators say the event
   is present (`yes`); when its presence is not known it may (`maybe`); absent events and
   events without a description never do. A clip is `yes` if one event is, else `maybe`
   if one is, else `no`. A feature no clip supports is `feature_unsupported`.
3. The answer must be the clip that supports the feature when the other does not
   (`first` for yes/no, `second` for no/yes), and `unclear` otherwise (both support it, or
   one is only `maybe`): the notes cannot say which has more of it. Anything else is
   `answer_mismatch`; answers outside first/second/unclear are `answer_not_in_set`.

Swapping the clips swaps the supports, so the label maps first <-> second like the other
clip-choice kinds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pipeline.tasks.nlar.events import EventAnnotation

KIND = "acoustic_compare"
FEATURE_MISSING = "feature_missing"
FEATURE_NOT_IN_QUESTION = "feature_not_in_question"
FEATURE_NEGATED = "feature_negated"
FEATURE_UNSUPPORTED = "feature_unsupported"

_WORD_RE = re.compile(r"[a-z]+")
# Words that carry no acoustic quality of their own.


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_NOT_FEATURE = _word_set(
    "a an the and or of with in on at to by more most much sound sounds sounding noise "
    "event events recording recordings one clip which very"
)
_NEGATION_RE = re.compile(r"\b(?:less|least|fewer|fewest|not|no|without|lacks?|lacking)\b", re.I)


def stem(word: str) -> str:
    """A comparison form of a word: 'sharper' -> 'sharp', 'noisier' -> 'noisy', 'bigger' -> 'big'."""
    word = word.lower()
    for suffix, replacement in (("iest", "y"), ("ier", "y"), ("ily", "y")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + replacement
    for suffix in ("est", "er", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            base = word[: -len(suffix)]
            if len(base) >= 4 and base[-1] == base[-2] and base[-1] not in "ls":
                base = base[:-1]  # bigger -> big, but shrill stays shrill
            return base
    return word


def stems(text: str) -> set[str]:
    return {stem(word) for word in _WORD_RE.findall(text.lower())}


def feature_terms(feature: str) -> list[str]:
    """The feature's content words, stemmed ("more high-pitched" -> ['high', 'pitched'])."""
    return [stem(w) for w in _WORD_RE.findall(feature.lower()) if w not in _NOT_FEATURE]


def clip_support(
    terms: list[str], events: Mapping[str, EventAnnotation], descriptions: Mapping[str, str | None]
) -> tuple[str, list[str]]:
    """(`yes` | `maybe` | `no`, the supporting events) for one clip."""
    yes, maybe = [], []
    for name, annotation in events.items():
        description = descriptions.get(name)
        if not description or annotation.present is False:
            continue
        if set(terms) <= stems(description):
            (yes if annotation.present is True else maybe).append(name)
    if yes:
        return "yes", yes
    return ("maybe", maybe) if maybe else ("no", [])


def label(first_support: str, second_support: str) -> str:
    if (first_support, second_support) == ("yes", "no"):
        return "first"
    if (first_support, second_support) == ("no", "yes"):
        return "second"
    return "unclear"


def check(
    question: str,
    feature: str,
    first: Mapping[str, EventAnnotation],
    second: Mapping[str, EventAnnotation],
    descriptions: Mapping[str, str | None],
) -> tuple[list[str], str | None, dict[str, object]]:
    """(reason codes, expected answer or None, facts about the supports) for one question."""
    terms = feature_terms(feature)
    if not terms:
        return [FEATURE_MISSING], None, {"feature": feature}
    reasons = []
    if not set(terms) <= stems(question):
        reasons.append(FEATURE_NOT_IN_QUESTION)
    if _NEGATION_RE.search(question):
        reasons.append(FEATURE_NEGATED)
    support1, events1 = clip_support(terms, first, descriptions)
    support2, events2 = clip_support(terms, second, descriptions)
    facts: dict[str, object] = {
        "feature": feature,
        "feature_support": {
            "first": {"support": support1, "events": events1},
            "second": {"support": support2, "events": events2},
        },
    }
    if support1 == support2 == "no":
        return [*reasons, FEATURE_UNSUPPORTED], None, facts
    return reasons, label(support1, support2), facts


# Quality adjectives the offline rule may propose (an LLM picks its own words).
QUALITY_WORDS = _word_set(
    "loud soft quiet sharp short brief long high low deep shrill piercing bright harsh "
    "steady quick dense resonant clear hollow metallic flat brassy irregular rising "
    "whining hard sudden startling strained broad rough smooth rhythmic"
)


def distinguishing_feature(
    event: str,
    first: Mapping[str, EventAnnotation],
    second: Mapping[str, EventAnnotation],
    descriptions: Mapping[str, str | None],
) -> str | None:
    """A quality word of `event`'s description that only one clip supports, else any.

    Used by the offline rule (which must propose a feature as the LLM does); quality
    adjectives (`QUALITY_WORDS`) are preferred; None when the event has no description.
    """
    found = _WORD_RE.findall((descriptions.get(event) or "").lower())
    words = [w for w in found if w in QUALITY_WORDS]
    # A description without a listed quality word: its other content words, in order.
    words += [w for w in found if len(w) >= 4 and w not in _NOT_FEATURE and w not in words]
    for word in words:
        supports = {clip_support([stem(word)], e, descriptions)[0] for e in (first, second)}
        if supports == {"yes", "no"}:
            return word
    return words[0] if words else None
