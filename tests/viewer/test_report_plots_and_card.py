"""Report plots (checked on matplotlib's own objects, and as PNG files), CLAP histograms with
the policy threshold, and the export's dataset card and `datasets.Audio` column."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from PIL import Image

from pipeline.audio import pitch
from pipeline.clap.report import score_histogram_figures, score_histograms
from pipeline.storage import Warehouse
from pipeline.tasks import export_task
from pipeline.tasks.common import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PITCH = "auditorybench-pitch"


def test_pitch_plots_have_the_expected_axes(viewer_warehouse: Warehouse) -> None:
    balance = plots.label_balance_figure(viewer_warehouse, PITCH).axes[0]
    assert (balance.get_xlabel(), balance.get_ylabel()) == ("split", "valid items")
    assert {t.get_text() for t in balance.get_legend().get_texts()} == {"higher", "lower"}
    pitch = plots.pitch_figure(viewer_warehouse, PITCH).axes[0]
    assert pitch.get_xscale() == "log" and "Hz" in pitch.get_xlabel()
    gap = plots.gap_figure(viewer_warehouse, PITCH).axes[0]
    assert gap.get_xlabel().startswith("pitch gap")
    assert [line.get_xdata()[0] for line in gap.get_lines()] == [plots.MIN_PITCH_GAP]
    voiced = plots.voiced_fraction_figure(viewer_warehouse, PITCH).axes[0]
    assert voiced.get_xlabel() == "voiced fraction" and voiced.get_xlim()[1] <= 1.05
    versions = plots.prompt_versions_figure(viewer_warehouse, PITCH).axes[0]
    assert versions.get_ylabel() == "prompt version"
    assert plots.rejection_reasons_figure(viewer_warehouse, PITCH).axes[0].get_ylabel() == "reason"
    # Offline rules record no tokens: no token plot rather than an empty one.
    assert plots.tokens_figure(viewer_warehouse, PITCH) is None


def test_write_task_plots_writes_valid_pngs(viewer_warehouse: Warehouse, tmp_path: Path) -> None:
    paths = plots.write_task_plots(viewer_warehouse, PITCH, tmp_path)
    assert {p.stem for p in paths} >= {
        "label_balance",
        "pitch_hz",
        "pitch_gap",
        "voiced_fraction",
        "prompt_versions",
        "rejection_reasons",
    }
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC
        with Image.open(path) as image:
            assert image.size[0] > 300 and image.size[1] > 200
    # The animal task has no measured pitch: no pitch plots, but its label balance exists.
    animal = {
        p.stem
        for p in plots.write_task_plots(viewer_warehouse, "auditorybench-animal", tmp_path / "a")
    }
    assert "label_balance" in animal and "pitch_hz" not in animal


def test_clap_histogram_uses_the_observed_range_and_draws_the_threshold(
    viewer_warehouse: Warehouse, tmp_path: Path
) -> None:
    wh = Warehouse(tmp_path / "wh")
    items = viewer_warehouse.rows(
        "SELECT item_id FROM items_current WHERE task = ? ORDER BY item_id LIMIT 20", [PITCH]
    )
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.05, 0.45, len(items))
    now = datetime.now(UTC)
    wh.write_partition(
        "clap_scores",
        f"task={PITCH}/model=m",
        [
            {
                "item_id": r["item_id"],
                "task": PITCH,
                "text_role": "span1",
                "is_primary": True,
                "backend": "hf",
                "checkpoint": "ckpt-a",
                "score": float(s),
                "run_id": "r",
                "scored_at": now,
            }
            for r, s in zip(items, scores, strict=True)
        ],
    )
    wh.write_partition(
        "item_filters",
        f"task={PITCH}/policy=absolute/run=r",
        [
            {
                "item_id": r["item_id"],
                "task": PITCH,
                "policy": "absolute",
                "policy_params": json.dumps({"threshold": 0.3}),
                "backend": "hf",
                "checkpoint": "ckpt-a",
                "filter_status": "kept" if s >= 0.3 else "dropped",
                "run_id": "r",
                "decided_at": now,
            }
            for r, s in zip(items, scores, strict=True)
        ],
    )
    ((name, figure),) = score_histogram_figures(wh, PITCH)
    axis = figure.axes[0]
    low, high = axis.get_xlim()
    assert 0.0 < low < scores.min() and scores.max() < high < 0.5  # not a fixed -1..1 axis
    (threshold,) = axis.get_lines()
    assert threshold.get_xdata()[0] == 0.3
    kept = int((scores >= 0.3).sum())
    assert f"kept {kept}, dropped {len(items) - kept}" in threshold.get_label()
    (path,) = score_histograms(wh, PITCH, tmp_path / "png")
    assert path.name == f"{name}.png" and path.read_bytes()[:8] == PNG_MAGIC


def test_hf_export_has_a_decodable_audio_column_and_a_card(
    viewer_warehouse: Warehouse, tmp_path: Path
) -> None:
    import datasets

    out = tmp_path / "hf"
    export_task(viewer_warehouse, PITCH, "hf", out)
    loaded = datasets.load_from_disk(str(out))
    test = loaded["test"]
    assert isinstance(test.features["audio"], datasets.Audio)
    assert isinstance(test.features["audio_2"], datasets.Audio)
    assert test.features["fact_avg_pitch_1"].dtype == "float64"
    row = next(r for r in test if r["audio"] is not None)
    decoded, rate = sf.read(io.BytesIO(row["audio"]["bytes"]))
    original, original_rate = sf.read(row["audio_paths"][0])
    assert rate == original_rate and np.allclose(decoded, original)
    item = viewer_warehouse.rows("SELECT facts FROM items WHERE item_id = ?", [row["item_id"]])[0]
    assert row["fact_avg_pitch_1"] == pytest.approx(json.loads(item["facts"])["avg_pitch_1"])

    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    counts = {
        r["split"]: r["n"]
        for r in viewer_warehouse.rows(
            "SELECT split, count(*) AS n FROM items_current i WHERE task = ? AND validation_status = 'valid' "
            "AND item_id NOT IN (SELECT item_id FROM item_review_latest WHERE decision = 'reject') GROUP BY 1",
            [PITCH],
        )
    }
    assert {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]} == counts
    assert header["license"] == "cc-by-3.0" and header["task_categories"] == ["fill-mask"]
    versions = viewer_warehouse.rows(
        "SELECT DISTINCT generation_version, prompt_name, prompt_version FROM items_current "
        "WHERE task = ? AND prompt_name IS NOT NULL",
        [PITCH],
    )
    for v in versions:
        assert v["generation_version"] in card
        assert f"{v['prompt_name']}@{v['prompt_version']}" in card
    assert pitch.METHOD in card and "offline rule backend" in card
    assert "clips used in more than one split: 0" in card
