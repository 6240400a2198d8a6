"""Stage caching never hides work still to do: failed LLM calls are resent on the next run
(counted at the server), deleted outputs are rebuilt, and two inputs of one corpus are
two source instances that are both kept."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.stages.ingest import SourceInput, ingest_stage
from pipeline.llm.scripted_server import Reply, ScriptedServer, schema_reply
from pipeline.samples import SAMPLE_PATHS
from pipeline.storage import Warehouse

runner = CliRunner()


def forge(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout + result.stderr


class Recording:
    """Answers with schema-valid replies and records every prompt it was sent; with
    `fail_some`, answers 400 to a fixed subset of the NLAR question prompts (chosen by
    content)."""

    def __init__(self, fail_some: bool = False) -> None:
        self.fail_some = fail_some
        self.failed: set[str] = set()
        self.answered: set[str] = set()

    def __call__(self, request: dict[str, Any], count: int) -> Any:
        text = json.dumps(request["messages"], sort_keys=True)
        digest = hashlib.sha256(text.encode()).digest()
        if self.fail_some and "question" in text.lower() and digest[0] % 8 == 0:
            self.failed.add(text)
            return Reply(status=400, error_message="scripted bad request")
        self.answered.add(text)
        return schema_reply(request, count)


@pytest.mark.usefixtures("prefect_harness")
def test_rerun_resends_exactly_the_failed_calls_then_hits_the_cache(
    sample_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh = str(sample_warehouse.root)
    monkeypatch.setenv("FORGE_LLM_MODEL", "m")
    command = ("generate", "--task", "nlar", "--backend", "openai", "--warehouse", wh)
    flaky = Recording(fail_some=True)
    with ScriptedServer(flaky) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        code, out = forge(*command)
    assert code == 0, out
    assert flaky.failed, "the script failed no call: the test would prove nothing"
    assert "llm_error" in out  # the summary shows the failed items

    healthy = Recording()
    with ScriptedServer(healthy) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        code, out = forge(*command)
    assert code == 0, out
    # Every failed call is sent again; no call answered before is. (New prompts may follow:
    # a task may build further requests, e.g. re-asks, from the replies it now has.)
    assert flaky.failed <= healthy.answered
    assert not healthy.answered & flaky.answered
    assert "llm_error" not in out

    with ScriptedServer(schema_reply) as server:  # nothing left to do: the cache answers
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        code, again = forge(*command)
        assert server.request_count == 0
    assert code == 0, again


@pytest.mark.usefixtures("prefect_harness")
def test_deleted_outputs_are_rebuilt_not_reported_cached(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    ingest = ("ingest", "--source", "clotho", "--path", str(SAMPLE_PATHS["clotho"]))
    generate = ("generate", "--task", "nlar", "--backend", "offline")
    clotho_aqa = ("ingest", "--source", "clotho-aqa", "--path", str(SAMPLE_PATHS["clotho-aqa"]))
    for command in (ingest, clotho_aqa, generate):
        code, out = forge(*command, "--warehouse", str(wh))
        assert code == 0, out
    warehouse = Warehouse(wh)
    clips = warehouse.rows("SELECT count(*) AS n FROM clips")[0]["n"]
    items = warehouse.rows("SELECT count(*) AS n FROM items_current")[0]["n"]
    assert clips and items

    # What `make clean` does: data and catalog go, cached results stay.
    shutil.rmtree(wh / "data")
    (wh / "forge.duckdb").unlink()
    (wh / ".catalog.json").unlink()
    assert (wh / "prefect_results").is_dir()
    for command in (ingest, clotho_aqa):
        code, out = forge(*command, "--warehouse", str(wh))
        assert code == 0, out
    warehouse = Warehouse(wh)
    assert warehouse.rows("SELECT count(*) AS n FROM clips")[0]["n"] == clips

    # Generated items deleted but their inputs unchanged: generate runs again.
    generate_key_inputs_kept = warehouse.partitions("clips")
    code, out = forge(*generate, "--warehouse", str(wh))
    assert code == 0, out
    shutil.rmtree(wh / "data" / "item_records")
    shutil.rmtree(wh / "data" / "generations")
    assert Warehouse(wh).partitions("clips") == generate_key_inputs_kept
    code, out = forge(*generate, "--warehouse", str(wh))
    assert code == 0, out
    assert Warehouse(wh).rows("SELECT count(*) AS n FROM items_current")[0]["n"] == items


@pytest.mark.usefixtures("prefect_harness")
def test_two_inputs_of_one_corpus_are_both_kept(tmp_path: Path) -> None:
    sample = SAMPLE_PATHS["laion630k"]
    halves = {"a": tmp_path / "laion-a", "b": tmp_path / "laion-b"}
    for half in halves.values():
        (half / "train").mkdir(parents=True)
    files = sorted((sample / "train").glob("*.json"))
    for index, path in enumerate(files):
        shutil.copy(path, halves["ab"[index % 2]] / "train" / path.name)
    wh = Warehouse(tmp_path / "wh")
    report = ingest_stage(
        str(wh.root),
        "two-instances",
        [SourceInput(source="laion630k", path=str(p)) for p in halves.values()],
    )
    assert report.counts["clips"] == len(files)
    assert wh.rows("SELECT count(*) AS n FROM clips")[0]["n"] == len(files)
    assert len(wh.partitions("clips")) == 2


@pytest.mark.usefixtures("prefect_harness")
def test_asking_again_for_an_older_version_makes_it_current(sample_warehouse: Warehouse) -> None:
    def generate(seed: int) -> set[str]:
        code, out = forge(
            "generate", "--task", "nlar", "--backend", "offline", "--seed", str(seed),
            "--warehouse", str(sample_warehouse.root),
        )  # fmt: skip
        assert code == 0, out
        rows = sample_warehouse.rows(
            "SELECT DISTINCT generation_version AS v FROM items_current WHERE task = 'nlar'"
        )
        return {r["v"] for r in rows}

    first = generate(0)
    second = generate(7)
    assert len(first) == len(second) == 1 and first != second
    assert generate(0) == first  # a cache hit would have left seed 7 current
