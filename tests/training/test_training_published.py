"""The published protocol: reading and importing the published CSVs, retrieval-at-gold-span
plans, RoBERTa-family backbones, one model per task end to end, model reuse, and a training
deployment that no worker picks up."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pipeline.ingest import ingest_source
from pipeline.samples import SAMPLE_PATHS, sample_audio_root
from pipeline.storage import Warehouse
from pipeline.training.data import Example, encode_examples, word_in_context
from pipeline.training.published import (
    PUBLISHED_VERSION,
    import_published_csv,
    read_published_csv,
)

DATA = Path(__file__).resolve().parent / "data"


# ---- the published files -----------------------------------------------------------------


def test_published_facts_hold_on_the_fixture_rows() -> None:
    animal = read_published_csv(DATA / "animal_sound_recognition_dev.csv")
    assert animal.task == "auditorybench-animal" and animal.rows == 30 and not animal.rejects
    first = animal.examples[0]
    assert (first.answer, first.spans, first.split) == ("magpie", ["chirping and singing"], "dev")
    assert "bird" in {e.answer for e in animal.examples}  # broad labels, stored as published
    pitch = read_published_csv(DATA / "sound_pitch_comparsion_dev_with_pitch.csv")
    assert pitch.task == "auditorybench-pitch" and {e.answer for e in pitch.examples} <= {
        "higher",
        "lower",
    }
    facts = pitch.facts[pitch.examples[0].item_id]
    assert facts["avg_pitch_1"] == pytest.approx(1029.5283) and facts["answer_pitch"] == "lower"
    for example in animal.examples + pitch.examples:
        assert example.sentence.count("[MASK]") == 1


@pytest.mark.parametrize("module_limit", [None, 10**9])
def test_bad_rows_are_counted_with_row_and_field(tmp_path: Path, module_limit) -> None:
    previous = csv.field_size_limit()
    if module_limit:
        csv.field_size_limit(module_limit)  # other code may raise the process-wide limit
    try:
        _check_bad_rows(tmp_path)
    finally:
        csv.field_size_limit(previous)


def _check_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "sound_pitch_comparsion_dev.csv"
    good = "The sound of a bell has a [MASK] pitch than a drum.,higher,sound of a bell,a drum"
    lines = [
        "sentence,answer,span1,span2,avg_pitch_1",
        good + ",440.0",  # row 1 ok
        "x" * 200_000 + ",higher,a,b,1",  # row 2: field over the csv module's limit
        "A [MASK] sentence,higher",  # row 3: short
        "No mask here.,lower,a,b,1",  # row 4
        "A bell has a [MASK] pitch.,loud,a,b,1",  # row 5: bad answer
        good + ",not-a-number",  # row 6: kept, fact dropped
        '"A stray quote [MASK],higher,a,b,1',  # row 7 swallows the next line
        good + ",1",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    parsed = read_published_csv(path)
    found = [(r.row, r.reason, r.field) for r in parsed.rejects]
    assert [(row, reason) for row, reason, _ in found[:1]] == [(2, "field_too_large")]
    assert found[1:] == [
        (3, "short_row", None),
        (4, "sentence_without_single_mask", "sentence"),
        (5, "bad_answer", "answer"),
        (6, "not_a_number", "avg_pitch_1"),
        (7, "multiline_field", "sentence"),
    ]
    assert [e.item_id.rsplit(":", 1)[1] for e in parsed.examples] == ["1", "6"]
    assert parsed.skipped()["field_too_large"] == 1 and "not_a_number" not in parsed.skipped()
    path.write_bytes(b"sentence,answer,span1,span2\nA \xff [MASK],higher,a,b\n")
    with pytest.raises(Exception, match=r"not UTF-8 \(byte \d+, file line 2\)"):
        read_published_csv(path)


def test_import_writes_items_with_split_and_rejects(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "warehouse")
    bad = tmp_path / "animal_sound_recognition_test.csv"
    bad.write_text(
        "animal,description,sentence\ncat,meow,Meow is the sound a [MASK] makes.\n,x,y\n"
    )
    summary = import_published_csv(wh, bad)
    assert (summary.split, summary.imported, summary.rejected) == ("test", 1, 1)
    (item,) = wh.rows("SELECT * FROM items_current WHERE task = 'auditorybench-animal'")
    assert (item["generation_version"], item["clip_ids"], item["answer"]) == (
        PUBLISHED_VERSION,
        [],
        "cat",
    )
    (reject,) = wh.rows("SELECT source_row, reason, stage FROM rejects")
    assert (reject["source_row"], reject["reason"], reject["stage"]) == (
        2,
        "sentence_without_single_mask",
        "import",
    )
    again = import_published_csv(wh, bad)  # re-import replaces, never duplicates
    assert again.imported == 1 and len(wh.rows("SELECT * FROM item_records")) == 1
    with pytest.raises(Exception, match="--split"):
        import_published_csv(wh, DATA / "README.md")


def test_imported_splits_replace_a_generated_version_as_current_data(tmp_path: Path) -> None:
    """After a generation, importing published splits makes exactly those splits current
    (never a mix of generated train with published dev)."""
    from pipeline.llm import LLMConfig
    from pipeline.tasks.common.generate import generate_task

    wh = Warehouse(tmp_path / "warehouse")
    laion = SAMPLE_PATHS["laion630k"]
    ingest_source(wh, "laion630k", laion, "ingest", sample_audio_root(tmp_path, "laion630k"))
    generate_task(wh, "auditorybench-animal", LLMConfig(backend="offline"), "run-gen")
    current = "SELECT DISTINCT split, generation_version FROM items_current WHERE task = ?"
    generated = wh.rows(current, ["auditorybench-animal"])
    assert {r["split"] for r in generated} >= {"train", "test"}
    assert all(r["generation_version"] != PUBLISHED_VERSION for r in generated)

    dev = tmp_path / "animal_sound_recognition_dev.csv"
    dev.write_text("animal,description,sentence\ncat,meow,Meow is the sound a [MASK] makes.\n")
    import_published_csv(wh, dev)
    assert wh.rows(current, ["auditorybench-animal"]) == [
        {"split": "dev", "generation_version": PUBLISHED_VERSION}
    ]
    test = tmp_path / "animal_sound_recognition_test.csv"
    test.write_text("animal,description,sentence\ndog,woof,Woof is the sound a [MASK] makes.\n")
    import_published_csv(wh, test)
    assert sorted(r["split"] for r in wh.rows(current, ["auditorybench-animal"])) == [
        "dev",
        "test",
    ]


# ---- the published protocol's plans ---------------------------------------------------------


def test_published_plans_inject_at_gold_span_with_audio_of_detected_span(word_tokenizer) -> None:
    from pipeline.clap.tiny import build_tiny_hf_clap
    from pipeline.training.inputs import pipeline_plans, published_plans
    from pipeline.training.retrieval import RetrievalIndex, span_query

    scorer = build_tiny_hf_clap(seed=0)
    phrases = ["church bell", "drums", "bark", ""]
    index = RetrievalIndex(
        "hf", "tiny", ["bell", "drums", "bark", "nothing"],
        scorer.embed_text([span_query(p) for p in phrases]),
    )  # fmt: skip
    pitch = Example(
        "p", "auditorybench-pitch", "test",
        "the sound of a church bell has a [MASK] pitch than the sound of drums.",
        "higher", ["sound of a church bell", "sound of drums"],
    )  # fmt: skip
    animal = Example("a", "auditorybench-animal", "test", "the loud bark is the sound a [MASK] makes.", "dog", ["loud bark"])  # fmt: skip
    enc_pitch, enc_animal = encode_examples(word_tokenizer, [pitch, animal], 128)
    pieces = word_tokenizer.convert_ids_to_tokens(enc_pitch.input_ids)
    # detector found only "church bell" (positions 5-6): slot 2 falls back to it, as published
    labels = [1 if i in (5, 6) else 0 for i in range(len(pieces))]
    (plan,) = published_plans([enc_pitch], [labels], index, scorer)
    assert plan.positions == enc_pitch.span_positions == [2, 13]  # gold "sound" of each span
    assert plan.spans == ["church bell", "church bell"] and plan.clip_ids == ["bell", "bell"]
    (end_to_end,) = pipeline_plans([enc_pitch], [labels], index, scorer)
    assert end_to_end.positions == [5] and end_to_end.clip_ids == ["bell"]
    # nothing detected: the reference's " sound" query, still at the gold position
    (plan,) = published_plans([enc_animal], [[0] * len(enc_animal.input_ids)], index, scorer)
    assert plan.positions == enc_animal.span_positions and plan.spans == [""]
    assert plan.clip_ids == ["nothing"] and plan.scores[0] == pytest.approx(1.0, abs=1e-5)


# ---- RoBERTa family ---------------------------------------------------------------------------

ROBERTA_SENTENCES = [
    "Miauw is the sound a cat makes.",
    "A loud bark is the sound a dog makes.",
    "The sound of a bell has a higher pitch than the sound of a drum.",
    "The sound of a drum has a lower pitch than the sound of a bell.",
]


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE trained offline on a few sentences + a tiny random RoBERTa MLM."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_roberta")
    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(
        ROBERTA_SENTENCES * 5, vocab_size=400, min_frequency=1, special_tokens=specials
    )
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"))
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=130, type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id, initializer_range=0.3,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    RobertaForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_roberta_uses_its_mask_token_and_bpe_answer_pieces(tiny_roberta: Path) -> None:
    from pipeline.training.backbone import load_tokenizer, resolve_backbone
    from pipeline.training.evaluation import restricted_ids

    tokenizer = load_tokenizer(resolve_backbone(str(tiny_roberta)))
    animal = Example("a", "auditorybench-animal", "train", "Miauw is the sound a [MASK] makes.", "cat", ["Miauw"])  # fmt: skip
    pitch = Example(
        "p", "auditorybench-pitch", "train",
        "The sound of a bell has a [MASK] pitch than the sound of a drum.",
        "higher", ["sound of a bell", "sound of a drum"],
    )  # fmt: skip
    enc_animal, enc_pitch = encode_examples(tokenizer, [animal, pitch], 64)
    assert "<mask>" in enc_animal.text and "[MASK]" not in enc_animal.text
    assert tokenizer.convert_ids_to_tokens(enc_animal.target_ids) == ["Ġcat"]
    assert tokenizer.convert_ids_to_tokens(enc_pitch.target_ids) == ["Ġhigher"]
    assert tokenizer.convert_ids_to_tokens(restricted_ids(tokenizer)) == ["Ġhigher", "Ġlower"]
    assert word_in_context(tokenizer, "lower") == tokenizer.convert_tokens_to_ids(["Ġlower"])
    pieces = tokenizer.convert_ids_to_tokens(enc_pitch.input_ids)
    assert [pieces[i] for i in enc_pitch.span_positions] == ["Ġsound", "Ġsound"]


def test_tiny_roberta_trains_and_predicts(tiny_roberta: Path, tmp_path: Path) -> None:
    from pipeline.training.artifacts import build_audiobert
    from pipeline.training.backbone import load_tokenizer, resolve_backbone
    from pipeline.training.config import TrainConfig
    from pipeline.training.evaluation import predict_masks
    from pipeline.training.inputs import Prepared, make_batch
    from pipeline.training.loop import LoopSettings, fit

    tokenizer = load_tokenizer(resolve_backbone(str(tiny_roberta)))
    config = TrainConfig.from_mapping({"backbone": str(tiny_roberta), "lora": {"r": 4, "alpha": 8}})
    model, head_added, _ = build_audiobert(config, 8)
    assert not head_added
    examples = [
        Example("a", "auditorybench-animal", "train", "Miauw is the sound a [MASK] makes.", "cat", ["Miauw"]),
        Example("b", "auditorybench-animal", "train", "A loud bark is the sound a [MASK] makes.", "dog", ["loud bark"]),
        Example("p", "auditorybench-pitch", "train", "The sound of a bell has a [MASK] pitch than the sound of a drum.", "higher", ["sound of a bell", "sound of a drum"]),
        Example("q", "auditorybench-pitch", "train", "The sound of a drum has a [MASK] pitch than the sound of a bell.", "lower", ["sound of a drum", "sound of a bell"]),
    ]  # fmt: skip
    encoded = encode_examples(tokenizer, examples, 64)
    assert len(encoded) == 4  # none skipped as mask_missing_or_truncated
    rng = np.random.default_rng(0)
    plans = [
        Prepared(
            e, e.span_positions, rng.standard_normal((len(e.span_positions), 8)).astype(np.float32)
        )
        for e in encoded
    ]
    cpu = torch.device("cpu")
    before = predict_masks(model, plans, tokenizer, cpu)
    settings = LoopSettings(
        epochs=30, batch_size=4, lr=3e-2, seed=0, warmup_ratio=0.0, progress=False
    )
    result = fit(
        model, len(plans), lambda idx: make_batch([plans[i] for i in idx], tokenizer.pad_token_id, 8),
        lambda module, batch: module(batch)[0], settings, tmp_path / "work", cpu,
    )  # fmt: skip
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]
    after = predict_masks(model, plans, tokenizer, cpu)
    assert [p.predicted for p in after] == ["cat", "dog", "higher", "lower"]
    assert sum(p.correct for p in after) > sum(p.correct for p in before)


# ---- end to end on the imported published CSVs -------------------------------------------------

E2E_CONFIG = {
    "clap": {"mode": "tiny-random"},
    "epochs": 1,
    "batch_size": 8,
    "lr": 1e-3,
    "lora": {"r": 4, "alpha": 8},
    "span_detector": {"epochs": 1, "batch_size": 16, "lr": 1e-3},
    "progress": False,
}


def test_published_csvs_import_train_evaluate_and_reuse(
    tmp_path: Path, sample_audio_dir: Path, tiny_backbone: Path
) -> None:
    from flows.cli import app
    from pipeline.training import train_audiobert
    from pipeline.training.config import TrainConfig

    wh = Warehouse(tmp_path / "warehouse")
    for source, path in SAMPLE_PATHS.items():  # the clips retrieval draws from
        ingest_source(wh, source, path, "ingest", sample_audio_root(sample_audio_dir, source))
    runner = CliRunner()
    animal, pitch_dev = (
        DATA / "animal_sound_recognition_dev.csv",
        DATA / "sound_pitch_comparsion_dev.csv",
    )
    commands = [
        ["--csv", str(DATA / "sound_pitch_comparsion_train.csv")],
        ["--csv", str(pitch_dev), "--csv", str(animal)],
        ["--csv", str(animal), "--split", "train"],
        ["--csv", str(pitch_dev), "--split", "test"],
        ["--csv", str(animal), "--split", "test"],
    ]
    for args in commands:
        out = runner.invoke(app, ["import", "auditorybench", *args, "--warehouse", str(wh.root)])
        assert out.exit_code == 0, out.output
    assert (
        "auditorybench-animal/dev: 30 of 30 rows imported"
        in runner.invoke(
            app, ["import", "auditorybench", "--csv", str(animal), "--warehouse", str(wh.root)]
        ).output
    )
    counts = {
        (r["task"], r["split"]): r["n"]
        for r in wh.rows("SELECT task, split, count(*) AS n FROM items_current GROUP BY ALL")
    }
    assert counts == {
        ("auditorybench-pitch", "train"): 24, ("auditorybench-pitch", "dev"): 24,
        ("auditorybench-pitch", "test"): 24, ("auditorybench-animal", "train"): 30,
        ("auditorybench-animal", "dev"): 30, ("auditorybench-animal", "test"): 30,
    }  # fmt: skip

    config = TrainConfig.from_mapping({"backbone": str(tiny_backbone), **E2E_CONFIG})
    epochs: list[dict] = []
    summary = train_audiobert(wh, config, "published-1", on_epoch=epochs.append)
    assert not summary.reused
    assert [(e["label"], e["epoch"]) for e in epochs] == [
        ("span detector", 1), ("audiobert auditorybench-animal", 1), ("audiobert auditorybench-pitch", 1)
    ]  # fmt: skip
    metrics = json.loads((Path(summary.model_dir) / "metrics.json").read_text())
    index = metrics["retrieval"]["index"]
    assert index["clips"] == wh.rows("SELECT count(DISTINCT clip_id) AS n FROM clips")[0]["n"]
    for task in ("auditorybench-animal", "auditorybench-pitch"):
        rows = metrics["audiobert"]["evaluation"]["test"][task]
        assert set(rows) == {"published_protocol", "end_to_end", "text_only", "backbone_zero_shot"}
        assert rows["published_protocol"]["n"] >= 20  # items without a clip got retrieved audio
        assert metrics["audiobert"]["fit"][task]["train_examples"] >= 20

    out = runner.invoke(app, ["evaluate", "--csv", str(pitch_dev), "--warehouse", str(wh.root)])
    assert out.exit_code == 0, out.output
    line = next(x for x in out.output.splitlines() if x.strip().startswith("published_protocol"))
    assert "(" in line and "/24)" in line

    started = len(epochs)
    again = train_audiobert(wh, config, "published-2", on_epoch=epochs.append)
    assert again.reused and again.run_id == "published-1" and len(epochs) == started
    assert not (wh.root / "models" / "published-2").exists()
    assert again.test_accuracy == summary.test_accuracy
    # a changed item set is new data: no reuse
    with (tmp_path / "sound_pitch_comparsion_train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "answer", "span1", "span2"])
        writer.writerow(["A bell has a [MASK] pitch than a drum.", "higher", "bell", "drum"])
    import_published_csv(wh, tmp_path / "sound_pitch_comparsion_train.csv")
    from pipeline.training.data import load_items
    from pipeline.training.train import data_fingerprint, reusable_model

    items = load_items(wh, list(config.tasks))
    changed = data_fingerprint(items, "hf:tiny-random-hf-clap:" + str(index["crop_policy"]))
    assert changed != metrics["data_fingerprint"]
    assert reusable_model(wh, config.fingerprint(), changed) is None


# ---- a training deployment no worker picks up ----------------------------------------------------


def test_deployment_without_worker_times_out_and_leaves_no_run(prefect_harness: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    from flows.stages.train import wait_for_deployment_run
    from flows.train import train_flow
    from pipeline.errors import ForgeError

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(train_flow)
        client.create_deployment(flow_id=flow_id, name="no-worker")
    flow_run = run_deployment(name="train/no-worker", parameters={}, timeout=0)
    with pytest.raises(ForgeError, match=r"no worker started flow run .* within 1 s"):
        wait_for_deployment_run("train/no-worker", flow_run.id, 1.0, poll_s=0.2)
    with get_client(sync_client=True) as client, pytest.raises(ObjectNotFound):
        client.read_flow_run(flow_run.id)
