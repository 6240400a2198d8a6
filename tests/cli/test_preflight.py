"""Configuration errors: exit status 2, one `error:` line, no traceback, nothing started.

Each case runs the real `forge` executable with a private PREFECT_HOME; a started Prefect
server would leave its state file there (flows.server), so its absence proves that the
error came before any server or flow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import preflight
from flows.server import STATE_FILE

pytestmark = pytest.mark.timeout(300)


def _assert_config_error(result, *fragments: str, home: Path) -> None:
    assert result.code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.error_lines()
    assert len(lines) == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not (home / STATE_FILE).exists(), "a Prefect server was started"


def _torch_like_zip(path: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    return path


CASES = {
    "unknown task": (["generate", "--task", "nope"], {}, ["'nope'", "--task"]),
    "unknown stage": (["build", "--stage", "bogus"], {}, ["'bogus'", "ingest"]),
    "unknown split": (["generate", "--task", "nlar", "--split", "validation"], {}, ["split"]),
    "missing model": (
        ["generate", "--task", "nlar"],
        {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
        ["no model", "FORGE_LLM_MODEL"],
    ),
    "hosted endpoint without key": (
        ["generate", "--task", "nlar", "--backend", "openai", "--model", "gpt-4o-mini"],
        {},
        ["api.openai.com", "OPENAI_API_KEY"],
    ),
    "missing clap checkpoint": (
        ["run", "--no-train"],
        {"FORGE_CLAP_BACKEND": "laion", "FORGE_CLAP_CHECKPOINT": "/nonexistent/630k.pt"},
        ["/nonexistent/630k.pt", "FORGE_CLAP_CHECKPOINT"],
    ),
    "corrupt clap checkpoint": (
        ["score", "--task", "nlar", "--backend", "laion", "--checkpoint", "{corrupt}"],
        {},
        ["not a PyTorch checkpoint"],
    ),
    "clap folder without weights": (
        ["score", "--task", "nlar", "--backend", "hf", "--checkpoint", "{empty_dir}"],
        {},
        ["no config.json"],
    ),
    "missing corpus path": (
        ["ingest", "--source", "clotho", "--path", "/nonexistent/clotho"],
        {},
        ["--path", "/nonexistent/clotho"],
    ),
    "unknown source": (["ingest", "--source", "esc50", "--path", "."], {}, ["'esc50'"]),
    "missing prompts folder": (
        ["regenerate", "--task", "nlar", "--prompts", "/nonexistent/prompts"],
        {},
        ["--prompts", "expected a folder"],
    ),
    "unknown build parameter key": (
        ["build", "--params", "{params}"],
        {},
        ["'taskz'", "known keys"],
    ),
    "unknown flag": (["export", "--task", "nlar", "--fromat", "jsonl"], {}, ["--fromat"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_configuration_error_is_one_line_before_anything_starts(
    case: str, forge_cli, clean_env, tmp_path: Path
) -> None:
    args, env, fragments = CASES[case]
    (tmp_path / "empty").mkdir()
    params = tmp_path / "build.json"
    params.write_text(json.dumps({"taskz": ["nlar"]}))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_text("<html>not found</html>")
    values = {"corrupt": str(corrupt), "empty_dir": str(tmp_path / "empty"), "params": str(params)}
    args = [a.format(**values) for a in args]
    result = forge_cli(*args, env=env)
    _assert_config_error(result, *fragments, home=Path(clean_env["PREFECT_HOME"]))


def test_a_valid_checkpoint_passes_the_checks(tmp_path: Path) -> None:
    preflight.check_clap("laion", str(_torch_like_zip(tmp_path / "ok.pt")))
    model = tmp_path / "clap"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    preflight.check_clap("hf", str(model))
    preflight.check_clap("hf", "laion/clap-htsat-unfused")  # a hub id: the loader resolves it


def test_debug_shows_the_traceback(forge_cli) -> None:
    plain = forge_cli("generate", "--task", "nlar", "--prompts", "/nonexistent/p")
    assert plain.code == 2 and "Traceback" not in plain.stderr
    debug = forge_cli("--debug", "generate", "--task", "nlar", "--prompts", "/nonexistent/p")
    assert debug.code != 0 and "Traceback" in debug.stderr
    env_debug = forge_cli(
        "generate", "--task", "nlar", "--prompts", "/nonexistent/p", env={"FORGE_DEBUG": "1"}
    )
    assert "Traceback" in env_debug.stderr


def test_mirrored_names_match_their_sources() -> None:
    """preflight keeps light copies of names from heavy modules; they must agree."""
    from flows.cli.common import TaskId
    from flows.stages.params import STAGES, BuildParams
    from pipeline.clap import config as clap_config
    from pipeline.tasks import TASKS

    assert preflight.STAGES == STAGES
    assert sorted(preflight.TASKS) == sorted(TASKS) == sorted(t.value for t in TaskId)
    assert set(preflight.BUILD_PARAM_KEYS) == set(BuildParams.model_fields)
    assert preflight.CLAP_BACKEND_ENV == clap_config.BACKEND_ENV
    assert preflight.CLAP_CHECKPOINT_ENV == clap_config.CHECKPOINT_ENV
