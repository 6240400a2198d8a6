"""AudioBERT training throughput, peak memory, and time spent outside the model.

Measures in one process, on synthetic AuditoryBench-style items (both tasks) with random
512-d audio embeddings standing in for CLAP vectors (their values do not change the cost):

  loop       pipeline.training.loop.fit: batches built from injection plans -> forward ->
             backward -> clip -> AdamW -> cosine schedule (what `forge train` runs)
  baseline   the bare model step on one pre-built batch (forward+backward+AdamW), no data
  retrieval  RetrievalIndex.search (cosine top-1 over N clips) for every span of the items
             in one call, as evaluation does, against the eval forward passes of the items

Prints steps/s, samples/s, peak memory, the loop/baseline ratio and the fraction of step
time outside the model (target < 10 %). Every timing is the fastest of 3 rounds.

  python bench/train.py                         # small CPU config: packaged MiniLM, batch 8
  python bench/train.py --published --device cuda   # bert-base shape, batch 32, bf16 (GPU)

`--published` builds a bert-base-uncased-shaped BERT with random weights (throughput does
not depend on the weights, and the hub is not reachable here); pass `--backbone PATH` to
time a real checkpoint instead.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.training.artifacts import build_audiobert
from pipeline.training.backbone import load_tokenizer, resolve_backbone
from pipeline.training.config import PACKAGED_MINILM, TrainConfig
from pipeline.training.data import Example, encode_examples
from pipeline.training.inputs import Prepared, make_batch
from pipeline.training.loop import LoopSettings, fit
from pipeline.training.retrieval import RetrievalIndex

AUDIO_DIM = 512
ROUNDS = 3
ANIMALS = [("a deep woof", "dog"), ("a soft meow", "cat"), ("a long moo", "cow"),
           ("a shrill chirping", "bird"), ("a loud neigh", "horse"), ("an oink", "pig")]  # fmt: skip
SOURCES = ["a church bell", "a bass drum", "a kettle whistle", "an idling truck engine",
           "a violin solo", "distant thunder", "a crying baby", "a dripping tap"]  # fmt: skip


def synthetic_examples(n: int) -> list[Example]:
    out: list[Example] = []
    for i in range(n):
        if i % 2:
            sound, animal = ANIMALS[i % len(ANIMALS)]
            out.append(Example(f"a{i}", "auditorybench-animal", "train",
                               f"In the barn at night, {sound} is the sound a [MASK] makes.",
                               animal, [sound], [f"c{i}"]))  # fmt: skip
        else:
            a, b = SOURCES[i % len(SOURCES)], SOURCES[(i + 3) % len(SOURCES)]
            out.append(Example(f"p{i}", "auditorybench-pitch", "train",
                               f"The sound of {a} typically has a [MASK] pitch than the sound of {b}.",
                               "higher" if i % 4 else "lower",
                               [f"sound of {a}", f"sound of {b}"], [f"c{i}", f"d{i}"]))  # fmt: skip
    return out


def published_backbone(folder: Path) -> str:
    """A bert-base-uncased-shaped masked LM with random weights + the uncased vocabulary."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(PACKAGED_MINILM).location)
    BertForMaskedLM(BertConfig(vocab_size=len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def timed(action, repeats: int, sync) -> float:
    """Mean seconds per call over `repeats` calls."""
    t0 = time.perf_counter()
    for _ in range(repeats):
        action()
    sync()
    return (time.perf_counter() - t0) / repeats


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--published", action="store_true", help="bert-base shape, batch 32")
    parser.add_argument("--backbone", default=None, help="checkpoint path or hub id to time")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--examples", type=int, default=None, help="items in the epoch timed")
    parser.add_argument("--index-clips", type=int, default=100_000)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    device = torch.device(args.device)
    batch_size = args.batch_size or (32 if args.published else 8)
    n_examples = args.examples or batch_size * (40 if device.type == "cuda" else 12)

    with tempfile.TemporaryDirectory() as tmp:
        backbone = args.backbone or (
            published_backbone(Path(tmp) / "bert-base") if args.published else PACKAGED_MINILM
        )
        label = (
            "bert-base shape (random weights)" if args.published and not args.backbone else backbone
        )
        config = TrainConfig.from_mapping({"backbone": backbone, "batch_size": batch_size})
        tokenizer = load_tokenizer(resolve_backbone(backbone))
        model, _, _ = build_audiobert(config, AUDIO_DIM)
        model.to(device)
        rng = np.random.default_rng(0)
        encoded = encode_examples(tokenizer, synthetic_examples(n_examples), config.max_length)
        plans = [
            Prepared(e, e.span_positions, rng.standard_normal((len(e.span_positions), AUDIO_DIM)).astype(np.float32))
            for e in encoded
        ]  # fmt: skip
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        print(f"backbone {label}; device {device.type}; batch {batch_size}; {len(plans)} items; "
              f"LoRA r={config.lora.r}; trainable {trainable / 1e6:.2f} M of {total / 1e6:.1f} M params")  # fmt: skip

        # ---- baseline: bare model step on one fixed batch -------------------------------
        batch = make_batch(plans[:batch_size], tokenizer.pad_token_id, AUDIO_DIM).to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-6)
        autocast = device.type == "cuda"
        model.train()

        def bare_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss, _ = model(batch)
            loss.backward()
            optimizer.step()

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()

        bare_step()  # warm-up (allocations, kernels)
        sync()
        # Each figure is the fastest of ROUNDS rounds: a shared machine only ever adds time.
        repeats = max(3, len(plans) // batch_size // 2)
        bare_rounds = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            for _ in range(repeats):
                bare_step()
            sync()
            bare_rounds.append((time.perf_counter() - t0) / repeats)
        bare_s = min(bare_rounds)

        # ---- the training loop, one epoch per round --------------------------------------
        settings = LoopSettings(epochs=1, batch_size=batch_size, lr=1e-6, seed=0, progress=False)
        loop_rounds = []
        for round_index in range(ROUNDS):
            t0 = time.perf_counter()
            result = fit(
                model,
                len(plans),
                lambda idx: make_batch([plans[i] for i in idx], tokenizer.pad_token_id, AUDIO_DIM),
                lambda module, b: module(b)[0],
                settings,
                Path(tmp) / f"work{round_index}",
                device,
            )
            sync()
            loop_rounds.append((time.perf_counter() - t0, result))
        loop_s, result = min(loop_rounds, key=lambda pair: pair[0])
        steps = result.global_step
        step_s = loop_s / steps
        outside = result.data_seconds / (result.data_seconds + result.model_seconds)

        # ---- retrieval vs model forward at evaluation ------------------------------------
        index_vectors = rng.standard_normal((args.index_clips, AUDIO_DIM)).astype(np.float32)
        index = RetrievalIndex(
            "bench", "random", [f"c{i}" for i in range(args.index_clips)], index_vectors
        )
        # Evaluation retrieves every span of a split in one call (pipeline_plans), then runs
        # the model over the split in eval batches: compare the two for the same items.
        spans = sum(len(p.positions) for p in plans)
        queries = rng.standard_normal((spans, AUDIO_DIM)).astype(np.float32)
        index.search(queries, 1)
        search_s = min(timed(lambda: index.search(queries, 1), 3, sync) for _ in range(ROUNDS))
        eval_batches = [
            make_batch(plans[i : i + 64], tokenizer.pad_token_id, AUDIO_DIM).to(device)
            for i in range(0, len(plans), 64)
        ]
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):

            def forward_split() -> None:
                for eval_batch in eval_batches:
                    model(eval_batch)

            forward_split()
            forward_s = min(timed(forward_split, 3, sync) for _ in range(ROUNDS))

    print(
        f"baseline (bare model step, fixed batch): {1 / bare_s:7.2f} steps/s  {batch_size / bare_s:8.1f} samples/s"
    )
    print(f"training loop (fit, 1 epoch, {steps} steps): {1 / step_s:7.2f} steps/s  {batch_size / step_s:8.1f} samples/s"
          f"  (loop/baseline step time {step_s / bare_s:.2f}x)")  # fmt: skip
    print(f"time outside the model in the loop (batch building): {100 * outside:.2f} % "
          f"(data {result.data_seconds:.3f} s, model {result.model_seconds:.3f} s; target < 10 %)")  # fmt: skip
    print(f"evaluation of {len(plans)} items: retrieval of their {spans} spans over {args.index_clips} clips "
          f"{1000 * search_s:.1f} ms vs the eval forward passes {1000 * forward_s:.1f} ms "
          f"(retrieval {100 * search_s / (search_s + forward_s):.1f} % of the two; CLAP text tower not included)")  # fmt: skip
    print(
        f"peak memory: {peak_memory_mb(device):.0f} MiB ({'CUDA allocated' if device.type == 'cuda' else 'process RSS'})"
    )


if __name__ == "__main__":
    main()
