"""The shipped AuditoryBench knowledge tables and the animal answer normalisation."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.tasks.auditorybench.animal import AMBIGUOUS_SOUND, wiki_items
from pipeline.tasks.auditorybench.knowledge import animal_vocabulary, pitch_sources
from pipeline.tasks.auditorybench.pitch_comparison import PitchTask


@pytest.mark.parametrize(
    ("mention", "animal"),
    [
        ("Pomeranian", "dog"),
        ("puppies", "dog"),
        ("Two ducks", "duck"),
        ("geese", "goose"),
        ("a small white dog", "dog"),
        ("Mice", "mouse"),
        ("crow", "crow"),  # an animal of its own, not the rooster's sound
        ("unicorn", None),
        ("", None),
    ],
)
def test_answers_are_normalised_to_broad_animals(mention: str, animal: str | None) -> None:
    assert animal_vocabulary().normalise(mention) == animal


# Species the published labels name themselves stay themselves (not folded into another).
@pytest.mark.parametrize(
    "label",
    ["bird", "nightingale", "mosquito", "wasp", "rat", "alpaca", "jaguar", "insect", "bee"],
)
def test_published_species_keep_their_own_name(label: str) -> None:
    assert animal_vocabulary().normalise(label) == label


LABELS_FIXTURE = Path(__file__).parent / "fixtures" / "auditorybench_animal_dev_labels.txt"


def published_dev_labels() -> list[str]:
    lines = LABELS_FIXTURE.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if not line.startswith("#")]


def test_the_published_dev_labels_pass_the_vocabulary() -> None:
    """>= 99 % of the 593 published dev labels are accepted; each keeps its own name or
    folds into the broad animal it is a breed, young, sex or variety of (puppy -> dog)."""
    labels = published_dev_labels()
    vocabulary = animal_vocabulary()
    assert len(labels) == 593
    normalised = [(label, vocabulary.normalise(label)) for label in labels]
    rejected = [label for label, animal in normalised if animal is None]
    assert len(rejected) / len(labels) <= 0.01, rejected
    own_name = [
        label
        for label, animal in normalised
        if animal is not None and label in (animal, vocabulary.get(animal).plural)
    ]
    assert len(own_name) / len(labels) >= 0.9
    folded = {(label, animal) for label, animal in normalised if animal and label not in own_name}
    for label, animal in folded:  # a folded label names its animal or is one of its forms
        assert animal in label or label in vocabulary.get(animal).aliases or " " in label, label


def test_tables_have_the_published_scale_and_sane_ranges() -> None:
    vocabulary = animal_vocabulary()
    # The wiki split (published: 90 animals) uses the animals with sounds; the others are
    # answer names only (the published labels' own species and broad classes).
    assert 85 <= sum(bool(animal.sounds) for animal in vocabulary.animals.values()) <= 100
    assert len(vocabulary.animals) >= 170
    sources = pitch_sources()
    assert 95 <= len(sources) <= 110
    assert len({s.source for s in sources}) == len(sources)
    assert all(0 < s.low_hz <= s.high_hz for s in sources)


def test_wiki_animal_items_reject_sounds_shared_by_several_animals() -> None:
    drafts = {d.generation_key: d for d in wiki_items()}
    # 'growl' belongs to dog, lion, tiger, bear, ... → no single answer
    assert AMBIGUOUS_SOUND in drafts["wiki:dog:growl"].reasons
    assert drafts["wiki:donkey:hee-haw"].reasons == []
    # The published wiki file keeps the sound word as is: `bellow is the sound a [MASK] makes.`
    assert drafts["wiki:donkey:hee-haw"].input == "hee-haw is the sound a [MASK] makes."


def test_wiki_pitch_pairs_never_use_overlapping_ranges_and_are_balanced() -> None:
    task = PitchTask()
    drafts = task.wiki_items(seed=0)
    by_source = {s.source: s for s in pitch_sources()}  # spans are bare source names
    assert len(drafts) > 1000
    for draft in drafts:
        first, second = (by_source[span] for span in draft.spans)
        assert first.low_hz > second.high_hz or first.high_hz < second.low_hz
        expected = "higher" if first.low_hz > second.high_hz else "lower"
        assert draft.answer == expected
        assert draft.model == "template" and draft.split == "wiki"
    answers = [d.answer for d in drafts]
    assert abs(answers.count("higher") - answers.count("lower")) <= 1


def test_record_models_match_their_ddl() -> None:
    from pipeline.audio.pitch import PitchRecord
    from pipeline.storage.schema import table
    from pipeline.tasks.auditorybench.categorize import CategoryRecord

    assert list(PitchRecord.model_fields) == table("clip_pitch").columns
    assert list(CategoryRecord.model_fields) == table("clip_categories").columns


def test_a_broken_knowledge_table_names_file_and_column(tmp_path) -> None:
    from pipeline.errors import InputFormatError
    from pipeline.tasks.auditorybench.knowledge import _read

    path = tmp_path / "animals.csv"
    path.write_text("animal,plural\ndog,dogs\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match=r"animals.csv.*field 'aliases'"):
        _read(path, ("animal", "plural", "aliases", "sounds"))
    path.write_text("animal,plural,aliases,sounds\ndog,dogs\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match=r"row 1, field 'aliases'"):
        _read(path, ("animal", "plural", "aliases", "sounds"))
