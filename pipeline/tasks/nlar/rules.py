"""Offline rules for the NLAR prompts.

`describe_event_rule` answers from the shipped lexicon's one-line acoustic description
and declines events the lexicon does not know (their questions then go without a
description). `qa_rule` phrases each slot with a fixed question form per kind (two forms,
chosen by a hash of the pair's notes) and answers with the same label logic the task
uses to check answers, reading the structured facts the prompt variables carry; so
offline items always pass the answer check, and the check is exercised by real or
scripted endpoints.
"""

from __future__ import annotations

from typing import Any

from pipeline.tasks.common.base import stable_hash
from pipeline.tasks.nlar import labels
from pipeline.tasks.nlar.events import EventAnnotation
from pipeline.tasks.reasonaqa.lexicon import event_by_name

QUESTION_FORMS = {
    "which_contains": (
        "Which recording contains {event}: the first, the second, both or neither?",
        "In which of the two recordings can {event} be heard?",
    ),
    "both_contain": (
        "Can {event} be heard in both recordings?",
        "Do both recordings contain {event}?",
    ),
    "more_count": (
        "Which recording has more occurrences of {event}?",
        "In which recording does {event} happen more often?",
    ),
    "where_occurs": (
        "In the recording that contains {event}, when does it occur?",
        "When does {event} occur in the recording where it can be heard?",
    ),
    "total_count": (
        "How many times in total does {event} occur across the two recordings?",
        "Counting both recordings, how many times does {event} occur?",
    ),
}


def describe_event_rule(variables: dict[str, Any]) -> dict[str, Any]:
    known = event_by_name(str(variables["event"]))
    if known is None:
        return {"decline": True, "description": ""}
    return {"decline": False, "description": known.acoustic[:1].upper() + known.acoustic[1:] + "."}


def _annotations(lines: list[dict[str, Any]]) -> dict[str, EventAnnotation]:
    return {
        line["event"]: EventAnnotation(
            event=line["event"],
            present=line.get("present"),
            count=line.get("count"),
            position=line.get("position"),
            not_positions=list(line.get("not_positions") or []),
        )
        for line in lines
    }


def qa_rule(variables: dict[str, Any]) -> dict[str, Any]:
    first = _annotations(list(variables["events1"]))
    second = _annotations(list(variables["events2"]))
    qa = []
    for slot in variables["slots"]:
        kind, event = slot["kind"], slot["event"]
        forms = QUESTION_FORMS[kind]
        form = forms[
            int(stable_hash(variables["events1"], variables["events2"], event, length=8), 16)
            % len(forms)
        ]
        qa.append(
            {
                "slot": slot["slot"],
                "question": form.format(event=event),
                "answer": labels.label(kind, first.get(event), second.get(event)),
            }
        )
    return {"decline": False, "qa": qa}
