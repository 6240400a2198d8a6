"""Checkpoints load without running code: a pickle payload is refused by every loader.

The payload writes a marker file when unpickled; each test first shows that the payload
is live (a plain unpickle writes the marker) so the assertion that it did not run can fail.
"""

from __future__ import annotations

import argparse
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.clap.scorer import read_laion_checkpoint
from pipeline.errors import ForgeError, MissingArtifactError
from pipeline.storage.checkpoints import (
    NUMPY_ARRAYS,
    UnsafeCheckpointError,
    convert_checkpoint,
    load_checkpoint,
    main,
)
from pipeline.training.loop import BEST, LAST, LoopSettings, fit


class WritesMarker:
    """Unpickling this calls Path.write_text(marker, ...): stands in for os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "payload ran"))


def plant(path: Path, marker: Path, **contents: object) -> Path:
    torch.save({**contents, "extra": WritesMarker(marker)}, path)
    probe = marker.with_name(marker.name + ".probe")
    torch.save(WritesMarker(probe), path.with_name("probe.pt"))
    torch.load(path.with_name("probe.pt"), weights_only=False)  # the payload is live
    assert probe.read_text() == "payload ran"
    return path


def laion_state() -> dict[str, torch.Tensor]:
    """A LAION-style state dict: DataParallel prefixes and the old position_ids buffer."""
    return {
        "module.logit_scale_a": torch.tensor(2.5),
        "module.audio_branch.patch_embed.proj.weight": torch.randn(4, 1, 2, 2),
        "module.text_branch.embeddings.position_ids": torch.arange(8)[None],
    }


def test_laion_loader_refuses_a_payload(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = plant(tmp_path / "clap.pt", marker, epoch=3, state_dict=laion_state())
    with pytest.raises(UnsafeCheckpointError) as refused:
        read_laion_checkpoint(path)
    assert not marker.exists()
    message = str(refused.value)
    assert len(message.splitlines()) == 1
    assert str(path) in message and "references getattr" in message
    assert "python -m pipeline.storage.checkpoints" in message


def test_laion_checkpoint_as_the_trainer_saves_it_loads_weights_only(tmp_path: Path) -> None:
    # LAION-AI/CLAP training/main.py: epoch, name, state_dict, optimizer, and scaler with AMP.
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scaler = torch.amp.GradScaler("cpu")
    state = laion_state()
    torch.save(
        {
            "epoch": 45,
            "name": "630k-audioset",
            "state_dict": state,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
        },
        tmp_path / "630k.pt",
    )
    loaded, meta = read_laion_checkpoint(tmp_path / "630k.pt")
    assert set(loaded) == {"logit_scale_a", "audio_branch.patch_embed.proj.weight"}
    assert torch.equal(loaded["logit_scale_a"], state["module.logit_scale_a"])
    assert meta == {}


def test_a_refused_checkpoint_converts_and_then_loads(tmp_path: Path) -> None:
    # Checkpoints that pickle the training arguments (argparse.Namespace) are common.
    state = laion_state()
    src = tmp_path / "with_args.pt"
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=1e-4)}, src)
    with pytest.raises(UnsafeCheckpointError, match=r"argparse\.Namespace"):
        read_laion_checkpoint(src)
    with pytest.raises(UnsafeCheckpointError) as refused:
        read_laion_checkpoint(src)
    converted = tmp_path / "with_args.weights.pt"
    assert f"python -m pipeline.storage.checkpoints {src} {converted}" in str(refused.value)
    assert main([str(src), str(converted)]) == 0
    loaded, _ = read_laion_checkpoint(converted)
    assert torch.equal(
        loaded["audio_branch.patch_embed.proj.weight"],
        state["module.audio_branch.patch_embed.proj.weight"],
    )
    assert "text_branch.embeddings.position_ids" not in loaded
    assert convert_checkpoint(src, tmp_path / "as.safetensors") == len(state)
    again, _ = read_laion_checkpoint(tmp_path / "as.safetensors")
    assert set(again) == set(loaded)


def test_not_a_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ForgeError, match=r"junk\.pt: not a readable LAION CLAP checkpoint"):
        read_laion_checkpoint(junk)
    with pytest.raises(MissingArtifactError):
        load_checkpoint(tmp_path / "absent.pt")
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x00" * 16)
    with pytest.raises(ForgeError, match=r"fake\.safetensors: not a readable"):
        load_checkpoint(fake)


def test_numpy_arrays_are_allowed_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "rng.pt"
    torch.save({"numpy": np.random.get_state(), "python": random.getstate()}, path)
    with pytest.raises(UnsafeCheckpointError, match="numpy"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, allow=NUMPY_ARRAYS)
    assert np.array_equal(loaded["numpy"][1], np.random.get_state()[1])
    # The allow-list stays per call: nothing leaked into torch's process-wide list.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def tiny_fit(work_dir: Path) -> None:
    torch.manual_seed(0)
    fit(
        nn.Linear(2, 1),
        4,
        lambda idx: torch.ones(len(idx), 2),
        lambda module, batch: module(batch).pow(2).mean(),
        LoopSettings(epochs=1, batch_size=2, lr=1e-2, seed=0, bf16=False, progress=False),
        work_dir,
        torch.device("cpu"),
    )


@pytest.mark.parametrize("name", [LAST, BEST])
def test_training_files_refuse_a_payload(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    work = tmp_path / "work"
    work.mkdir()
    plant(work / name, marker, trainable={}, epoch=0)
    with pytest.raises(UnsafeCheckpointError, match=name):
        tiny_fit(work)
    assert not marker.exists()


def test_training_resume_file_with_numpy_rng_state_still_loads(tmp_path: Path) -> None:
    tiny_fit(tmp_path / "work")  # writes last.pt (with the NumPy RNG state)
    checkpoint = load_checkpoint(tmp_path / "work" / LAST, allow=NUMPY_ARRAYS)
    assert checkpoint["epoch"] == 1 and checkpoint["global_step"] == 2
    tiny_fit(tmp_path / "work")  # resumes from it: nothing left to train, no error
