"""Fixed-length crops: how a clip of any length becomes CLAP input.

CLAP checkpoints are trained on 10 s windows at 48 kHz; fixed-length inputs also batch
without per-clip padding logic. Rules (DESIGN §4: zero padding hurts scores):

* shorter than a crop → the clip is repeated end to end until it fills the crop
  (`repeat`, never zero padding);
* longer → `mean` policy (default): up to `max_crops` crops spread evenly from the start
  to the end of the clip (the last one ends at the clip's end, so nothing is padded),
  each embedded, embeddings averaged and re-normalised. We average rather than keep
  the loudest crop because captions and generated spans describe the whole clip: a
  quiet event (birds behind traffic) is as much "in" the clip as the loudest second.
  `loudest` policy: the single crop with the highest RMS, for users who want one
  forward pass per clip.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.clap.config import CropPolicy


def repeat_to_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Tile a short signal end to end and cut it to exactly `length` samples."""
    if audio.shape[-1] >= length:
        return audio[..., :length]
    repeats = math.ceil(length / audio.shape[-1])
    return np.tile(audio, repeats)[:length]


def crop_starts(n_samples: int, crop_samples: int, max_crops: int) -> list[int]:
    """Start offsets of evenly spread crops covering a clip longer than one crop."""
    if n_samples <= crop_samples:
        return [0]
    count = min(max_crops, math.ceil(n_samples / crop_samples))
    if count == 1:
        return [(n_samples - crop_samples) // 2]
    last = n_samples - crop_samples
    return [round(i * last / (count - 1)) for i in range(count)]


def make_crops(
    audio: np.ndarray, crop_samples: int, policy: CropPolicy, max_crops: int
) -> np.ndarray:
    """(n_crops, crop_samples) float32 crops of a mono clip, by the crop policy."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.shape[0] <= crop_samples:
        return repeat_to_length(audio, crop_samples)[None, :]
    if policy == "loudest":
        starts = crop_starts(audio.shape[0], crop_samples, math.ceil(audio.shape[0] / crop_samples))
        energy = [float(np.mean(audio[s : s + crop_samples] ** 2)) for s in starts]
        best = starts[int(np.argmax(energy))]
        return audio[None, best : best + crop_samples].copy()
    starts = crop_starts(audio.shape[0], crop_samples, max_crops)
    return np.stack([audio[s : s + crop_samples] for s in starts])


def pool_crops(embeddings: np.ndarray) -> np.ndarray:
    """Average L2-normalised crop embeddings of one clip and re-normalise."""
    mean = embeddings.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
