"""ReasonAQA building blocks: majority votes, lexicon, offline rules, MCQ layout, validators."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.llm.records import LLMResult
from pipeline.tasks.common import validators as v
from pipeline.tasks.reasonaqa import rules
from pipeline.tasks.reasonaqa.aqa_votes import majority, vote_questions
from pipeline.tasks.reasonaqa.drafts import (
    ANSWER_NOT_GROUNDED,
    COPIES_CAPTION,
    DISTRACTOR_IN_CAPTIONS,
    NOT_ONE_SENTENCE,
    detail_draft,
    difference_drafts,
    entailment_drafts,
    lay_out_mcq,
    mcq_draft,
)
from pipeline.tasks.reasonaqa.lexicon import caption_support, events_in_text

DOG_BIRDS = [
    "A dog barks while birds sing",
    "Birds chirp and a dog barks in the distance",
    "A distant dog barks with birdsong",
]
RAIN = ["Rain falls steadily on a tin roof", "Steady rain hits fabric overhead."]


def clip(captions: list[str], clip_id: str = "audiocaps:x_0") -> dict[str, Any]:
    return {
        "clip_id": clip_id,
        "source": "audiocaps",
        "source_split": "train",
        "audio_path": "train/Yx.wav",
        "captions": captions,
    }


def result(parsed: dict[str, Any] | None, status: str = "ok") -> LLMResult:
    return LLMResult(
        item_key="k",
        prompt_name="reasonaqa/x",
        prompt_version="v1",
        model="m",
        backend="openai",
        status=status,
        parsed=parsed,
        call_key="c1",
    )


def test_majority_vote_and_ties() -> None:
    assert majority(["yes", "yes", "no"]) == "yes"
    assert majority(["two", "many", "two"]) == "two"
    assert majority(["yes", "no", "maybe"]) is None
    assert majority(["yes", "no"]) is None
    voted = vote_questions(
        [
            {"question": "Is it raining?", "answer": "Yes"},
            {"question": "Is  it raining?", "answer": "no."},
            {"question": "Is it raining?", "answer": "yes"},
            {"question": "Is a dog barking?", "answer": "yes"},
            {"question": "Is a dog barking?", "answer": "no"},
        ]
    )
    assert [(q.question, q.answers, q.majority) for q in voted] == [
        ("Is it raining?", ("yes", "no", "yes"), "yes"),
        ("Is a dog barking?", ("yes", "no"), None),
    ]
    assert voted[0].agreement == pytest.approx(2 / 3) and voted[1].is_tie


def test_lexicon_ranks_events_by_caption_support() -> None:
    ranked = [(event.event, n) for event, n in caption_support(DOG_BIRDS)]
    assert ranked == [("dog barking", 3), ("birds chirping", 3)]  # ties: first mention wins
    assert [e.event for e in events_in_text("Is a kettle whistling?")] == [
        "kettle whistling",
        "whistle blowing",
    ]
    assert [e.event for e in events_in_text("Are seagulls calling?")] == ["seagulls crying"]


def test_mcq_rule_uses_the_main_event_and_uncontradicted_distractors() -> None:
    pool = ["birds chirping", "rain falling", "siren wailing", "dog barking", "piano playing"]
    reply = rules.mcq_rule({"captions": DOG_BIRDS, "focus": "events", "distractor_pool": pool})
    assert reply["decline"] is False
    assert reply["correct"] == "dog barking"
    # birds are in the captions, so they can never be a distractor
    assert reply["distractors"] == ["rain falling", "siren wailing", "piano playing"]
    sources = rules.mcq_rule(
        {
            "captions": DOG_BIRDS,
            "focus": "sources",
            "distractor_pool": ["a dog", "a cat", "a siren", "a train"],
        }
    )
    assert sources["correct"] == "a dog" and sources["distractors"] == [
        "a cat",
        "a siren",
        "a train",
    ]


def test_mcq_rule_declines_without_events_or_distractors() -> None:
    assert rules.mcq_rule(
        {"captions": ["Something odd."], "focus": "events", "distractor_pool": ["rain falling"] * 3}
    )["decline"]
    assert rules.mcq_rule(
        {"captions": DOG_BIRDS, "focus": "events", "distractor_pool": ["rain falling"]}
    )["decline"]


def test_entailment_rule_restates_denies_and_adds_an_unmentioned_event() -> None:
    reply = rules.entailment_rule(
        {"captions": DOG_BIRDS, "other_events": ["birds chirping", "rain falling"]}
    )
    by_label = {h["label"]: h["hypothesis"] for h in reply["hypotheses"]}
    assert set(by_label) == {"entailment", "contradiction", "neutral"}
    assert "dog barking" in by_label["entailment"] and "dog barking" in by_label["contradiction"]
    assert "rain falling" in by_label["neutral"]  # birds are mentioned, so not neutral


def test_difference_rule_tiers_and_decline_on_identical_events() -> None:
    reply = rules.difference_rule({"captions1": DOG_BIRDS, "captions2": RAIN})
    assert reply["short"] == "dog barking vs. rain falling"
    assert reply["sentence"] == (
        "The first recording has dog barking and birds chirping, while the second has rain falling."
    )
    assert "They share no sound event." in reply["detailed"]
    assert rules.difference_rule({"captions1": DOG_BIRDS, "captions2": DOG_BIRDS})["decline"]


@pytest.mark.parametrize("index", range(4))
def test_lay_out_mcq_puts_the_correct_option_at_the_index(index: int) -> None:
    text, options, answer = lay_out_mcq("Which?", "dog", ["cat", "cow", "owl"], index)
    assert options[index] == answer == f"{'abcd'[index]}) dog"
    assert text == "Which? " + " ".join(options)
    assert [o[:2] for o in options] == ["a)", "b)", "c)", "d)"]


def test_a_reply_with_too_few_distractors_is_laid_out_not_crashed_on() -> None:
    _text, options, answer = lay_out_mcq("Which?", "dog", ["cat"], 3)
    assert options == ["a) cat", "b) dog"] and answer == "b) dog"


def test_mcq_validator_rejects_a_distractor_the_captions_support() -> None:
    reply = {
        "decline": False,
        "question": "Which sound is heard?",
        "correct": "dog barking",
        "distractors": ["birds chirping", "rain", "a siren"],
    }
    draft = mcq_draft(clip(DOG_BIRDS), "train", "events", result(reply))
    assert draft.reasons == [DISTRACTOR_IN_CAPTIONS]
    ok = mcq_draft(
        clip(DOG_BIRDS),
        "train",
        "events",
        result({**reply, "distractors": ["rain", "a siren", "a train"]}),
    )
    assert ok.reasons == [] and ok.answer in ok.options and len(set(ok.options)) == 4


def test_mcq_validator_rejects_duplicate_or_missing_options() -> None:
    reply = {
        "decline": False,
        "question": "Which sound is heard?",
        "correct": "dog barking",
        "distractors": ["rain", "Rain", "a siren"],
    }
    assert v.OPTION_COUNT in mcq_draft(clip(DOG_BIRDS), "train", "events", result(reply)).reasons
    reply["distractors"] = ["rain", "a siren"]
    assert v.OPTION_COUNT in mcq_draft(clip(DOG_BIRDS), "train", "events", result(reply)).reasons


def test_declined_and_failed_calls_become_rejected_items() -> None:
    declined = mcq_draft(
        clip(DOG_BIRDS),
        "train",
        "events",
        result({"decline": True, "question": "", "correct": "", "distractors": []}),
    )
    assert declined.reasons == [v.LLM_DECLINED]
    failed = detail_draft(clip(DOG_BIRDS), "train", "events", result(None, status="http_error"))
    assert failed.reasons == [v.LLM_ERROR]


def test_detail_validator_rejects_an_ungrounded_answer() -> None:
    reply = {
        "decline": False,
        "question": "What can be heard here?",
        "answer": "A violin concerto is performed by a large orchestra in a hall.",
    }
    assert detail_draft(clip(DOG_BIRDS), "train", "events", result(reply)).reasons == [
        ANSWER_NOT_GROUNDED
    ]
    reply["answer"] = "A dog is barking repeatedly while small birds sing in the distance."
    assert detail_draft(clip(DOG_BIRDS), "train", "events", result(reply)).reasons == []


def test_difference_validator_checks_each_tier() -> None:
    reply = {
        "decline": False,
        "short": "dog barks in the first and rain falls in the second",
        "sentence": "The first has a dog. The second has rain.",
        "detailed": "A dog barks in the first.",
    }
    drafts = difference_drafts(clip(DOG_BIRDS, "a"), clip(RAIN, "b"), "train", result(reply))
    reasons = {d.subtask: d.reasons for d in drafts}
    assert reasons == {
        "difference-short": [v.TOO_LONG],
        "difference-sentence": [NOT_ONE_SENTENCE],
        "difference-detailed": [v.TOO_SHORT],
    }
    assert [d.clip_ids for d in drafts] == [["a", "b"]] * 3
    # Mellow's loaders special-case exactly these three instructions.
    assert [d.input for d in drafts] == [
        "explain the difference in few words",
        "explain the difference in a sentence",
        "explain the difference in detail",
    ]


def test_entailment_validator_rejects_a_copied_caption() -> None:
    reply = {
        "decline": False,
        "hypotheses": [
            {"hypothesis": "a dog barks while birds sing.", "label": "entailment"},
            {"hypothesis": "No dog can be heard at all.", "label": "contradiction"},
        ],
    }
    drafts = entailment_drafts(clip(DOG_BIRDS), "train", result(reply))
    assert [d.reasons for d in drafts] == [[COPIES_CAPTION], []]
    assert [d.answer for d in drafts] == ["a) It is definitely true", "c) It is definitely false"]
    assert [d.facts["label"] for d in drafts] == ["entailment", "contradiction"]
    assert drafts[1].input == (
        'Based on the audio, what can be said about the hypothesis - "No dog can be heard at '
        'all."? a) It is definitely true b) It is plausible c) It is definitely false '
        "d) I cannot determine"
    )


def test_mcq_prompt_renders_exactly() -> None:
    from pipeline.llm import PromptLibrary

    template = PromptLibrary.load().get("reasonaqa/mcq")
    text = template.render(
        {
            "captions": ["A dog barks.", "Birds {{ sing }}."],
            "focus": "events",
            "focus_hint": "which sound events happen",
            "distractor_pool": ["rain falling"],
        }
    )
    assert text == (
        "Captions of one audio clip, written by different listeners:\n"
        "- A dog barks.\n"
        "- Birds {{ sing }}.\n"
        "\n"
        'Write one multiple-choice question about this clip whose focus is "events" '
        "(which sound events happen).\n"
        "Give the correct answer as a short phrase (at most 8 words) that the captions "
        "support, and exactly\n"
        "three distractors: plausible answers of the same kind that the captions contradict "
        "or never support.\n"
        "Prefer distractors from this list of things heard in other clips (none of them is "
        "in these captions):\n"
        "- rain falling\n"
        "\n"
        "Do not put option letters in the question or the answers; the options are lettered "
        "later.\n"
        "If the captions give no basis for a question with this focus, reply "
        '{"decline": true, "question": "", "correct": "", "distractors": []}.\n'
        'Reply with JSON: {"decline": false, "question": "...", "correct": "...", '
        '"distractors": ["...", "...", "..."]}'
    )
