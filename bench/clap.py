"""CLAP audio-embedding throughput: our scorer vs the per-file loop a user would write.

Both paths embed the same N synthetic 10 s clips (FLAC files at 44.1 kHz, like Clotho
and AudioCaps audio, so both must resample to CLAP's 48 kHz) with the same transformers
ClapModel, in one process, one after the other:

  naive   for each file: librosa.load(path, sr=48000) -> ClapProcessor(audio=...) ->
          model.get_audio_features(...)  (the HF model card's recipe, one clip at a time)
  forge   pipeline.clap.embeddings.ensure_clip_embeddings: decode + resample + crop in a
          thread pool feeding batches, log-mel for the whole batch in torch, embeddings
          written to the warehouse (the full stored path, storage included)

Model sizes (random weights; speed does not depend on the values):
  small   HTSAT audio tower at reduced width/depth (patch_embeds_hidden_size 32, depths
          [1,1,2,1], heads [1,2,4,8]) + 2-layer text tower: the model costs about as much
          as the audio I/O, as with a small or distilled CLAP on a GPU-less machine
  htsat   the real HTSAT-tiny audio tower size of laion/clap-htsat-unfused (96, [2,2,6,2],
          heads [4,8,16,32]): on CPU the model dominates and batching cannot hide much

Prints clips/s (medians), the ratio forge/naive (median of `--repeats` alternating runs, with
min and max), the peak RSS growth of each phase (sampled, last repeat), and on CUDA the
model busy fraction of the forge path. Usage:
  python bench/clap.py [--clips 48] [--size small|htsat] [--batch-size 16] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf
import torch

FILE_RATE = 44_100


class PeakRss:
    """Samples this process's RSS every 10 ms; `peak_mib` is the growth over the start."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def write_clips(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    t = np.arange(10 * FILE_RATE) / FILE_RATE
    paths = []
    for i in range(n):
        f0 = 110.0 * 2 ** (i % 24 / 12)
        tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5))
        audio = 0.3 * tone / 2.1 + 0.05 * rng.standard_normal(t.shape)
        path = folder / f"clip{i:04d}.flac"
        sf.write(path, audio.astype(np.float32), FILE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def model_config(size: str, vocab_size: int):  # -> transformers.ClapConfig
    from transformers import ClapConfig as HfClapConfig

    audio = {
        "small": {
            "patch_embeds_hidden_size": 32,
            "hidden_size": 256,
            "depths": [1, 1, 2, 1],
            "num_attention_heads": [1, 2, 4, 8],
        },
        "htsat": {
            "patch_embeds_hidden_size": 96,
            "hidden_size": 768,
            "depths": [2, 2, 6, 2],
            "num_attention_heads": [4, 8, 16, 32],
        },
    }[size]
    text = {
        "vocab_size": vocab_size,
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 256,
        "max_position_embeddings": 80,
    }
    return HfClapConfig(text_config=text, audio_config=audio, projection_dim=512)


def clip_rows(paths: list[Path], audio_root: Path) -> list[dict]:
    from pipeline.storage.warehouse import utc_now

    return [
        {
            "clip_id": f"bench:{p.name}",
            "source": "clotho",
            "audio_path": p.name,
            "audio_root": str(audio_root),
            "source_file": "bench",
            "run_id": "bench",
            "ingested_at": utc_now(),
        }
        for p in paths
    ]


def naive_loop(model, processor, paths: list[Path], device: torch.device) -> np.ndarray:
    import librosa

    out = []
    for path in paths:
        audio, _ = librosa.load(path, sr=48_000)
        inputs = processor(audio=audio, sampling_rate=48_000, return_tensors="pt").to(device)
        with torch.no_grad():
            out.append(model.get_audio_features(**inputs).pooler_output.cpu().numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--size", choices=["small", "htsat"], default="small")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="alternating naive/forge runs")
    args = parser.parse_args()

    from pipeline.clap.config import ClapConfig
    from pipeline.clap.embeddings import ensure_clip_embeddings, load_clip_embeddings
    from pipeline.clap.scorer import HfClapScorer, resolve_device
    from pipeline.clap.tiny import build_tiny_hf_parts, build_tiny_tokenizer
    from pipeline.storage import Warehouse

    device = resolve_device("auto")
    model, processor = build_tiny_hf_parts(
        seed=0, model_config=model_config(args.size, len(build_tiny_tokenizer()))
    )
    model = model.eval().to(device)
    config = ClapConfig(
        backend="hf",
        checkpoint=f"bench-random-{args.size}",
        batch_size=args.batch_size,
        decode_workers=args.workers,
    )
    scorer = HfClapScorer(config, model, processor, f"bench-random-{args.size}", device)
    params = sum(p.numel() for p in model.audio_model.parameters()) / 1e6

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "audio").mkdir()
        paths = write_clips(root / "audio", args.clips)
        ids = [f"bench:{p.name}" for p in paths]
        # Warm-up: first calls pay one-off costs (librosa/soxr init, torch kernels).
        naive_loop(model, processor, paths[:2], device)
        scorer.embed_audio(np.zeros((2, 480_000), np.float32) + 0.1)

        # Naive and forge alternate, each repeat on a fresh warehouse (nothing cached), so
        # both see the same swings of a shared machine's load; the median ratio is reported.
        naive_times, forge_times = [], []
        for repeat in range(args.repeats):
            with PeakRss() as naive_mem:
                t0 = time.perf_counter()
                naive = naive_loop(model, processor, paths, device)
                naive_times.append(time.perf_counter() - t0)
            wh = Warehouse(root / f"warehouse-{repeat}")
            wh.write_partition("clips", "source=bench", clip_rows(paths, root / "audio"))
            with PeakRss() as forge_mem:
                t0 = time.perf_counter()
                summary = ensure_clip_embeddings(wh, scorer, ids, "bench")
                forge_times.append(time.perf_counter() - t0)
            assert summary.computed == args.clips, summary
        _, ours = load_clip_embeddings(wh, "hf", scorer.checkpoint_id, ids)
        naive /= np.linalg.norm(naive, axis=1, keepdims=True)
        agreement = float(np.min(np.sum(naive * ours, axis=1)))
    ratios = sorted(n / f for n, f in zip(naive_times, forge_times, strict=True))
    naive_s, forge_s = float(np.median(naive_times)), float(np.median(forge_times))

    print(
        f"device: {device}; torch threads: {torch.get_num_threads()}; size: {args.size} "
        f"({params:.1f} M audio-tower parameters); clips: {args.clips} x 10 s at {FILE_RATE} Hz; "
        f"batch {args.batch_size}, decode workers {args.workers}"
    )
    print(
        f"naive per-file loop : {args.clips / naive_s:7.2f} clips/s  ({naive_s:6.1f} s)  "
        f"peak RSS +{naive_mem.peak_mib:.0f} MiB"
    )
    print(
        f"forge scorer        : {args.clips / forge_s:7.2f} clips/s  ({forge_s:6.1f} s)  "
        f"peak RSS +{forge_mem.peak_mib:.0f} MiB"
    )
    print(
        f"ratio forge/naive   : {float(np.median(ratios)):.2f}x median of {len(ratios)} "
        f"alternating repeats (min {ratios[0]:.2f}x, max {ratios[-1]:.2f}x)"
    )
    print(f"min cosine(naive, forge) per clip: {agreement:.5f} (same embeddings)")
    busy = summary.model_busy_fraction
    if device.type == "cuda":
        print(f"GPU busy fraction (model time / wall, synchronised): {busy:.2f}")
    else:
        print(f"model busy fraction on CPU (model time / wall): {busy:.2f}")


if __name__ == "__main__":
    main()
