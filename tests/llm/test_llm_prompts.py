"""Prompt templates: front matter, versions, overrides, exact rendering, sanitisation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.errors import ForgeError, InputFormatError
from pipeline.llm import PromptLibrary, SanitizeLimits
from pipeline.llm.prompts import sanitize_variables
from pipeline.llm.schema import ReplyValidationError

PROMPTS = Path(__file__).parent / "prompts"

ANIMAL_VARS = {
    "title": "Dog barking",
    "description": "A small dog barks twice.",
    "tags": ["dog", "bark", "pet"],
}


def test_exact_rendered_messages() -> None:
    template = PromptLibrary.load(base_dir=PROMPTS).get("demo/animal")
    assert template.render_messages(ANIMAL_VARS) == [
        {
            "role": "system",
            "content": "You write short English sentences. Reply with a JSON object only.",
        },
        {
            "role": "user",
            "content": "Clip title: Dog barking\n"
            "Description: A small dog barks twice.\n"
            "Tags: dog, bark, pet\n"
            "Write one sentence with [MASK] for the animal.",
        },
    ]
    assert template.description == "Write a masked sentence about the animal heard in a clip."
    assert template.sampling.temperature == 0.6
    assert template.sampling.top_p == 0.9
    assert template.sampling.max_tokens == 200
    assert len(template.version) == 12


def test_loop_template_and_missing_variable_is_an_error() -> None:
    library = PromptLibrary.load(base_dir=PROMPTS)
    compare = library.get("demo/compare")
    assert compare.render({"sources": ["violin", "tuba"]}) == (
        "Sound 1: violin\nSound 2: tuba\nCompare their pitch."
    )
    with pytest.raises(ForgeError, match="'description' is undefined"):
        library.get("demo/animal").render({"title": "x", "tags": []})


def test_hostile_metadata_stays_literal_text() -> None:
    template = PromptLibrary.load(base_dir=PROMPTS).get("demo/animal")
    hostile = {
        "title": "{{ 7*7 }} {% for x in range(3) %}loop{% endfor %}",
        "description": "{{ ''.__class__.__mro__[1].__subclasses__() }}\x00\x1b[2J\u202eevil\r\nok",
        "tags": ["{{ config }}"] + [f"t{i}" for i in range(100)],
    }
    text = template.render(hostile)
    assert "Clip title: {{ 7*7 }} {% for x in range(3) %}loop{% endfor %}\n" in text
    assert "49" not in text
    # Control characters, ANSI escapes' ESC byte and the bidi override are stripped.
    assert "Description: {{ ''.__class__.__mro__[1].__subclasses__() }}[2Jevil\nok\n" in text
    # Lists are capped (50 items by default): the first tag is kept verbatim.
    assert "Tags: {{ config }}, t0, t1," in text
    assert "t48" in text and "t49" not in text


def test_sanitize_caps_strings_and_lists() -> None:
    limits = SanitizeLimits(max_string_chars=10, max_list_items=2)
    clean = sanitize_variables({"s": "abcdefghijklmnop", "l": ["a", "b", "c"], "n": 3}, limits)
    assert clean == {"s": "abcdefghi…", "l": ["a", "b"], "n": 3}
    with pytest.raises(ForgeError, match="has type object"):
        sanitize_variables({"bad": object()})


def _copy_prompts(tmp_path: Path) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(PROMPTS, target)
    return target


def test_override_dir_wins_by_name_and_changes_version(tmp_path: Path) -> None:
    base = PromptLibrary.load(base_dir=PROMPTS)
    override = tmp_path / "override" / "demo"
    override.mkdir(parents=True)
    text = (PROMPTS / "demo" / "compare.j2").read_text().replace("Compare", "Contrast")
    (override / "compare.j2").write_text(text)
    merged = PromptLibrary.load(tmp_path / "override", base_dir=PROMPTS)
    assert merged.names() == ["demo/animal", "demo/compare"]
    assert merged.get("demo/compare").path == override / "compare.j2"
    assert merged.get("demo/compare").version != base.get("demo/compare").version
    assert merged.get("demo/animal").version == base.get("demo/animal").version


def test_version_covers_schema_and_sampling(tmp_path: Path) -> None:
    folder = _copy_prompts(tmp_path)
    path = folder / "demo" / "animal.j2"
    original = PromptLibrary.load(base_dir=folder).get("demo/animal").version
    path.write_text(path.read_text().replace("temperature: 0.6", "temperature: 0.7"))
    after_sampling = PromptLibrary.load(base_dir=folder).get("demo/animal").version
    path.write_text(path.read_text().replace("minLength: 3", "minLength: 4"))
    after_schema = PromptLibrary.load(base_dir=folder).get("demo/animal").version
    assert len({original, after_sampling, after_schema}) == 3
    # The description is documentation: editing it keeps the version (and the cache).
    path.write_text(path.read_text().replace("Write a masked", "Write one masked"))
    assert PromptLibrary.load(base_dir=folder).get("demo/animal").version == after_schema


@pytest.mark.parametrize(
    ("front", "message"),
    [
        ("description: x\nschema: {type: object}\ncolour: red", "colour"),
        ("description: x\nschema: {type: object}\nsampling: {temp: 1}", "temp"),
        ("schema: {type: object}", "description"),
        ("description: x\nschema: {type: object, properties: {a: {type: strin}}}", "strin"),
        ("description: [unclosed", "not valid YAML"),
    ],
)
def test_bad_front_matter_names_the_file(tmp_path: Path, front: str, message: str) -> None:
    path = tmp_path / "group" / "bad.j2"
    path.parent.mkdir()
    path.write_text("{#---\n" + front + "\n---#}\nHello\n")
    with pytest.raises(InputFormatError, match=message) as info:
        PromptLibrary.load(base_dir=tmp_path)
    assert str(path) in str(info.value)


def test_missing_front_matter_and_unknown_prompt(tmp_path: Path) -> None:
    (tmp_path / "plain.j2").write_text("Hello {{ name }}\n")
    with pytest.raises(InputFormatError, match="missing front matter"):
        PromptLibrary.load(base_dir=tmp_path)
    with pytest.raises(ForgeError, match=r"unknown prompt 'demo/nope'.*demo/animal"):
        PromptLibrary.load(base_dir=PROMPTS).get("demo/nope")


def test_schema_validator_is_strict() -> None:
    validator = PromptLibrary.load(base_dir=PROMPTS).get("demo/animal").validator
    ok = {"decline": False, "sentence": "Woof is the sound a [MASK] makes.", "answer": "dog"}
    assert validator.validate(ok) == ok
    with pytest.raises(ReplyValidationError, match="decline: Input should be a valid boolean"):
        validator.validate({"decline": "no"})
    with pytest.raises(ReplyValidationError, match="extra: Extra inputs are not permitted"):
        validator.validate({"decline": True, "extra": 1})
    with pytest.raises(ReplyValidationError, match="decline: Field required"):
        validator.validate({"sentence": "abc"})
