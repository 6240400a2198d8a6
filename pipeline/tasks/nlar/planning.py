"""Which questions to ask about a clip pair, in which order (`slot_queue`).

A pair's queue mixes APT's three families round-robin (presence, frequency, acoustic),
so the first five slots asked cover all that the annotations allow. Within a family the
kinds rotate; within a kind, candidates whose answer has been planned least often so far
in the run come first (`AnswerTally`), and a candidate whose answer is already planned
`BALANCE_SLACK` times more than its opposite (yes/no, first/second) is deferred behind
every other settled slot, so both answers of `both_contain` and both clips of the
clip-choice kinds occur where the annotations allow them. Slots answered "unclear" come
last, at most `MAX_UNCLEAR` of them (unclear is a valid answer, but unannotated events
would otherwise swamp a pair). The task asks the first five, then, on a re-ask, the failed slots again
followed by the rest of the queue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from pipeline.tasks.nlar.acoustic import KIND as ACOUSTIC_KIND
from pipeline.tasks.nlar.events import EventAnnotation
from pipeline.tasks.nlar.labels import FAMILIES, UNCLEAR, Slot, applicable, label

MAX_PER_KIND = 2  # settled slots of one annotation kind per pair
MAX_ACOUSTIC = 3  # acoustic slots per pair (one per described event)
MAX_UNCLEAR = 2  # annotation slots answered "unclear" per pair
BALANCE_SLACK = 2  # how far one answer may run ahead of its opposite before deferral
OPPOSITES = {
    "both_contain": {"yes": "no", "no": "yes"},
    "which_contains": {"first": "second", "second": "first"},
    "more_count": {"first": "second", "second": "first"},
}


class AnswerTally:
    """How often each (kind, answer) has been planned so far in a run."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def add(
        self,
        slots: list[Slot],
        first: Mapping[str, EventAnnotation],
        second: Mapping[str, EventAnnotation],
    ) -> None:
        for slot in slots:
            if slot.kind != ACOUSTIC_KIND:
                self.counts[
                    (slot.kind, label(slot.kind, first.get(slot.event), second.get(slot.event)))
                ] += 1

    def __getitem__(self, key: tuple[str, str]) -> int:
        return self.counts[key]

    def overused(self, kind: str, answer: str) -> bool:
        opposite = OPPOSITES.get(kind, {}).get(answer)
        if opposite is None:
            return False
        return self.counts[(kind, answer)] - self.counts[(kind, opposite)] >= BALANCE_SLACK


def _rotate(queues: list[list[Slot]]) -> list[Slot]:
    """Interleave queues: one from each in turn, keeping each queue's order."""
    merged: list[Slot] = []
    for round_index in range(max((len(q) for q in queues), default=0)):
        merged += [q[round_index] for q in queues if round_index < len(q)]
    return merged


def slot_queue(
    first: Mapping[str, EventAnnotation],
    second: Mapping[str, EventAnnotation],
    described: set[str],
    tally: AnswerTally | None = None,
) -> list[Slot]:
    """Every slot worth asking for the pair, best first (see the module docstring).

    `described`: events with a usable acoustic description (acoustic slots need one).
    """
    tally = tally or AnswerTally()
    events = sorted(set(first) | set(second), key=lambda e: (not (e in first and e in second), e))
    settled: dict[str, list[Slot]] = {}
    unclear: list[Slot] = []
    deferred: list[Slot] = []
    for kind in (k for family in ("presence", "frequency") for k in FAMILIES[family]):
        candidates = []
        for event in events:
            a, b = first.get(event), second.get(event)
            if not applicable(kind, a, b):
                continue
            answer = label(kind, a, b)
            if answer == UNCLEAR:
                unclear.append(Slot(kind, event))
            elif tally.overused(kind, answer):
                deferred.append(Slot(kind, event))
            else:
                candidates.append((tally[(kind, answer)], Slot(kind, event)))
        candidates.sort(key=lambda pair: pair[0])  # stable: event order breaks ties
        settled[kind] = [slot for _, slot in candidates[:MAX_PER_KIND]]
        deferred += [slot for _, slot in candidates[MAX_PER_KIND:]]
    # Acoustic: events heard (present) in exactly one clip first: their qualities contrast.
    heard = [
        e
        for e in events
        if e in described
        and any(x is not None and x.present is True for x in (first.get(e), second.get(e)))
    ]
    heard.sort(
        key=lambda e: sum(
            x is not None and x.present is True for x in (first.get(e), second.get(e))
        )
    )
    acoustic = [Slot(ACOUSTIC_KIND, e) for e in heard[:MAX_ACOUSTIC]]
    presence = _rotate([settled[k] for k in FAMILIES["presence"]])
    frequency = _rotate([settled[k] for k in FAMILIES["frequency"]])
    # Unclear slots: spread over kinds too, so one kind does not take both places.
    unclear_spread = _rotate([[s for s in unclear if s.kind == k] for k in settled])
    deferred_spread = _rotate([[s for s in deferred if s.kind == k] for k in settled])
    return (
        _rotate([presence, frequency, acoustic])
        + deferred_spread[: MAX_PER_KIND * len(settled)]
        + unclear_spread[:MAX_UNCLEAR]
    )
