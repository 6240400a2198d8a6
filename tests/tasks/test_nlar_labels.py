"""NLAR building blocks: annotation cleanup, label logic, swapped-pair transformation."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from pipeline.llm.records import LLMResult
from pipeline.tasks.common.base import item_id
from pipeline.tasks.nlar import labels, rules
from pipeline.tasks.nlar.events import EventAnnotation, annotate_clip, event_name, parse_count
from pipeline.tasks.nlar.planning import AnswerTally, slot_queue
from pipeline.tasks.nlar.questions import (
    SWAP_INCONSISTENT,
    PairState,
    names_event,
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


def test_slot_queue_is_deterministic_and_mixes_families() -> None:
    first = {"dog barking": EventAnnotation("dog barking", present=True, count=2, position="end")}
    first["rain falling"] = EventAnnotation("rain falling", present=False)
    second = {"dog barking": EventAnnotation("dog barking", present=False)}
    second["rain falling"] = EventAnnotation("rain falling", present=True, position="throughout")
    second["owl hooting"] = EventAnnotation("owl hooting", present=True)
    described = {"dog barking", "owl hooting"}
    queue = slot_queue(first, second, described)
    assert queue == slot_queue(first, second, described)
    # The first five rotate presence, frequency, acoustic.
    assert [labels.FAMILY_OF[s.kind] for s in queue[:3]] == ["presence", "frequency", "acoustic"]
    assert {labels.FAMILY_OF[s.kind] for s in queue[:5]} == {"presence", "frequency", "acoustic"}
    assert len(queue) == len(set(queue))
    acoustic = [s for s in queue if s.kind == "acoustic_compare"]
    assert {s.event for s in acoustic} == {"dog barking", "owl hooting"}  # described + heard
    per_kind = {k: sum(s.kind == k for s in queue) for k in labels.KINDS}
    assert max(per_kind.values()) <= 2 + 2  # settled (2) + deferred never both full here
    unclear = [
        s
        for s in queue
        if s.kind in labels.KINDS
        and labels.label(s.kind, first.get(s.event), second.get(s.event)) == "unclear"
    ]
    assert len(unclear) <= 2 and queue[-len(unclear) :] == unclear  # unclear comes last


def test_slot_queue_defers_an_answer_that_runs_ahead_of_its_opposite() -> None:
    rain = EventAnnotation("rain falling", present=True)
    no_rain = EventAnnotation("rain falling", present=False)
    dog = EventAnnotation("dog barking", present=True)
    first, second = {"rain falling": rain, "dog barking": dog}, {"rain falling": no_rain}
    second["dog barking"] = dog
    tally = AnswerTally()
    fresh = slot_queue(first, second, set(), tally)
    both = [s for s in fresh if s.kind == "both_contain"]
    assert [labels.label(s.kind, first[s.event], second[s.event]) for s in both] == ["yes", "no"]
    tally.counts[("both_contain", "yes")] = 2  # "yes" planned twice, "no" never
    leaning = slot_queue(first, second, set(), tally)
    both = [s for s in leaning if s.kind == "both_contain"]
    assert [labels.label(s.kind, first[s.event], second[s.event]) for s in both] == ["no", "yes"]
    # The deferred "yes" slot comes after every other settled slot.
    deferred = labels.Slot("both_contain", "dog barking")
    settled = [
        s
        for s in leaning
        if labels.label(s.kind, first.get(s.event), second.get(s.event)) != "unclear"
    ]
    assert settled[-1] == deferred


def test_question_checks() -> None:
    assert names_event("Which recording has the barking dog?", "dog barking")
    assert names_event("Is a tractor heard in both?", "tractor running")
    assert not names_event("Which recording is louder?", "dog barking")


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
    question = "Does the first recording or the second one have a dog barking?"
    reply = {
        "decline": False,
        "qa": [{"slot": 0, "question": question, "answer": "first", "feature": ""}],
    }
    state = PairState("a", "b", [slot])
    original = slot_draft(
        slot, 0, 0, state, "test", _result(reply), annotations, {}, {"a": "a.wav", "b": "b.wav"}
    )
    assert original.reasons == [] and original.answer == "first"
    swapped = swapped_draft(original, slot, annotations)
    assert swapped.clip_ids == ["b", "a"] and swapped.answer == "second" and swapped.reasons == []
    assert swapped.input == "Does the second recording or the first one have a dog barking?"
    assert swapped.facts["audio_paths"] == ["b.wav", "a.wav"] and swapped.facts["swapped"] is True
    assert swapped.facts["evidence"]["first"]["present"] is False
    assert swapped.facts["independent"] is False and original.facts["independent"] is True
    assert swapped.facts["twin_of"] == item_id(
        "nlar", ["a", "b"], "v", "qa:which_contains:dog barking:ask0"
    )
    monkeypatch.setattr(labels, "swap_answer", lambda kind, answer: answer)
    assert swapped_draft(original, slot, annotations).reasons == [SWAP_INCONSISTENT]


def test_offline_rules_describe_known_events_and_answer_with_the_labels() -> None:
    dog = rules.describe_event_rule({"event": "dog barking"})["description"]
    # The lexicon line has 10 words; APT's limit is under 10, so the articles go.
    assert dog == "Short, sharp barks in bursts with harsh, mid-pitched tone."
    assert len(dog.split()) == 9
    bell = rules.describe_event_rule({"event": "bell ringing"})["description"]
    assert bell == "A clear, resonant tone with a long ringing decay."  # 9 words: kept whole
    assert rules.describe_event_rule({"event": "tractor running"}) == {
        "decline": True,
        "description": "",
    }
    line = {
        "event": "dog barking",
        "description": dog,
        "present": True,
        "count": 2,
        "position": "end",
        "not_positions": [],
    }
    owl = {
        "event": "owl hooting",
        "description": "Soft, low, hollow hoots.",
        "present": True,
        "count": None,
        "position": None,
        "not_positions": [],
    }
    reply = rules.qa_rule(
        {
            "events1": [line],
            "events2": [{**line, "present": False, "count": None, "position": None}, owl],
            "slots": [
                {"slot": 0, "kind": "which_contains", "event": "dog barking"},
                {"slot": 1, "kind": "total_count", "event": "dog barking"},
                {"slot": 2, "kind": "acoustic_compare", "event": "dog barking"},
                {"slot": 3, "kind": "acoustic_compare", "event": "owl hooting"},
            ],
            "attempt": 0,
        }
    )
    answers = [(q["slot"], q["answer"], q["feature"]) for q in reply["qa"]]
    # "short" (dog, heard only in the first) and "soft" (owl, only in the second).
    assert answers == [(0, "first", ""), (1, "2", ""), (2, "first", "short"), (3, "second", "soft")]
    assert all("dog barking" in q["question"] for q in reply["qa"][:2])
    assert "short" in reply["qa"][2]["question"] and "soft" in reply["qa"][3]["question"]


def test_qa_prompt_renders_exactly() -> None:
    from pipeline.llm import PromptLibrary

    template = PromptLibrary.load().get("nlar/qa")
    dog = {
        "event": "dog barking",
        "summary": "present, 2 times, at the end",
        "description": "Sharp barks.",
    }
    variables = {
        "events1": [dog],
        "events2": [{"event": "dog barking", "summary": "absent", "description": ""}],
        "slots": [
            {
                "slot": 0,
                "kind_hint": labels.KIND_HINTS["which_contains"],
                "event": "dog barking",
                "answer_set": ", ".join(labels.ANSWER_SETS["which_contains"]),
            },
            {
                "slot": 1,
                "kind_hint": "Compare a quality.",
                "event": "dog barking",
                "answer_set": ", ".join(labels.ANSWER_SETS["acoustic_compare"]),
            },
        ],
        "attempt": 0,
    }
    first_ask = (
        "What annotators heard in the first recording:\n"
        "- dog barking: present, 2 times, at the end (sounds like: Sharp barks.)\n"
        "\n"
        "What annotators heard in the second recording:\n"
        "- dog barking: absent\n"
        "\n"
        "Write one natural question for each slot below. Each question must need both "
        "recordings.\n"
        'Refer to the recordings only as "the first recording" / "the second recording" (or '
        '"the first\n'
        'one", "the first or the second"); use no other ordinal ("the first bark", "at first", '
        '"the\n'
        "former\" are not allowed). Name the slot's sound event, except in acoustic questions, "
        "which may\n"
        "describe sounds by their quality instead.\n"
        'Give the slot\'s answer from its answer set; answer "unclear" when the notes above do '
        "not settle\n"
        'it. Set "feature" to the compared quality for acoustic slots and to "" for the others.\n'
        '0. Ask which of the two recordings contains the event. Event: "dog barking". '
        "Answer set: first, second, both, neither, unclear.\n"
        '1. Compare a quality. Event: "dog barking". Answer set: first, second, unclear.\n'
    )
    closing = (
        'If the notes are unusable, reply {"decline": true, "qa": []}.\n'
        'Reply with JSON: {"decline": false, "qa": [{"slot": 0, "question": "...?", '
        '"answer": "...", "feature": ""}, ...]}'
    )
    assert template.render(variables) == first_ask + closing
    # A re-ask differs only by its note, so it is another cached call.
    assert template.render({**variables, "attempt": 2}) == (
        first_ask
        + "This is ask 3 for these recordings: earlier questions for these slots did not pass\n"
        "the check, so write them anew.\n" + closing
    )
