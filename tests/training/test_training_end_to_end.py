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

# Fixture copies of the published dev CSVs' first rows (see tests/training/data/README.md).
PUBLISHED_DATA = Path(__file__).resolve().parent / "data"
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
    for name in ("span_detector", "tokenizer", "config.json", "metrics.json",
                 "retrieval_index.json", "MODEL_CARD.md"):  # fmt: skip
        assert (model_dir / name).exists(), name
    assert not (wh.root / "models" / ".work" / "run-tiny-1").exists()
    assert summary.items["auditorybench-animal/train"] == 8  # the rejected item is left out
    assert summary.clap_is_random
    metrics = json.loads((model_dir / "metrics.json").read_text())
    test_eval = metrics["audiobert"]["evaluation"]["test"]
    rows = {
        "published_protocol",
        "end_to_end",
        "own_clip_oracle",
        "text_only",
        "backbone_zero_shot",
    }
    for task in ("auditorybench-animal", "auditorybench-pitch"):
        assert set(test_eval[task]) == rows
        assert test_eval[task]["published_protocol"]["n"] == 2
    # one model per task (as published): 8 train items each, batch 4, 2 epochs
    fits = metrics["audiobert"]["fit"]
    assert set(fits) == {"auditorybench-animal", "auditorybench-pitch"}
    assert [fit["steps"] for fit in fits.values()] == [2 * 2, 2 * 2]
    assert metrics["groups"] == {t: [t] for t in fits}
    for task in fits:
        assert (model_dir / "audiobert" / task / "adapter").is_dir()
    assert metrics["retrieval"]["dev"]["auditorybench-pitch"]["queries"] == 4
    assert metrics["data_version"][0]["prompt_versions"] == ["auditorybench/animal@p1"]
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "randomly initialised CLAP: no real audio knowledge" in card
    assert "text-only" in card and "36.69" in card and "15.85" in card and "build-7" in card
    assert "published protocol" in card and "one per task, as published" in card
    (row,) = wh.rows("SELECT * FROM models")
    assert (row["run_id"], row["dataset_run_id"], row["clap_is_random"]) == (
        "run-tiny-1",
        "build-7",
        True,
    )
    assert (
        row["pitch_published_protocol_acc"]
        == test_eval["auditorybench-pitch"]["published_protocol"]["accuracy"]
    )
    assert (
        row["animal_end_to_end_acc"] == test_eval["auditorybench-animal"]["end_to_end"]["accuracy"]
    )
    assert row["model_per_task"] and row["train_audio"] == "retrieved"
    assert row["backbone_comparable_with_paper"]  # the tiny BERT has its own MLM head
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
    from pipeline.training.inputs import make_batch

    for plan in plans:
        task = plan.encoded.example.task
        first = predict_masks(saved.model_for(task), [plan], saved.tokenizer, cpu)
        second = predict_masks(again.model_for(task), [plan], again.tokenizer, cpu)
        assert [p.predicted for p in first] == [p.predicted for p in second]
        model = saved.model_for(task)
        batch = make_batch([plan], saved.tokenizer.pad_token_id, model.audio_dim)
        torch.testing.assert_close(model(batch)[1], again.model_for(task)(batch)[1])
        assert not torch.equal(model(batch)[1], model(batch, inject=False)[1])
    # the two tasks' models are different models
    animal, pitch = (
        saved.model_for(plans[1].encoded.example.task),
        saved.model_for(plans[0].encoded.example.task),
    )
    assert animal is not pitch
    assert not torch.equal(animal.projection.weight, pitch.projection.weight)


def test_evaluate_csv_scores_a_published_dev_slice(trained) -> None:
    wh, _ = trained
    result = evaluate_csv(wh, PUBLISHED_DATA / "sound_pitch_comparsion_dev.csv", max_rows=20)
    assert result.task == "auditorybench-pitch" and result.evaluated == 20
    assert list(result.accuracy) == [
        "published_protocol", "end_to_end", "text_only", "backbone_zero_shot"
    ]  # fmt: skip
    for name, value in result.accuracy.items():
        assert value == pytest.approx(100 * result.correct[name] / 20)
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
            str(PUBLISHED_DATA / "animal_sound_recognition_dev.csv"),
            "--max-rows",
            "20",
            "--warehouse",
            str(wh.root),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "20 of 30 rows evaluated" in out.output and "text_only" in out.output
    assert "published_protocol" in out.output and "gold span position" in out.output
    out = runner.invoke(
        app, ["evaluate", "--csv", str(wh.root / "missing.csv"), "--warehouse", str(wh.root)]
    )
    assert out.exit_code == 2 and "file not found" in out.output
