"""Order words in NLAR questions: which are references to clip 1 / clip 2, which are not.

A listener hears two recordings, "the first" (clip 1) and "the second" (clip 2); the APT
paper's own questions use that phrasing ("which recording ... the first or the second").
Every order word in a question (`first`, `second`, `third`, `last`, `former`, `latter`,
`1st`, `2nd`, `3rd`, and `recording 1`-style numbers) is classified:

* option — an ordinal listed with the other ordinal as the answer choices: "first or
  second", "the first, the second, both or neither", "first and second". Neutral: it names
  both clips, so the clip order does not change its meaning.
* clip — `first`/`second` (or `1st`/`2nd`) followed by a clip noun ("the first
  recording", "the second one", "the 2nd clip"), or "the first"/"the second" closing a
  phrase ("... louder than in the second?"). It maps to clip 1 / clip 2, so the swapped
  twin of the question swaps it (`swap_clip_references`).
* anything else is an order reference that does not map to clip 1 / clip 2 and the
  question is rejected (`order_reference`): ordinals of events or time ("the first bark",
  "at first", "for a second", "the second half"), a third or last recording, "former" /
  "latter" (they refer to the sentence, not to the clips), and numbered clips ("recording
  2"), which the twin transformation does not rewrite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ORDINAL = r"(?:first|second|1st|2nd)"
_CLIP_NOUN = r"(?:audio\s+)?(?:recordings?|clips?|ones?|audios?|samples?|tracks?|sound\s+files?)"
_OPTION_RE = re.compile(
    rf"\b(?:the\s+)?({_ORDINAL})\s*(?:,|/|\bor\b|\band\b|\bnor\b)\s*(?:the\s+)?({_ORDINAL})\b",
    re.IGNORECASE,
)
_CLIP_RE = re.compile(
    rf"\b({_ORDINAL})(?=\s+{_CLIP_NOUN}\b)|\bthe\s+({_ORDINAL})(?=\s*(?:[?.,;:!)]|$))",
    re.IGNORECASE,
)
_ORDER_WORD_RE = re.compile(
    r"\b(?:first|second|third|fourth|last|former|latter|1st|2nd|3rd|4th)\b"
    r"|\b(?:recording|clip|audio|track|sample)\s*(?:#\s*)?(?:\d+|one|two|three)\b",
    re.IGNORECASE,
)
_SWAPPED = {"first": "second", "second": "first", "1st": "2nd", "2nd": "1st"}


@dataclass(frozen=True)
class OrderWord:
    start: int
    end: int
    text: str
    role: str  # option | clip | other


def order_words(question: str) -> list[OrderWord]:
    """Every order word of the question with its role, in text order."""
    option_spans: set[tuple[int, int]] = set()
    for match in _OPTION_RE.finditer(question):
        option_spans |= {match.span(1), match.span(2)}
    clip_spans = {
        match.span(group)
        for match in _CLIP_RE.finditer(question)
        for group in (1, 2)
        if match.group(group)
    }
    words = []
    for match in _ORDER_WORD_RE.finditer(question):
        span = match.span()
        role = "option" if span in option_spans else "clip" if span in clip_spans else "other"
        words.append(OrderWord(span[0], span[1], match.group(), role))
    return words


def unmapped_order_words(question: str) -> list[str]:
    """Order words that do not map to clip 1 / clip 2 (non-empty = `order_reference`)."""
    return [word.text for word in order_words(question) if word.role == "other"]


def has_clip_references(question: str) -> bool:
    return any(word.role == "clip" for word in order_words(question))


def swap_clip_references(question: str) -> str:
    """The question for the swapped clips: each clip reference first <-> second.

    Option lists stay as they are ("the first or the second" names both clips either way).
    """
    pieces, cursor = [], 0
    for word in order_words(question):
        if word.role != "clip":
            continue
        replacement = _SWAPPED[word.text.lower()]
        if word.text[0].isupper():
            replacement = replacement[0].upper() + replacement[1:]
        pieces += [question[cursor : word.start], replacement]
        cursor = word.end
    return "".join(pieces) + question[cursor:]
