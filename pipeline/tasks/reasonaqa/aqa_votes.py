"""Majority answers of Clotho-AQA's annotators (3 answers per question).

Used by ReasonAQA's binary items and NLAR's event annotations, so both tasks agree on
what the annotators said. A question whose answers have no single most frequent value
(e.g. yes / no / maybe, or two answers that disagree) is a tie: it carries no majority
and each caller records it as a reject with reason `majority_tie`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

YES_NO = ("yes", "no")


@dataclass(frozen=True)
class VotedQuestion:
    question: str
    answers: tuple[str, ...]  # normalised, in file order
    majority: str | None  # None when the vote is tied

    @property
    def is_tie(self) -> bool:
        return self.majority is None

    @property
    def agreement(self) -> float:
        """Share of annotators who gave the majority answer (0 for a tie)."""
        if self.majority is None or not self.answers:
            return 0.0
        return self.answers.count(self.majority) / len(self.answers)


def normalise_answer(answer: str) -> str:
    return " ".join(answer.lower().strip().rstrip(".!?").split())


def majority(answers: Iterable[str]) -> str | None:
    counts = Counter(answers).most_common()
    if not counts:
        return None
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None
    return counts[0][0]


def vote_questions(qa: Iterable[Mapping[str, Any]]) -> list[VotedQuestion]:
    """Group a clip's QA rows by question (first-appearance order) and vote each."""
    grouped: dict[str, list[str]] = {}
    for pair in qa:
        question = " ".join(str(pair["question"]).split())
        grouped.setdefault(question, []).append(normalise_answer(str(pair["answer"])))
    return [
        VotedQuestion(question=question, answers=tuple(answers), majority=majority(answers))
        for question, answers in grouped.items()
    ]
