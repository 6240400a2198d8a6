"""train_audiobert end to end on a real warehouse: sample clips + hand-written items, a tiny
random BERT backbone saved to disk, the tiny random CLAP (labelled as such); then the saved
model is reloaded for a published dev CSV slice, `forge predict` and `forge evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pipeline.ingest import ingest_source
from pipeline.samples import SAMPLE_PATHS, sample_audio_root
from pipeline.storage import Warehouse
from pipeline.storage.warehouse import utc_now
from pipeline.training import evaluate_csv, predict
from pipeline.training.artifacts import load_saved_model
from pipeline.training.data import Example, encode_examples
from pipeline.training.evaluation import predict_masks
from pipeline.training.inputs import gold_plans
from pipeline.training.retrieval import load_index

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "auditorybench"
ANIMALS = [("woof", "dog"), ("meow", "cat"), ("moo", "cow"), ("chirping", "bird")]
SOURCES = ["a church bell", "a bass drum", "a whistle", "an engine", "a violin", "thunder"]


def item_rows(clip_ids: list[str]) -> list[dict]:
    now, rows = utc_now(), []
    splits = ["train"] * 8 + ["dev"] * 2 + ["test"] * 2
    for i, split in enumerate(splits):
        sound, animal = ANIMALS[i % 4]
        rows.append(
            {
                "item_id": f"animal{i:02d}",
                "task": "auditorybench-animal",
                "split": split,
                "clip_ids": [clip_ids[i]],
                "input": f"A loud {sound} is the sound a [MASK] makes.",
                "answer": animal,
                "spans": [f"loud {sound}"],
                "prompt_name": "auditorybench/animal",
                "prompt_version": "p1",
                "model": "offline-rules",
            }
        )
        a, b = SOURCES[i % 6], SOURCES[(i + 1) % 6]
        rows.append(
            {
                "item_id": f"pitch{i:02d}",
                "task": "auditorybench-pitch",
                "split": split,
                "clip_ids": [clip_ids[12 + i], clip_ids[(13 + i) % 24]],
                "input": f"The sound of {a} has a [MASK] pitch than the sound of {b}.",
                "answer": "higher" if i % 2 else "lower",
                "spans": [f"sound of {a}", f"sound of {b}"],
                "prompt_name": "auditorybench/pitch",
                "prompt_version": "p1",
                "model": "offline-rules",
            }
        )
    for row in rows:
        row.update(
            generation_version="g1",
            validation_status="valid",
            validation_reasons=[],
            run_id="test-gen",
            created_at=now,
        )
    # a rejected item must never reach training
    rows.append({**rows[0], "item_id": "rejected0", "validation_status": "rejected"})
    return rows


TINY_CONFIG = """
clap: {mode: tiny-random}
epochs: 2
batch_size: 4
lr: 1.0e-3
lora: {r: 4, alpha: 8}
span_detector: {epochs: 1, batch_size: 8, lr: 1.0e-3}
progress: false
"""


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
    sample_audio_dir: Path,
    tiny_backbone: Path,
    prefect_harness: None,
):
    """Trained once through the Prefect `train` flow, from a YAML config file."""
    from flows.train import train_flow

    root = tmp_path_factory.mktemp("train_wh")
    wh = Warehouse(root / "warehouse")
    for source, path in SAMPLE_PATHS.items():
        ingest_source(wh, source, path, "test-ingest", sample_audio_root(sample_audio_dir, source))
    clip_ids = [
        r["clip_id"]
        for r in wh.rows("SELECT clip_id FROM clips WHERE source = 'laion630k' ORDER BY 1")
    ][:24]
    rows = item_rows(clip_ids)
    for task in ("auditorybench-animal", "auditorybench-pitch"):
        for split in ("train", "dev", "test"):
            part = [r for r in rows if r["task"] == task and r["split"] == split]
            wh.write_partition("item_records", f"task={task}/split={split}/version=g1", part)
    config = root / "tiny.yaml"
    config.write_text(f"backbone: {tiny_backbone}\n{TINY_CONFIG}")
    summary = train_flow(
        warehouse=str(wh.root), config=str(config), dataset_run_id="build-7", run_id="run-tiny-1"
    )
    return wh, summary


def test_training_writes_model_card_metrics_and_models_row(trained) -> None:
    wh, summary = trained
    model_dir = Path(summary.model_dir)
    assert model_dir == wh.root / "models" / "run-tiny-1"
    for name in ("adapter", "span_detector", "tokenizer", "injection.safetensors", "config.json",
                 "metrics.json", "retrieval_index.json", "MODEL_CARD.md"):  # fmt: skip
        assert (model_dir / name).exists(), name
    assert not (wh.root / "models" / ".work" / "run-tiny-1").exists()
    assert summary.items["auditorybench-animal/train"] == 8  # the rejected item is left out
    assert summary.clap_is_random
    metrics = json.loads((model_dir / "metrics.json").read_text())
    test_eval = metrics["audiobert"]["evaluation"]["test"]
    for task in ("auditorybench-animal", "auditorybench-pitch"):
        assert set(test_eval[task]) == {"audiobert", "audiobert_gold", "text_only", "backbone"}
        assert test_eval[task]["audiobert"]["n"] == 2
    assert metrics["audiobert"]["fit"]["steps"] == 2 * 4  # 16 train items, batch 4, 2 epochs
    assert metrics["retrieval"]["dev"]["auditorybench-pitch"]["queries"] == 4
    assert metrics["data_version"][0]["prompt_versions"] == ["auditorybench/animal@p1"]
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "randomly initialised CLAP: no real audio knowledge" in card
    assert "text-only" in card and "36.69" in card and "15.85" in card and "build-7" in card
    (row,) = wh.rows("SELECT * FROM models")
    assert (row["run_id"], row["dataset_run_id"], row["clap_is_random"]) == (
        "run-tiny-1",
        "build-7",
        True,
    )
    assert row["pitch_test_acc"] == test_eval["auditorybench-pitch"]["audiobert"]["accuracy"]
    assert row["clap_checkpoint"] == "tiny-random-hf-clap"


def test_saved_model_reloads_with_identical_predictions(trained) -> None:
    from pipeline.clap.tiny import build_tiny_hf_clap

    wh, summary = trained
    saved = load_saved_model(summary.model_dir)
    index = load_index(wh, build_tiny_hf_clap(seed=0))
    examples = [
        Example("x", "auditorybench-pitch", "test", "The sound of a whistle has a [MASK] pitch than the sound of thunder.", "higher", ["sound of a whistle", "sound of thunder"], [index.clip_ids[0], index.clip_ids[1]]),
        Example("y", "auditorybench-animal", "test", "A loud moo is the sound a [MASK] makes.", "cow", ["loud moo"], [index.clip_ids[2]]),
    ]  # fmt: skip
    plans = gold_plans(encode_examples(saved.tokenizer, examples, 128), index)
    again = load_saved_model(summary.model_dir)
    cpu = torch.device("cpu")
    first = predict_masks(saved.model, plans, saved.tokenizer, cpu)
    second = predict_masks(again.model, plans, again.tokenizer, cpu)
    assert [p.predicted for p in first] == [p.predicted for p in second]
    from pipeline.training.inputs import make_batch

    batch = make_batch(plans, saved.tokenizer.pad_token_id, saved.model.audio_dim)
    torch.testing.assert_close(saved.model(batch)[1], again.model(batch)[1])
    assert not torch.equal(saved.model(batch)[1], saved.model(batch, inject=False)[1])


def test_evaluate_csv_scores_a_published_dev_slice(trained) -> None:
    wh, _ = trained
    result = evaluate_csv(wh, SHARED_DATA / "sound_pitch_comparsion_dev.csv", max_rows=40)
    assert result.task == "auditorybench-pitch" and result.evaluated == 40
    assert set(result.accuracy) == {"audiobert", "text_only", "backbone"}
    for name, value in result.accuracy.items():
        assert value == pytest.approx(100 * result.correct[name] / 40)
    assert result.clap_is_random and "token_f1" in result.span_detector


def test_cli_predict_and_evaluate(trained) -> None:
    from flows.cli import app

    wh, _ = trained
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "predict",
            "A loud meow is the sound a [MASK] makes.",
            "--json",
            "--warehouse",
            str(wh.root),
        ],
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["task"] == "auditorybench-animal" and result["answer"]
    assert len(result["clip_ids"]) == len(result["spans"]) <= 1
    direct = predict(wh, "A loud meow is the sound a [MASK] makes.")
    assert direct.answer == result["answer"]
    out = runner.invoke(
        app,
        [
            "evaluate",
            "--csv",
            str(SHARED_DATA / "animal_sound_recognition_dev.csv"),
            "--max-rows",
            "20",
            "--warehouse",
            str(wh.root),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "20 of 593 rows evaluated" in out.output and "text_only" in out.output
    out = runner.invoke(
        app, ["evaluate", "--csv", str(wh.root / "missing.csv"), "--warehouse", str(wh.root)]
    )
    assert out.exit_code == 2 and "file not found" in out.output
