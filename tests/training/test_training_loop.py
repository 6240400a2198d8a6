"""The training loop: interrupted + resumed equals uninterrupted (schedule, step, weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.training.artifacts import build_audiobert
from pipeline.training.config import TrainConfig
from pipeline.training.data import Example, encode_examples
from pipeline.training.inputs import Prepared, make_batch
from pipeline.training.loop import LAST, LoopSettings, fit, trainable_state

AUDIO_DIM = 8
SENTENCES = [
    ("Miauw is the sound a [MASK] makes.", "cat", "Miauw"),
    ("bark is the sound a [MASK] makes.", "dog", "bark"),
    ("the loud bark is the sound a [MASK] makes.", "dog", "loud bark"),
    ("a loud miauw is the sound a [MASK] makes.", "cat", "loud miauw"),
    ("the ringing is the sound a [MASK] makes.", "bell", "ringing"),
]


class Interrupted(Exception):
    pass


def run(backbone: Path, tokenizer, work: Path, stop_at: int | None = None):
    config = TrainConfig.from_mapping(
        {"backbone": str(backbone), "lora": {"r": 4, "alpha": 8, "dropout": 0.1}, "seed": 3}
    )
    model, _, _ = build_audiobert(config, AUDIO_DIM)
    examples = [
        Example(f"i{i}", "auditorybench-animal", "train", s, a, [span])
        for i, (s, a, span) in enumerate(SENTENCES)
    ]
    encoded = encode_examples(tokenizer, examples, 64)
    rng = np.random.default_rng(0)
    plans = [
        Prepared(e, e.span_positions, rng.standard_normal((1, AUDIO_DIM)).astype(np.float32))
        for e in encoded
    ]
    settings = LoopSettings(
        epochs=3,
        batch_size=1,
        grad_accum_steps=2,
        lr=1e-2,
        seed=3,
        warmup_ratio=0.2,
        checkpoint_every_steps=1,
        progress=False,
    )

    def on_step(step: int) -> None:
        if step == stop_at:
            raise Interrupted

    result = fit(
        model,
        len(plans),
        lambda idx: make_batch([plans[i] for i in idx], tokenizer.pad_token_id, AUDIO_DIM),
        lambda module, batch: module(batch)[0],
        settings,
        work,
        torch.device("cpu"),
        on_step=on_step,
    )
    return model, result


def test_resume_from_checkpoint_continues_the_schedule(
    word_backbone, word_tokenizer, tmp_path
) -> None:
    model_a, full = run(word_backbone, word_tokenizer, tmp_path / "a")
    with pytest.raises(Interrupted):
        run(word_backbone, word_tokenizer, tmp_path / "b", stop_at=4)  # mid-epoch 2
    checkpoint = torch.load(tmp_path / "b" / LAST, weights_only=False)
    assert (checkpoint["epoch"], checkpoint["step_in_epoch"], checkpoint["global_step"]) == (
        1,
        1,
        4,
    )
    model_b, resumed = run(word_backbone, word_tokenizer, tmp_path / "b")
    assert resumed.resumed_from_step == 4
    assert (
        (resumed.global_step, resumed.total_steps) == (full.global_step, full.total_steps) == (9, 9)
    )
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in full.history]
    assert [h["train_loss"] for h in resumed.history] == pytest.approx(
        [h["train_loss"] for h in full.history], rel=1e-5
    )
    state_a, state_b = trainable_state(model_a), trainable_state(model_b)
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        torch.testing.assert_close(state_a[name], state_b[name], rtol=1e-5, atol=1e-6)
