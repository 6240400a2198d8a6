"""Decode clips in parallel and feed fixed-size crop batches to the model.

Decoding (soundfile, soxr resampling, crop cutting) runs in a thread pool — those
libraries release the GIL — with a bounded number of clips in flight, while the calling
thread runs the model on full batches. So the model never waits on I/O as long as the
decoders keep up, and memory stays bounded however many clips are streamed.

`StreamTimer` records how long the model ran versus the whole stream (the model busy
fraction; on CUDA it synchronises so the figure is the device's, for `bench/clap.py`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.audio.io import AudioLoadError, ClipLocation, load_clip_audio
from pipeline.clap.crops import pool_crops
from pipeline.clap.scorer import ClapScorer

Decoder = Callable[[ClipLocation, int], np.ndarray]


@dataclass
class ClipResult:
    """One clip's outcome: a pooled embedding, or the reason it has none."""

    clip_id: str
    embedding: np.ndarray | None = None
    n_crops: int = 0
    audio_seconds: float | None = None
    failure: AudioLoadError | None = None


@dataclass
class StreamTimer:
    model_seconds: float = 0.0
    wall_seconds: float = 0.0
    batches: int = 0
    crops: int = 0
    decoded: int = 0

    @property
    def model_busy_fraction(self) -> float:
        return self.model_seconds / self.wall_seconds if self.wall_seconds else 0.0


@dataclass
class _Decoded:
    clip_id: str
    crops: np.ndarray | None
    seconds: float | None
    failure: AudioLoadError | None


@dataclass
class _Pending:
    result: ClipResult
    embeddings: list[np.ndarray] = field(default_factory=list)


def _decode(scorer: ClapScorer, clip_id: str, location: ClipLocation, decoder: Decoder) -> _Decoded:
    try:
        audio = decoder(location, scorer.sample_rate)
    except AudioLoadError as failure:
        return _Decoded(clip_id, None, None, failure)
    return _Decoded(clip_id, scorer.crops_for(audio), audio.shape[-1] / scorer.sample_rate, None)


def embed_clip_stream(
    scorer: ClapScorer,
    clips: Iterable[tuple[str, ClipLocation]],
    *,
    workers: int | None = None,
    decoder: Decoder = load_clip_audio,
    timer: StreamTimer | None = None,
) -> Iterator[ClipResult]:
    """Yield a ClipResult per (clip_id, location), embeddings pooled by the crop policy.

    Failed clips are yielded as soon as their decode fails; embedded clips as soon as
    their last crop has been through the model. Order follows completion, not input.
    """
    timer = timer if timer is not None else StreamTimer()
    started = time.perf_counter()
    batch_size = scorer.config.batch_size
    workers = workers or scorer.config.decode_workers
    max_in_flight = max(2 * workers, batch_size + workers)
    sync = scorer.device.type == "cuda"
    # (pending key, one model-input row), one queue per row shape: waveform crops, and
    # whole-clip feature views where the crop policy builds those (fused reference crops).
    queues: dict[tuple[int, ...], deque[tuple[int, np.ndarray]]] = {}
    pending: dict[int, _Pending] = {}

    def run_batch(queue: deque[tuple[int, np.ndarray]], limit: int) -> Iterator[ClipResult]:
        rows = [queue.popleft() for _ in range(min(limit, len(queue)))]
        t0 = time.perf_counter()
        embeddings = scorer.embed_crop_batch(np.stack([crop for _, crop in rows]))
        if sync:
            torch.cuda.synchronize()
        timer.model_seconds += time.perf_counter() - t0
        timer.batches += 1
        timer.crops += len(rows)
        for (key, _), vector in zip(rows, embeddings, strict=True):
            entry = pending[key]
            entry.embeddings.append(vector)
            if len(entry.embeddings) == entry.result.n_crops:
                entry.result.embedding = pool_crops(np.stack(entry.embeddings))
                del pending[key]
                yield entry.result

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clap-decode") as pool:
        futures: deque[Future[_Decoded]] = deque()
        source = iter(clips)
        exhausted = False
        key = 0
        while True:
            while not exhausted and len(futures) < max_in_flight:
                try:
                    clip_id, location = next(source)
                except StopIteration:
                    exhausted = True
                    break
                futures.append(pool.submit(_decode, scorer, clip_id, location, decoder))
            if not futures:
                break
            decoded = futures.popleft().result()
            timer.decoded += 1
            if decoded.failure is not None or decoded.crops is None:
                yield ClipResult(decoded.clip_id, failure=decoded.failure)
                continue
            key += 1
            pending[key] = _Pending(
                ClipResult(
                    decoded.clip_id, n_crops=len(decoded.crops), audio_seconds=decoded.seconds
                )
            )
            queue = queues.setdefault(decoded.crops.shape[1:], deque())
            queue.extend((key, crop) for crop in decoded.crops)
            while len(queue) >= batch_size:
                yield from run_batch(queue, batch_size)
        for queue in queues.values():
            while queue:
                yield from run_batch(queue, batch_size)
    timer.wall_seconds += time.perf_counter() - started
