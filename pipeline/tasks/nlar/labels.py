"""NLAR question kinds, their families, label logic and the swapped-pair transformation.

A question is a *slot*: (kind, event). For the annotation kinds below the answer is
computed from the two clips' event annotations (`events.EventAnnotation`, or None when a
clip's annotators were never asked about the event) and is always in the kind's closed
answer set. "unclear" is a real answer: it is given exactly when the annotations do not
settle the question.

| kind             | family    | question                               | answers                                     | order-dependent |
|------------------|-----------|----------------------------------------|---------------------------------------------|-----------------|
| which_contains   | presence  | which recording contains X?            | first, second, both, neither, unclear       | yes             |
| both_contain     | presence  | do both recordings contain X?          | yes, no, unclear                            | no              |
| where_occurs     | presence  | when does X occur, in the one with it? | beginning, middle, end, throughout, unclear | no              |
| more_count       | frequency | which recording has more X?            | first, second, same, unclear                | yes             |
| total_count      | frequency | how many X across both recordings?     | 0, 1, 2, … , unclear                        | no              |
| acoustic_compare | acoustic  | which recording has the more <feature> sound? | first, second, unclear               | yes             |

The three families are APT's (presence, frequency, acoustic features); "when" questions
count as presence (where in the clip the event is present). `acoustic_compare` is
labelled by `acoustic` from the LLM's chosen feature and the event descriptions, not here.

Swapping the clips maps first <-> second for order-dependent kinds and leaves every
other answer alone (`swap_answer`); `label(kind, b, a) == swap_answer(kind, label(kind,
a, b))` holds for every pair of annotations (`check_swap`; the tests run it over every
combination), and each swapped twin is checked against the label recomputed on the
swapped clips (`questions.swapped_draft`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.tasks.nlar.acoustic import KIND as ACOUSTIC_KIND
from pipeline.tasks.nlar.events import POSITIONS, EventAnnotation

UNCLEAR = "unclear"
KINDS = ("which_contains", "both_contain", "more_count", "where_occurs", "total_count")
FAMILIES = {
    "presence": ("which_contains", "both_contain", "where_occurs"),
    "frequency": ("more_count", "total_count"),
    "acoustic": (ACOUSTIC_KIND,),
}
FAMILY_OF = {kind: family for family, kinds in FAMILIES.items() for kind in kinds}
ORDER_DEPENDENT = frozenset({"which_contains", "more_count", ACOUSTIC_KIND})
ANSWER_TYPES = {
    "which_contains": "clip-choice",
    "both_contain": "yes-no",
    "more_count": "clip-choice",
    "where_occurs": "position",
    "total_count": "count",
    ACOUSTIC_KIND: "clip-choice",
}
ANSWER_SETS = {
    "which_contains": ("first", "second", "both", "neither", UNCLEAR),
    "both_contain": ("yes", "no", UNCLEAR),
    "more_count": ("first", "second", "same", UNCLEAR),
    "where_occurs": (*POSITIONS, UNCLEAR),
    "total_count": ("0", "1", "2", "…", UNCLEAR),  # any non-negative integer
    ACOUSTIC_KIND: ("first", "second", UNCLEAR),
}
KIND_HINTS = {
    "which_contains": "Ask which of the two recordings contains the event.",
    "both_contain": "Ask whether both recordings contain the event.",
    "more_count": "Ask which recording has more occurrences of the event.",
    "where_occurs": "Ask when, in the recording that contains it, the event occurs.",
    "total_count": "Ask how many times the event occurs in the two recordings together.",
    ACOUSTIC_KIND: (
        "Ask which recording has the sound with more of an acoustic quality (pitch, timbre,"
        " loudness, rhythm, suddenness) named in the description of the event; give that"
        " quality as `feature`, in the description's words."
    ),
}
_SWAP = {"first": "second", "second": "first"}


@dataclass(frozen=True)
class Slot:
    kind: str
    event: str


def _present(annotation: EventAnnotation | None) -> bool | None:
    return None if annotation is None else annotation.present


def _count(annotation: EventAnnotation | None) -> int | None:
    """Occurrences when known: an absent event occurs 0 times."""
    if annotation is None:
        return None
    if annotation.present is False:
        return 0
    return annotation.count


def label(kind: str, first: EventAnnotation | None, second: EventAnnotation | None) -> str:
    """The answer for a slot given the two clips' annotations of its event, in order."""
    if kind == "which_contains":
        p1, p2 = _present(first), _present(second)
        if p1 is None or p2 is None:
            return UNCLEAR
        return {(True, True): "both", (True, False): "first", (False, True): "second"}.get(
            (p1, p2), "neither"
        )
    if kind == "both_contain":
        p1, p2 = _present(first), _present(second)
        if p1 is False or p2 is False:
            return "no"
        if p1 is True and p2 is True:
            return "yes"
        return UNCLEAR
    if kind == "more_count":
        c1, c2 = _count(first), _count(second)
        if c1 is None or c2 is None:
            return UNCLEAR
        return "first" if c1 > c2 else "second" if c2 > c1 else "same"
    if kind == "where_occurs":
        holder = _sole_holder(first, second)
        if holder is None or holder.position is None:
            return UNCLEAR
        return holder.position
    if kind == "total_count":
        c1, c2 = _count(first), _count(second)
        return UNCLEAR if c1 is None or c2 is None else str(c1 + c2)
    raise ValueError(f"unknown NLAR question kind {kind!r}")


def _sole_holder(
    first: EventAnnotation | None, second: EventAnnotation | None
) -> EventAnnotation | None:
    if _present(first) is True and _present(second) is False:
        return first
    if _present(second) is True and _present(first) is False:
        return second
    return None


def applicable(kind: str, first: EventAnnotation | None, second: EventAnnotation | None) -> bool:
    """Whether the question makes sense for this pair (not whether its answer is known)."""
    if first is None and second is None:
        return False
    if kind == "where_occurs":
        # Only well-posed when exactly one clip has the event.
        return _sole_holder(first, second) is not None
    if kind in ("more_count", "total_count"):
        return any(
            a is not None and (a.count is not None or a.present is False) for a in (first, second)
        )
    return True


def swap_answer(kind: str, answer: str) -> str:
    """The answer for the same question with the two clips swapped."""
    if kind in ORDER_DEPENDENT:
        return _SWAP.get(answer, answer)
    return answer


def check_swap(
    kind: str, answer: str, first: EventAnnotation | None, second: EventAnnotation | None
) -> bool:
    """The transformed answer equals the label recomputed on the swapped clips."""
    return swap_answer(kind, answer) == label(kind, second, first)


def answer_in_set(kind: str, answer: str) -> bool:
    if kind == "total_count":
        return answer == UNCLEAR or answer.isdigit()
    return answer in ANSWER_SETS[kind]
