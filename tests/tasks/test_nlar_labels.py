"""NLAR building blocks: annotation cleanup, label logic, swapped-pair transformation."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from pipeline.llm.records import LLMResult
from pipeline.tasks.nlar import labels, rules
from pipeline.tasks.nlar.events import EventAnnotation, annotate_clip, event_name, parse_count
from pipeline.tasks.nlar.task import (
    SWAP_INCONSISTENT,
    names_event,
    refers_by_position,
    slot_draft,
    swapped_draft,
)


def qa(*rows: tuple[str, str, str, str]) -> list[dict[str, str]]:
    return [{"question": q, "answer": a} for q, *answers in rows for a in answers]


def test_annotations_read_presence_counts_and_positions() -> None:
    events, issues = annotate_clip(
        qa(
            ("Are seagulls calling?", "yes", "yes", "no"),
            ("When do the gulls call?", "throughout", "throughout", "middle"),
            ("How many times does the dog bark?", "three", "3", "three"),
            ("Does the dog bark at the end?", "yes", "yes", "no"),
            ("Is a boat horn sounding?", "no", "no", "no"),
            ("Is a tractor running?", "no", "no", "yes"),
        )
    )
    assert issues == []
    facts = {e.event: (e.present, e.count, e.position) for e in events}
    assert facts == {
        "seagulls crying": (True, None, "throughout"),
        "dog barking": (True, 3, "end"),
        "horn honking": (False, None, None),
        "tractor running": (False, None, None),  # not in the lexicon: its own words
    }
    gulls = events[0]
    assert [e["majority"] for e in gulls.evidence] == ["yes", "throughout"]


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ((("Is a dog barking?", "yes", "no", "maybe"),), "majority_tie"),
        ((("How many birds can be heard?", "many", "many", "two"),), "count_not_numeric"),
        ((("When does the bell ring?", "twice", "twice", "end"),), "position_not_closed"),
        ((("Is a dog barking?", "loud", "loud", "yes"),), "not_yes_no"),
        ((("Why is the dog barking?", "angry", "angry", "angry"),), "unsupported_question"),
        ((("Is there?", "yes", "yes", "yes"),), "no_event"),
        (
            (
                ("Is a dog barking?", "no", "no", "no"),
                ("How many times does the dog bark?", "two", "two", "two"),
            ),
            "conflicting_annotations",
        ),
    ],
)
def test_each_annotation_issue_is_reported(rows: tuple, reason: str) -> None:
    events, issues = annotate_clip(qa(*rows))
    assert [issue.reason for issue in issues] == [reason]
    for event in events:  # a conflict leaves the event's facts unknown, never guessed
        assert event.present is None or reason != "conflicting_annotations"


def test_event_names_and_counts() -> None:
    assert event_name("When does the kettle whistle?") == "kettle whistling"
    assert event_name("Is a tractor running at the end?") == "tractor running"
    assert parse_count("Three") == 3 and parse_count("12") == 12 and parse_count("many") is None


def annotation_space() -> list[EventAnnotation | None]:
    space: list[EventAnnotation | None] = [None]
    for present, count, position in itertools.product(
        (None, True, False), (None, 0, 1, 3), (None, "beginning", "throughout")
    ):
        space.append(EventAnnotation("e", present=present, count=count, position=position))
    return space


@pytest.mark.parametrize("kind", labels.KINDS)
def test_swapped_answers_match_the_labels_of_the_swapped_pair(kind: str) -> None:
    for first, second in itertools.product(annotation_space(), repeat=2):
        answer = labels.label(kind, first, second)
        assert labels.answer_in_set(kind, answer)
        assert labels.check_swap(kind, answer, first, second)
        assert labels.swap_answer(kind, labels.swap_answer(kind, answer)) == answer


def test_labels_keep_unclear_where_annotations_do_not_settle() -> None:
    dog = EventAnnotation("dog", present=True, count=2, position="end")
    no_dog = EventAnnotation("dog", present=False)
    assert labels.label("which_contains", dog, no_dog) == "first"
    assert labels.label("which_contains", no_dog, dog) == "second"
    assert labels.label("which_contains", dog, None) == "unclear"
    assert labels.label("both_contain", no_dog, None) == "no"
    assert labels.label("both_contain", dog, None) == "unclear"
    assert labels.label("more_count", dog, no_dog) == "first"
    assert labels.label("more_count", dog, EventAnnotation("dog", present=True)) == "unclear"
    assert labels.label("total_count", dog, no_dog) == "2"
    assert labels.label("where_occurs", no_dog, dog) == "end"
    assert not labels.applicable("where_occurs", dog, dog)


def test_plan_slots_is_deterministic_and_mixes_kinds() -> None:
    first = {"dog barking": EventAnnotation("dog barking", present=True, count=2, position="end")}
    first["rain falling"] = EventAnnotation("rain falling", present=False)
    second = {"dog barking": EventAnnotation("dog barking", present=False)}
    second["rain falling"] = EventAnnotation("rain falling", present=True, position="throughout")
    second["owl hooting"] = EventAnnotation("owl hooting", present=True)
    slots = labels.plan_slots(first, second)
    assert slots == labels.plan_slots(first, second)
    assert len(slots) == 5
    kinds = [s.kind for s in slots]
    assert len(set(kinds)) == len(kinds)  # one slot per kind at most
    unclear = [
        s
        for s in slots
        if labels.label(s.kind, first.get(s.event), second.get(s.event)) == "unclear"
    ]
    assert len(unclear) <= 1


def test_question_checks() -> None:
    assert names_event("Which recording has the barking dog?", "dog barking")
    assert names_event("Is a tractor heard in both?", "tractor running")
    assert not names_event("Which recording is louder?", "dog barking")
    assert refers_by_position("Does the first recording contain rain?")
    assert not refers_by_position("Which recording contains rain: the first or the second?")


def _result(reply: dict[str, Any]) -> LLMResult:
    return LLMResult(
        item_key="pair",
        prompt_name="nlar/qa",
        prompt_version="v",
        model="m",
        backend="openai",
        status="ok",
        parsed=reply,
        call_key="c",
    )


def test_swapped_draft_transforms_and_a_broken_transformation_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    annotations = {
        "a": {"dog barking": EventAnnotation("dog barking", present=True)},
        "b": {"dog barking": EventAnnotation("dog barking", present=False)},
    }
    slot = labels.Slot("which_contains", "dog barking")
    reply = {
        "decline": False,
        "qa": [{"slot": 0, "question": "Which recording has a dog barking?", "answer": "first"}],
    }
    original = slot_draft(
        slot, 0, "a", "b", "test", _result(reply), annotations, {}, {"a": "a.wav", "b": "b.wav"}
    )
    assert original.reasons == [] and original.answer == "first"
    swapped = swapped_draft(original, slot, annotations)
    assert swapped.clip_ids == ["b", "a"] and swapped.answer == "second" and swapped.reasons == []
    assert swapped.facts["audio_paths"] == ["b.wav", "a.wav"] and swapped.facts["swapped"] is True
    assert swapped.facts["evidence"]["first"]["present"] is False
    monkeypatch.setattr(labels, "swap_answer", lambda kind, answer: answer)
    assert swapped_draft(original, slot, annotations).reasons == [SWAP_INCONSISTENT]


def test_offline_rules_describe_known_events_and_answer_with_the_labels() -> None:
    assert rules.describe_event_rule({"event": "dog barking"})["description"].startswith(
        "Short, sharp barks"
    )
    assert rules.describe_event_rule({"event": "tractor running"}) == {
        "decline": True,
        "description": "",
    }
    line = {
        "event": "dog barking",
        "present": True,
        "count": 2,
        "position": "end",
        "not_positions": [],
    }
    reply = rules.qa_rule(
        {
            "events1": [line],
            "events2": [{**line, "present": False, "count": None, "position": None}],
            "slots": [
                {"slot": 0, "kind": "which_contains", "event": "dog barking"},
                {"slot": 1, "kind": "total_count", "event": "dog barking"},
            ],
        }
    )
    assert [(q["slot"], q["answer"]) for q in reply["qa"]] == [(0, "first"), (1, "2")]
    assert all("dog barking" in q["question"] for q in reply["qa"])


def test_qa_prompt_renders_exactly() -> None:
    from pipeline.llm import PromptLibrary

    template = PromptLibrary.load().get("nlar/qa")
    dog = {
        "event": "dog barking",
        "summary": "present, 2 times, at the end",
        "description": "Sharp barks.",
    }
    text = template.render(
        {
            "events1": [dog],
            "events2": [{"event": "dog barking", "summary": "absent", "description": ""}],
            "slots": [
                {
                    "slot": 0,
                    "kind_hint": labels.KIND_HINTS["which_contains"],
                    "event": "dog barking",
                    "answer_set": ", ".join(labels.ANSWER_SETS["which_contains"]),
                }
            ],
        }
    )
    assert text == (
        "What annotators heard in the first recording:\n"
        "- dog barking: present, 2 times, at the end (sounds like: Sharp barks.)\n"
        "\n"
        "What annotators heard in the second recording:\n"
        "- dog barking: absent\n"
        "\n"
        "Write one natural question for each slot below. Each question must need both "
        "recordings, must name\n"
        "its sound event (you may describe it by how it sounds), and must not depend on which "
        "recording is\n"
        'played first: do not write "in the first recording ..."; "which recording ..." is '
        "fine.\n"
        'Give the slot\'s answer from its closed answer set; answer "unclear" when the notes '
        "above do not\n"
        "settle it.\n"
        '0. Ask which of the two recordings contains the event. Event: "dog barking". '
        "Answer set: first, second, both, neither, unclear.\n"
        'If the notes are unusable, reply {"decline": true, "qa": []}.\n'
        'Reply with JSON: {"decline": false, "qa": [{"slot": 0, "question": "...?", '
        '"answer": "..."}, ...]}'
    )
