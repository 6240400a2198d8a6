"""Offline rules for the NLAR prompts.

`describe_event_rule` answers from the shipped lexicon's one-line acoustic description
(articles dropped when it would otherwise reach 10 words, the limit APT set) and declines
events the lexicon does not know (their questions then go without a description).
`qa_rule` phrases each slot with a fixed question form per kind (two forms, chosen by a
hash of the pair's notes; both use the paper's "the first or the second" phrasing where
they name the clips) and answers with the same label logic the task uses to check
answers, reading the structured facts the prompt variables carry. For acoustic slots it
proposes, as the LLM does, a feature word from the slot event's description
(`acoustic.distinguishing_feature`) and answers with `acoustic.check`. So offline items
pass the checks, and the checks are exercised by real or scripted endpoints.
"""

from __future__ import annotations

from typing import Any

from pipeline.tasks.common.base import stable_hash
from pipeline.tasks.nlar import acoustic, labels
from pipeline.tasks.nlar.events import EventAnnotation
from pipeline.tasks.nlar.task import MAX_DESCRIPTION_WORDS
from pipeline.tasks.reasonaqa.lexicon import event_by_name

QUESTION_FORMS = {
    "which_contains": (
        "Which recording contains {event}: the first, the second, both or neither?",
        "In which of the two recordings can {event} be heard, the first or the second?",
    ),
    "both_contain": (
        "Can {event} be heard in both recordings?",
        "Do both recordings contain {event}?",
    ),
    "more_count": (
        "Which recording has more occurrences of {event}?",
        "Does {event} happen more often in the first recording or in the second one?",
    ),
    "where_occurs": (
        "In the recording that contains {event}, when does it occur?",
        "When does {event} occur in the recording where it can be heard?",
    ),
    "total_count": (
        "How many times in total does {event} occur across the two recordings?",
        "Counting both recordings, how many times does {event} occur?",
    ),
    acoustic.KIND: (
        "Which recording has the more {feature} sound: the first or the second?",
        "Is the more {feature} sound in the first recording or in the second one?",
    ),
}
_ARTICLES = frozenset({"a", "an", "the"})


def _short(text: str) -> str:
    words = text.split()
    if len(words) > MAX_DESCRIPTION_WORDS:
        words = [w for w in words if w.lower() not in _ARTICLES]
    return " ".join(words)


def describe_event_rule(variables: dict[str, Any]) -> dict[str, Any]:
    known = event_by_name(str(variables["event"]))
    if known is None:
        return {"decline": True, "description": ""}
    text = _short(known.acoustic)
    return {"decline": False, "description": text[:1].upper() + text[1:] + "."}


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
    descriptions = {
        line["event"]: line.get("description") or None
        for line in [*variables["events1"], *variables["events2"]]
    }
    qa = []
    for slot in variables["slots"]:
        kind, event = slot["kind"], slot["event"]
        forms = QUESTION_FORMS[kind]
        form = forms[
            int(stable_hash(variables["events1"], variables["events2"], event, length=8), 16)
            % len(forms)
        ]
        if kind == acoustic.KIND:
            feature = acoustic.distinguishing_feature(event, first, second, descriptions) or ""
            question = form.format(feature=feature)
            _, expected, _ = acoustic.check(question, feature, first, second, descriptions)
            answer = expected or labels.UNCLEAR
        else:
            feature = ""
            question = form.format(event=event)
            answer = labels.label(kind, first.get(event), second.get(event))
        qa.append(
            {"slot": slot["slot"], "question": question, "answer": answer, "feature": feature}
        )
    return {"decline": False, "qa": qa}
