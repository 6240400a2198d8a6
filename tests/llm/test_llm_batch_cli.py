"""Batch-API export/import round trip and the `forge prompts` / `forge llm` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from flows.cli import app
from pipeline.llm import GenerationEngine, LLMConfig, LLMRequest, PromptLibrary
from pipeline.llm.batch import export_batch, import_batch
from pipeline.llm.records import LLMBatchRequestRecord
from pipeline.llm.scripted_server import ScriptedServer
from pipeline.storage import Warehouse
from pipeline.storage.schema import table

PROMPTS = Path(__file__).parent / "prompts"
GOOD = {"decline": False, "sentence": "Woof is the sound a [MASK] makes.", "answer": "dog"}
runner = CliRunner()


def requests(n: int = 4) -> list[LLMRequest]:
    return [
        LLMRequest(
            item_key=f"item-{i}",
            prompt="demo/animal",
            variables={"title": f"Dog {i}", "description": "d", "tags": ["dog"]},
        )
        for i in range(n)
    ]


def config(url: str = "http://127.0.0.1:9/v1") -> LLMConfig:
    return LLMConfig(backend="openai", base_url=url, model="batch-model", max_retries=0)


def batch_result(custom_id: str, content: Any, status_code: int = 200) -> dict[str, Any]:
    """One line of an OpenAI Batch-API output file."""
    if status_code != 200:
        body: dict[str, Any] = {"error": {"message": "rate limited", "type": "rate_limit"}}
    else:
        body = {
            "id": f"chatcmpl-{custom_id[:6]}",
            "object": "chat.completion",
            "created": 0,
            "model": "batch-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
        }
    return {
        "id": f"batch_req_{custom_id[:6]}",
        "custom_id": custom_id,
        "response": {"status_code": status_code, "request_id": "r", "body": body},
        "error": None,
    }


def test_export_import_then_run_sends_nothing(warehouse: Warehouse, tmp_path: Path) -> None:
    library = PromptLibrary.load(base_dir=PROMPTS)
    out = tmp_path / "batch" / "requests.jsonl"
    summary = export_batch(warehouse, library, config(), requests(), out, "export-run")
    assert (summary.requests, summary.cached, summary.exported) == (4, 0, 4)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [set(line) for line in lines] == [{"custom_id", "method", "url", "body"}] * 4
    assert {line["url"] for line in lines} == {"/v1/chat/completions"}
    first = lines[0]["body"]
    assert first["model"] == "batch-model" and first["seed"] == 0
    assert first["response_format"]["type"] == "json_schema"
    assert first["messages"][1]["content"].startswith("Clip title: Dog 0\n")
    recorded = warehouse.rows("SELECT * FROM llm_batch_requests ORDER BY item_key")
    assert [r["call_key"] for r in recorded] == [line["custom_id"] for line in lines]
    LLMBatchRequestRecord.model_validate(recorded[0])

    results = tmp_path / "results.jsonl"
    keys = [line["custom_id"] for line in lines]
    result_lines = [
        batch_result(keys[0], json.dumps(GOOD)),
        batch_result(keys[1], json.dumps({"decline": "yes"})),
        batch_result(keys[2], None, status_code=429),
        batch_result(keys[3], json.dumps(GOOD)),
        batch_result("not-exported", json.dumps(GOOD)),
    ]
    results.write_text(
        "\n".join(json.dumps(r) for r in result_lines) + "\n{broken json\n", encoding="utf-8"
    )
    imported = import_batch(warehouse, results, "import-run")
    assert imported.by_status == {"ok": 2, "invalid_output": 1, "http_error": 1}
    assert (imported.recorded, imported.rejected) == (4, 2)
    rejects = warehouse.rows(
        "SELECT reason, source_row, record_id FROM rejects WHERE stage = 'llm-batch-import' "
        "ORDER BY source_row"
    )
    assert rejects == [
        {"reason": "unknown_custom_id", "source_row": 5, "record_id": "not-exported"},
        {"reason": "invalid_line", "source_row": 6, "record_id": None},
    ]
    rows = warehouse.rows(
        "SELECT item_key, status, origin, prompt_tokens, error FROM llm_calls ORDER BY item_key"
    )
    assert [(r["item_key"], r["status"], r["origin"]) for r in rows] == [
        ("item-0", "ok", "batch-import"),
        ("item-1", "invalid_output", "batch-import"),
        ("item-2", "http_error", "batch-import"),
        ("item-3", "ok", "batch-import"),
    ]
    assert rows[0]["prompt_tokens"] == 20
    assert rows[2]["error"] == "batch result error (HTTP 429): rate limited"

    # A normal run now sends only the two requests whose batch result was not ok.
    with ScriptedServer(lambda request, n: GOOD) as server:
        results_now = GenerationEngine(
            warehouse, library, config(server.base_url), "normal-run"
        ).run(requests())
        assert server.request_count == 2
    assert [r.cached for r in results_now] == [True, False, False, True]
    assert all(r.status == "ok" and r.parsed == GOOD for r in results_now)
    # Exporting again writes nothing: everything is answered.
    again = export_batch(warehouse, library, config(), requests(), out, "export-2")
    assert (again.cached, again.exported) == (4, 0)
    assert out.read_text() == ""


def test_batch_table_models_match_the_ddl() -> None:
    assert list(LLMBatchRequestRecord.model_fields) == table("llm_batch_requests").columns


def test_cli_prompts_list_and_render(sample_warehouse: Warehouse) -> None:
    listed = runner.invoke(app, ["prompts", "list", "--prompts", str(PROMPTS)])
    assert listed.exit_code == 0, listed.output
    version = PromptLibrary.load(base_dir=PROMPTS).get("demo/animal").version
    assert "demo/animal" in listed.output and version in listed.output

    rendered = runner.invoke(
        app,
        [
            "prompts",
            "render",
            "demo/animal",
            "--clip",
            "laion630k:100101",
            "--prompts",
            str(PROMPTS),
            "--warehouse",
            str(sample_warehouse.root),
        ],
    )
    assert rendered.exit_code == 0, rendered.output
    assert rendered.output == (
        f"# demo/animal  version {version}  ({PROMPTS / 'demo' / 'animal.j2'})\n"
        "--- system ---\n"
        "You write short English sentences. Reply with a JSON object only.\n"
        "--- user ---\n"
        "Clip title: Dog barking\n"
        "Description: A medium sized dog barking at the mailman, recorded in a backyard.\n"
        "Tags: dog, bark, woof, animal\n"
        "Write one sentence with [MASK] for the animal.\n"
    )
    two = runner.invoke(
        app,
        ["prompts", "render", "demo/compare", "--clip", "laion630k:100101",
         "--var", 'sources=["violin", "tuba"]', "--prompts", str(PROMPTS),
         "--warehouse", str(sample_warehouse.root)],
    )  # fmt: skip
    assert two.exit_code == 0, two.output
    assert "Sound 1: violin\nSound 2: tuba\n" in two.output
    missing = runner.invoke(
        app,
        ["prompts", "render", "demo/animal", "--clip", "nope:1", "--prompts", str(PROMPTS),
         "--warehouse", str(sample_warehouse.root)],
    )  # fmt: skip
    assert missing.exit_code == 2 and "clip 'nope:1' is not in the clips table" in missing.output


def test_cli_export_and_import_batch(warehouse: Warehouse, tmp_path: Path) -> None:
    requests_file = tmp_path / "requests.jsonl"
    requests_file.write_text("\n".join(r.model_dump_json() for r in requests(2)) + "\n")
    out = tmp_path / "batch.jsonl"
    common = ["--prompts", str(PROMPTS), "--warehouse", str(warehouse.root)]
    no_model = runner.invoke(
        app, ["llm", "export-batch", "--requests", str(requests_file), "--out", str(out), *common]
    )
    assert no_model.exit_code == 2 and "no model" in no_model.output
    exported = runner.invoke(
        app,
        ["llm", "export-batch", "--requests", str(requests_file), "--out", str(out),
         "--model", "batch-model", *common],
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert "2 requests written" in exported.output
    keys = [json.loads(line)["custom_id"] for line in out.read_text().splitlines()]
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join(json.dumps(batch_result(k, json.dumps(GOOD))) for k in keys))
    imported = runner.invoke(
        app, ["llm", "import-batch", str(results), "--warehouse", str(warehouse.root)]
    )
    assert imported.exit_code == 0, imported.output
    assert "2 results recorded (ok 2); 0 lines rejected" in imported.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"item_key": "x"}\n')
    broken = runner.invoke(
        app,
        ["llm", "export-batch", "--requests", str(bad), "--out", str(out), "--model", "m",
         *common],
    )  # fmt: skip
    assert broken.exit_code == 2 and f"{bad}, row 1: not an LLM request" in broken.output
