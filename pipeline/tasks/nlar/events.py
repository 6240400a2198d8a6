"""Per-event annotations of a Clotho-AQA clip, cleaned from its question-answer rows.

Clotho-AQA asks 6 questions per clip and 3 annotators answer each. We vote each
question (majority answer; ties are dropped and recorded, see `aqa_votes`) and read
three kinds of facts about a sound event out of the voted questions:

* presence  - yes/no questions ("Is a dog barking?")
* count     - "How many ..." questions with a number answer ("three", "3")
* position  - "When does ..." questions answered beginning / middle / end / throughout,
              and yes/no questions naming a position ("Does the dog bark at the end?")

The event a question is about is the first sound event of the shipped lexicon named in
it (so "Are seagulls calling?" and "When do the gulls call?" are one event); a question
naming no lexicon event keeps its own words minus the question scaffolding. Anything we
cannot use becomes an `AnnotationIssue` with a reason code that the task records in
`rejects`; facts that contradict each other are dropped (the event's field becomes
unknown, so questions about it are answered "unclear") and recorded too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.tasks.reasonaqa.aqa_votes import YES_NO, VotedQuestion, vote_questions
from pipeline.tasks.reasonaqa.lexicon import first_event_in_text

POSITIONS = ("beginning", "middle", "end", "throughout")
_POSITION_WORDS = {"beginning": "beginning", "start": "beginning", "middle": "middle", "end": "end"}
_POSITION_PHRASE_RE = re.compile(
    r"\b(?:(?:at|in|near|towards?) the (?P<where>beginning|start|middle|end)|(?P<all>throughout))\b",
    re.IGNORECASE,
)
_COUNT_RE = re.compile(r"^\s*how many\b", re.IGNORECASE)
_WHEN_RE = re.compile(r"^\s*when\b", re.IGNORECASE)
_YES_NO_QUESTION_RE = re.compile(
    r"^\s*(?:is|are|was|were|does|do|did|can|could|has|have)\b", re.IGNORECASE
)
_SCAFFOLDING_RE = re.compile(
    r"^(?:how many times (?:does|do|did|is|are)|how many|when (?:does|do|did|is|are|can)"
    r"|(?:is|are|was|were) there|is|are|was|were|does|do|did|can|could|has|have)\s+",
    re.IGNORECASE,
)
_FILLER_RE = re.compile(
    r"\b(?:a|an|the|any|some|someone|there|be|can|heard|hear|you|in the recording|"
    r"in the audio|are there|is there)\b",
    re.IGNORECASE,
)
NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
NUMBER_WORDS.update({"no": 0, "none": 0, "once": 1, "twice": 2, "thrice": 3})


@dataclass
class EventAnnotation:
    """What the annotators' majority says about one sound event in one clip."""

    event: str
    present: bool | None = None
    count: int | None = None
    position: str | None = None  # one of POSITIONS
    not_positions: list[str] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        """Plain words for prompts, e.g. 'present, 3 times, at the end'."""
        if self.present is None:
            parts = ["presence not annotated"]
        else:
            parts = ["present" if self.present else "absent"]
        if self.count is not None:
            parts.append(f"{self.count} time{'s' if self.count != 1 else ''}")
        if self.position == "throughout":
            parts.append("throughout")
        elif self.position is not None:
            parts.append(f"at the {self.position}")
        parts.extend(f"not at the {where}" for where in self.not_positions)
        return ", ".join(parts)

    def as_fact(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "present": self.present,
            "count": self.count,
            "position": self.position,
            "not_positions": list(self.not_positions),
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True)
class AnnotationIssue:
    """A question (or a combination of answers) that gave no usable fact."""

    question: str
    reason: str  # majority_tie | unsupported_question | count_not_numeric | ...
    detail: str
    answers: tuple[str, ...] = ()


def parse_count(answer: str) -> int | None:
    text = answer.strip().lower()
    if text.isdigit():
        return int(text)
    return NUMBER_WORDS.get(text)


def event_name(question: str) -> str:
    """The sound event a question is about: a lexicon event, else its own content words."""
    known = first_event_in_text(question)
    if known is not None:
        return known.event
    text = _POSITION_PHRASE_RE.sub(" ", question.strip().rstrip("?").strip())
    text = _SCAFFOLDING_RE.sub("", text)
    text = _FILLER_RE.sub(" ", text)
    return " ".join(text.lower().split())


