"""One training loop for both models: AdamW, cosine schedule with warm-up, grad clipping,
gradient accumulation, bf16 autocast on GPU, best-on-dev, resumable checkpoints.

Resumption is exact: the batch order of every epoch is a function of (seed, epoch), and
the last checkpoint holds the trained tensors, optimizer, scheduler, RNG states and the
position (epoch, step in epoch), so an interrupted run continues the same schedule.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from pipeline.errors import ForgeError
from pipeline.storage.checkpoints import NUMPY_ARRAYS, load_checkpoint

LAST = "last.pt"
BEST = "best.pt"


class DeviceBatch(Protocol):
    def to(self, device: torch.device) -> DeviceBatch: ...

    @property
    def size(self) -> int: ...


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    batch_size: int
    lr: float
    seed: int
    grad_accum_steps: int = 1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    checkpoint_every_steps: int | None = None
    bf16: bool = True
    progress: bool = True
    label: str = "train"


@dataclass
class FitResult:
    global_step: int
    total_steps: int
    best_score: float | None
    best_epoch: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_step: int | None = None
    data_seconds: float = 0.0  # building batches (outside the model)
    model_seconds: float = 0.0  # forward + backward + optimizer step
    samples: int = 0


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in module.named_parameters() if p.requires_grad}


def load_trainable_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(module.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError(
            f"checkpoint does not fit the model: missing {missing[:3]}, extra {extra[:3]}"
        )
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def steps_per_epoch(n: int, settings: LoopSettings) -> int:
    return math.ceil(n / (settings.batch_size * settings.grad_accum_steps)) if n else 0


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def pick_device(choice: str) -> torch.device:
    """`auto`: CUDA when torch sees a GPU, else CPU; `cuda` without a GPU is an error."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ForgeError("device 'cuda' requested but torch sees no GPU")
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(
    module: nn.Module,
    n_examples: int,
    make_batch: Callable[[Sequence[int]], DeviceBatch],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    settings: LoopSettings,
    work_dir: Path,
    device: torch.device,
    evaluate: Callable[[], float] | None = None,
    on_step: Callable[[int], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> FitResult:
    """Train `module`'s trainable parameters; resumes from `work_dir/last.pt` if present.

    `evaluate()` (dev score, higher is better) runs after every epoch; the best epoch's
    trainable tensors are kept in `work_dir/best.pt` and loaded back at the end.
    `on_epoch(history_entry)` reports each finished epoch (orchestrator logs, progress).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    module.to(device)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    per_epoch = steps_per_epoch(n_examples, settings)
    total = per_epoch * settings.epochs
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, math.ceil(settings.warmup_ratio * total), max(total, 1)
    )
    result = FitResult(global_step=0, total_steps=total, best_score=None, best_epoch=None)
    start_epoch, start_step = 0, 0
    resumed_partial: tuple[float, int] = (0.0, 0)
    seed_everything(settings.seed)
    last_path = work_dir / LAST
    if last_path.exists():
        checkpoint = load_checkpoint(last_path, what="training resume file", allow=NUMPY_ARRAYS)
        load_trainable_state(module, checkpoint["trainable"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        _set_rng_state(checkpoint["rng"])
        start_epoch, start_step = checkpoint["epoch"], checkpoint["step_in_epoch"]
        resumed_partial = checkpoint["epoch_partial"]
        result.global_step = checkpoint["global_step"]
        result.best_score, result.best_epoch = checkpoint["best_score"], checkpoint["best_epoch"]
        result.history = checkpoint["history"]
        result.resumed_from_step = result.global_step

    def save_last(epoch: int, step_in_epoch: int, partial: tuple[float, int] = (0.0, 0)) -> None:
        atomic_torch_save(
            {
                "trainable": trainable_state(module),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(),
                "epoch": epoch,
                "step_in_epoch": step_in_epoch,
                "epoch_partial": partial,  # (loss sum, samples) of the unfinished epoch
                "global_step": result.global_step,
                "best_score": result.best_score,
                "best_epoch": result.best_epoch,
                "history": result.history,
            },
            last_path,
        )

    autocast = device.type == "cuda" and settings.bf16
    bar = tqdm(
        total=total,
        initial=result.global_step,
        desc=settings.label,
        disable=True if not settings.progress else None,  # None: only on a TTY
        dynamic_ncols=True,
    )
    micro = settings.batch_size
    per_step = micro * settings.grad_accum_steps
    try:
        for epoch in range(start_epoch, settings.epochs):
            module.train()
            order = epoch_order(n_examples, settings.seed, epoch)
            epoch_start = time.perf_counter()
            first_step = start_step if epoch == start_epoch else 0
            epoch_loss, epoch_samples = resumed_partial if epoch == start_epoch else (0.0, 0)
            timed_samples = 0  # samples trained in this process (throughput after a resume)
            for step in range(first_step, per_epoch):
                step_indices = order[step * per_step : (step + 1) * per_step]
                optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for offset in range(0, len(step_indices), micro):
                    chunk = step_indices[offset : offset + micro]
                    t0 = time.perf_counter()
                    batch = make_batch(chunk).to(device)
                    t1 = time.perf_counter()
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                        loss = loss_fn(module, batch)
                    # Weight by chunk size so accumulation gives the mean over the whole step.
                    (loss * (len(chunk) / len(step_indices))).backward()
                    step_loss += float(loss.detach()) * len(chunk)
                    result.data_seconds += t1 - t0
                    result.model_seconds += time.perf_counter() - t1
                t2 = time.perf_counter()
                torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
                optimizer.step()
                scheduler.step()
                result.model_seconds += time.perf_counter() - t2
                result.global_step += 1
                result.samples += len(step_indices)
                epoch_loss += step_loss
                epoch_samples += len(step_indices)
                timed_samples += len(step_indices)
                elapsed = time.perf_counter() - epoch_start
                bar.update(1)
                bar.set_postfix(
                    epoch=epoch + 1,
                    loss=f"{step_loss / len(step_indices):.4f}",
                    samples_s=f"{timed_samples / max(elapsed, 1e-9):.1f}",
                )
                if (
                    settings.checkpoint_every_steps
                    and result.global_step % settings.checkpoint_every_steps == 0
                    and step + 1 < per_epoch
                ):
                    save_last(epoch, step + 1, (epoch_loss, epoch_samples))
                if on_step is not None:
                    on_step(result.global_step)
            score = evaluate() if evaluate is not None else None
            elapsed = time.perf_counter() - epoch_start
            result.history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": epoch_loss / max(epoch_samples, 1),
                    "dev_score": score,
                    "lr": scheduler.get_last_lr()[0],
                    "samples_per_s": timed_samples / max(elapsed, 1e-9),
                }
            )
            if score is not None and (result.best_score is None or score > result.best_score):
                result.best_score, result.best_epoch = score, epoch + 1
                atomic_torch_save(trainable_state(module), work_dir / BEST)
            save_last(epoch + 1, 0)
            if on_epoch is not None:
                on_epoch({**result.history[-1], "epochs": settings.epochs, "label": settings.label})
    finally:
        bar.close()
    best_path = work_dir / BEST
    if best_path.exists():
        load_trainable_state(module, load_checkpoint(best_path, what="best-epoch weights"))
    return result
