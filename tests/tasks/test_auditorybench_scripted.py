"""AuditoryBench against a real local OpenAI-compatible HTTP server with scripted replies.

The script answers each prompt from the rendered message it receives, and gives chosen
clips a faulty reply so that every rejection reason of the two tasks is produced once by
the real path (HTTP → engine → parse → task validators → item_records).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest import ingest_source
from pipeline.llm import LLMConfig
from pipeline.llm.scripted_server import Reply, ScriptedServer
from pipeline.samples import SAMPLE_PATHS, sample_audio_root
from pipeline.samples.audio import read_specs
from pipeline.storage import Warehouse
from pipeline.tasks import TASKS, generate_task, report_task
from pipeline.tasks.auditorybench.offline import categorize_rule
from pipeline.tasks.auditorybench.pitch_comparison import PitchTask

LONG = "The [MASK] makes a very long and winding noise" + " and so on" * 14 + "."  # 47 words
ANIMAL_REPLIES: dict[str, Any] = {
    # title → reply (dict = JSON content, Reply = raw HTTP behaviour)
    "Dog barking": {
        "sentence": "Woof woof, the [MASK] guards the yard.",
        "span": "Woof woof",
        "answer": "Dogs",
    },
    "Pomeranian yapping": {
        "sentence": "A tiny [MASK] yaps at the door.",
        "span": "yaps",
        "answer": "Pomeranian",
    },
    "Angry dog growl": {
        "sentence": "A low growl comes from the [MASK].",
        "span": "low growl",
        "answer": "unicorn",
    },
    "Cat meow": {
        "sentence": "The [MASK] says meow to the [MASK].",
        "span": "meow",
        "answer": "cat",
    },
    "Cat purring": {
        "sentence": "A [MASK] purrs softly on the sofa.",
        "span": "rumbling purr",
        "answer": "cat",
    },
    "Cow mooing": {
        "sentence": "The cow says moo, like any [MASK] does.",
        "span": "moo",
        "answer": "cow",
    },
    "Rooster crowing at dawn": {
        "sentence": "Kikeriki ruft jeden Morgen ein [MASK] laut.",
        "span": "Kikeriki",
        "answer": "rooster",
    },
    "Ducks quacking": {"sentence": "The [MASK] quacks.", "span": "quacks", "answer": "duck"},
    "Sheep bleating": {"sentence": LONG, "span": "long and winding noise", "answer": "sheep"},
    "Horse neigh": "this is not JSON",
    "Frog croaking at night": {"decline": True, "sentence": "", "span": "", "answer": ""},
    "Owl hooting": {
        "sentence": "A soft hoot drifts from the [MASK] at night.",
        "span": "soft hoot",
        "answer": "cow",
    },
    "Pigs oinking": Reply(status=500, error_message="scripted server error"),
    "Lion roar": {
        "sentence": "A loud roar means a [MASK] is near.",
        "span": "loud roar",
        "answer": "lion",
    },
    "Bees buzzing": {
        "sentence": "A loud roar means a [MASK] is near.",
        "span": "loud roar",
        "answer": "bee",
    },
    "Goat bleat": {
        "sentence": "a LOUD ROAR means a [MASK] is near!",
        "span": "LOUD ROAR",
        "answer": "goat",
    },
}
EXPECTED_ANIMAL_REASONS = {
    "laion630k:100101": [],
    "laion630k:100116": [],
    "laion630k:100102": ["unknown_animal"],
    "laion630k:100103": ["mask_count"],
    "laion630k:100104": ["span_not_in_input"],
    "laion630k:100105": ["answer_leaked"],
    "laion630k:100106": ["not_english"],
    "laion630k:100107": ["too_short"],
    "laion630k:100108": ["too_long"],
    "laion630k:100109": ["schema_invalid"],
    "laion630k:100110": ["llm_declined"],
    "laion630k:100111": ["answer_category_mismatch"],
    "laion630k:100112": ["llm_error"],
}
SPAN_ORDER_TITLE = "Kettle whistle"  # its pairs' spans come back swapped
LEAK_TITLE = "Car horn honk"  # its pairs' sentences say 'higher'


def _field(message: str, name: str) -> list[str]:
    return [m.strip() for m in re.findall(rf"^\s*{name}: ?(.*)$", message, re.MULTILINE)]


def script(request: dict[str, Any], count: int) -> Reply | dict[str, Any] | str:
    system = request["messages"][0]["content"]
    user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    titles = _field(user, "Title")
    if system.startswith("You sort sound recordings"):
        tags = [t.strip() for t in _field(user, "Tags")[0].split(",") if t.strip()]
        return categorize_rule({"title": titles[0], "tags": tags})
    if "test whether a reader knows which animal" in system:
        reply = ANIMAL_REPLIES.get(titles[0])
        if reply is None:
            return {"decline": True, "sentence": "", "span": "", "answer": ""}
        return {"decline": False, **reply} if isinstance(reply, dict) else reply
    first, second = (f"the {t.lower()}" for t in titles)
    sentence = f"When played together, {first} has a [MASK] pitch than {second}."
    if titles[0] == LEAK_TITLE:
        sentence = f"When played together, {first} has a [MASK] (higher?) pitch than {second}."
    spans = (second, first) if titles[0] == SPAN_ORDER_TITLE else (first, second)
    return {"decline": False, "sentence": sentence, "span1": spans[0], "span2": spans[1]}


@pytest.fixture(scope="module")
def scripted(
    tmp_path_factory: pytest.TempPathFactory, sample_audio_dir: Path
) -> Iterator[tuple[Warehouse, Any, int]]:
    # Ring pairing: enough pairs from the sample clips for every scripted reply to occur.
    patch = pytest.MonkeyPatch()
    patch.setitem(TASKS, "auditorybench-pitch", PitchTask(pairing="ring"))
    wh = Warehouse(tmp_path_factory.mktemp("abench-http") / "warehouse")
    for source, path in SAMPLE_PATHS.items():
        ingest_source(wh, source, path, "ingest", sample_audio_root(sample_audio_dir, source))
    with ScriptedServer(script) as server:
        config = LLMConfig(
            backend="openai",
            base_url=server.base_url,
            model="scripted-model",
            concurrency=8,
            timeout_s=10.0,
            max_retries=1,
            backoff_base_s=0.001,
            backoff_max_s=0.01,
        )
        summaries = {
            t: generate_task(wh, t, config, "http-run")
            for t in ("auditorybench-animal", "auditorybench-pitch")
        }
        requests = server.request_count
    yield wh, summaries, requests
    patch.undo()


def _animal_rows(wh: Warehouse) -> dict[str, dict[str, Any]]:
    rows = wh.rows(
        "SELECT * FROM items_current WHERE task = 'auditorybench-animal' AND subtask = 'clip'"
    )
    return {r["clip_ids"][0]: r for r in rows}


@pytest.mark.parametrize(("clip_id", "reasons"), sorted(EXPECTED_ANIMAL_REASONS.items()))
def test_each_animal_rejection_reason_comes_from_its_scripted_reply(
    scripted, clip_id: str, reasons: list[str]
) -> None:
    wh, _, _ = scripted
    row = _animal_rows(wh)[clip_id]
    assert row["validation_reasons"] == reasons
    assert row["validation_status"] == ("rejected" if reasons else "valid")
    assert row["model"] == "scripted-model" and row["llm_call_key"]


def test_valid_scripted_answers_are_normalised(scripted) -> None:
    wh, _, _ = scripted
    rows = _animal_rows(wh)
    assert rows["laion630k:100101"]["answer"] == "dog"  # "Dogs" → dog
    assert rows["laion630k:100116"]["answer"] == "dog"  # "Pomeranian" → dog


def test_exact_and_normalised_duplicates_keep_one_valid_copy(scripted) -> None:
    wh, _, _ = scripted
    rows = _animal_rows(wh)
    copies = [rows[c] for c in ("laion630k:100113", "laion630k:100114", "laion630k:100115")]
    assert sorted(tuple(r["validation_reasons"]) for r in copies) == [
        (),
        ("duplicate_exact",),
        ("duplicate_normalized",),
    ] or sorted(tuple(r["validation_reasons"]) for r in copies) == [
        (),
        ("duplicate_normalized",),
        ("duplicate_normalized",),
    ]
    assert sum(r["validation_status"] == "valid" for r in copies) == 1


def test_pitch_span_order_and_leak_reasons_and_labels(scripted) -> None:
    wh, _, _ = scripted
    truth = {}
    for spec in read_specs():
        if spec.source == "laion630k" and spec.kind not in ("noise", "silence"):
            factor = 1 + 0.5 * math.sin(math.pi / 4) if spec.kind == "chirp" else 1.0
            truth["laion630k:" + Path(spec.audio_path).stem] = spec.f0_hz * factor
    titles = {r["clip_id"]: r["title"] for r in wh.rows("SELECT clip_id, title FROM clips")}
    rows = wh.rows(
        "SELECT * FROM items_current WHERE task = 'auditorybench-pitch' AND subtask = 'clip'"
    )
    seen = set()
    for row in rows:
        first, second = row["clip_ids"]
        assert row["answer"] == ("higher" if truth[first] > truth[second] else "lower")
        reasons = row["validation_reasons"]
        if titles[first] == SPAN_ORDER_TITLE:
            assert "span_order" in reasons
        elif titles[first] == LEAK_TITLE:
            assert "answer_leaked" in reasons
        elif row["validation_status"] == "rejected":
            assert reasons in (["pitch_gap_too_small"], ["label_balance"]), row
        seen.update(reasons)
    assert {"span_order", "answer_leaked"} <= seen
    for split in report_task(wh, "auditorybench-pitch").splits:
        higher, lower = split.labels.get("higher", 0), split.labels.get("lower", 0)
        assert abs(higher - lower) <= 0.04 * (higher + lower)


def test_calls_are_recorded_and_a_rerun_sends_nothing(scripted, tmp_path: Path) -> None:
    wh, summaries, requests = scripted
    # every request the server saw is an attempt of a recorded call (retries and repair
    # rounds are attempts of one call); at most one unrecorded (dropped connection)
    attempts = wh.rows("SELECT sum(attempts) AS n FROM llm_calls")[0]["n"]
    assert attempts >= requests - 1
    with ScriptedServer(script) as server:
        config = LLMConfig(
            backend="openai", base_url=server.base_url, model="scripted-model", max_retries=0
        )
        again = generate_task(wh, "auditorybench-animal", config, "http-run-2")
        # only the failed calls are tried again: the schema-invalid one (sent, then one
        # repair round) and the http error
        assert server.request_count <= 3
    assert again.generation_version == summaries["auditorybench-animal"].generation_version
    assert json.dumps(again.rejected_by_reason, sort_keys=True) == json.dumps(
        summaries["auditorybench-animal"].rejected_by_reason, sort_keys=True
    )