def annotate_clip(
    qa: Iterable[Mapping[str, Any]],
) -> tuple[list[EventAnnotation], list[AnnotationIssue]]:
    """A clip's events (first-mention order) and the issues met on the way."""
    events: dict[str, EventAnnotation] = {}
    issues: list[AnnotationIssue] = []
    for voted in vote_questions(qa):
        if voted.is_tie:
            issues.append(
                AnnotationIssue(
                    voted.question,
                    "majority_tie",
                    f"answers {list(voted.answers)} have no majority",
                    voted.answers,
                )
            )
            continue
        name = event_name(voted.question)
        if not name:
            issues.append(
                AnnotationIssue(voted.question, "no_event", "names no sound event", voted.answers)
            )
            continue
        fact = _read_fact(voted)
        if isinstance(fact, AnnotationIssue):
            issues.append(fact)
            continue
        annotation = events.setdefault(name, EventAnnotation(event=name))
        kind, value = fact
        annotation.evidence.append(
            {
                "question": voted.question,
                "answers": list(voted.answers),
                "majority": voted.majority,
                "kind": kind,
            }
        )
        conflict = _apply(annotation, kind, value)
        if conflict:
            issues.append(AnnotationIssue(voted.question, "conflicting_annotations", conflict))
    for annotation in events.values():
        conflict = _reconcile(annotation)
        if conflict:
            issues.append(AnnotationIssue(annotation.event, "conflicting_annotations", conflict))
    return list(events.values()), issues


def _read_fact(voted: VotedQuestion) -> tuple[str, Any] | AnnotationIssue:
    answer = voted.majority or ""
    question = voted.question
    if _COUNT_RE.match(question):
        count = parse_count(answer)
        if count is None:
            return AnnotationIssue(
                question,
                "count_not_numeric",
                f"majority answer {answer!r} is not a number",
                voted.answers,
            )
        return "count", count
    if _WHEN_RE.match(question):
        if answer not in POSITIONS:
            return AnnotationIssue(
                question,
                "position_not_closed",
                f"majority answer {answer!r} is not one of {', '.join(POSITIONS)}",
                voted.answers,
            )
        return "position", answer
    if _YES_NO_QUESTION_RE.match(question):
        if answer not in YES_NO:
            return AnnotationIssue(
                question, "not_yes_no", f"majority answer {answer!r} is not yes/no", voted.answers
            )
        where = _POSITION_PHRASE_RE.search(question)
        if where:
            position = (
                "throughout"
                if where.group("all")
                else _POSITION_WORDS[where.group("where").lower()]
            )
            return ("position", position) if answer == "yes" else ("not_position", position)
        return "presence", answer == "yes"
    return AnnotationIssue(
        question, "unsupported_question", "not a yes/no, how-many or when question", voted.answers
    )


def _apply(annotation: EventAnnotation, kind: str, value: Any) -> str | None:
    """Record one fact; returns a conflict description when it contradicts an earlier one."""
    if kind == "presence":
        if annotation.present is not None and annotation.present != value:
            annotation.present = None
            return f"{annotation.event}: presence answered both yes and no"
        annotation.present = value
    elif kind == "count":
        if annotation.count is not None and annotation.count != value:
            annotation.count = None
            return f"{annotation.event}: two different counts"
        annotation.count = value
    elif kind == "position":
        if annotation.position is not None and annotation.position != value:
            annotation.position = None
            return f"{annotation.event}: two different positions"
        annotation.position = value
    elif kind == "not_position" and value not in annotation.not_positions:
        annotation.not_positions.append(value)
    return None


def _reconcile(annotation: EventAnnotation) -> str | None:
    """Derive presence from counts/positions; drop facts that contradict each other."""
    heard = (
        annotation.count is not None and annotation.count > 0
    ) or annotation.position is not None
    if annotation.count == 0:
        if annotation.present is True or annotation.position is not None:
            annotation.present = annotation.count = annotation.position = None
            return f"{annotation.event}: count 0 but annotated as heard"
        annotation.present = False
        return None
    if annotation.present is False and heard:
        annotation.present = annotation.count = annotation.position = None
        return f"{annotation.event}: annotated absent but has a count or position"
    if annotation.position is not None and annotation.position in annotation.not_positions:
        annotation.position = None
        return f"{annotation.event}: position both affirmed and denied"
    if heard:
        annotation.present = True
    return None
