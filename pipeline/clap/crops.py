"""Fixed-length crops: how a clip of any length becomes CLAP input.

CLAP checkpoints are trained on 10 s windows at 48 kHz. Facts from the references,
matched here and checked by tests/clap/test_clap_parity.py:

* laion-clap 1.1.7 `training/data.py::get_audio_features` with `data_filling="repeatpad"`
  and transformers' `ClapFeatureExtractor(padding="repeatpad")`: a clip shorter than the
  window is repeated a whole number of times (`int(window / length)`), then zero-padded
  at the end to the window. Never a partial repeat.
* Longer clips, unfused models (`rand_trunc`): one crop starting at
  `np.random.randint(0, overflow + 1)` from numpy's global generator
  (overflow = length - window). Fused transformers models (`truncation="fusion"`): the
  log-mel of the whole clip, three chunks drawn with `np.random.choice` from the front,
  middle and back thirds of the possible start frames, plus the whole mel shrunk
  bilinearly to one chunk (`fusion_chunk_starts`, and `HfClapScorer`).
* laion-clap's `get_audio_embedding_from_data` quantises to int16 first with
  `(np.clip(x, -1, 1) * 32767.).astype(np.int16) / 32767.`: truncation toward zero.

Crop policies for clips longer than the window (the policy is part of each stored
embedding's identity, `ClapScorer.crop_policy`):

* `mean` (default): up to `max_crops` crops spread evenly from the start to the end of
  the clip, each embedded as if it were a clip of its own, embeddings averaged and
  re-normalised (a clip less than 1 % longer than the window is one crop from its start). Deterministic, and captions describe the whole clip: a quiet event
  (birds behind traffic) is as much "in" the clip as the loudest ten seconds.
* `reference`: exactly the reference call on that clip alone right after
  `np.random.seed(crop_seed)` (so one random crop, or the fused three-chunk view):
  reproducible, and equal to what a user of laion-clap / transformers gets.
* `loudest`: the single crop with the highest RMS (one forward pass per clip).
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.clap.config import CropPolicy

# Names the preprocessing (repeatpad filling, int16 truncation, fused `is_longer` rule) in
# the stored policy: embeddings made by earlier preprocessing never match this key.
PREPROCESSING = "repeatpad"


def repeatpad(audio: np.ndarray, length: int) -> np.ndarray:
    """Whole repeats of a short signal, then zeros up to `length` (longer input is cut)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.shape[-1] >= length:
        return audio[..., :length]
    repeated = np.tile(audio, length // audio.shape[-1])
    return np.pad(repeated, (0, length - repeated.shape[-1]))


def reference_crop_start(n_samples: int, crop_samples: int, seed: int) -> int:
    """The start laion-clap / `rand_trunc` picks after `np.random.seed(seed)`."""
    return int(np.random.RandomState(seed).randint(0, n_samples - crop_samples + 1))


def fusion_chunk_starts(total_frames: int, chunk_frames: int, seed: int) -> tuple[int, int, int]:
    """Front, middle and back chunk start frames the fused extractor draws after
    `np.random.seed(seed)` (same ranges, same draws in the same order)."""
    ranges = np.array_split(list(range(0, total_frames - chunk_frames + 1)), 3)
    rng = np.random.RandomState(seed)
    picks = [rng.choice(part if len(part) else [0]) for part in ranges]
    return int(picks[0]), int(picks[1]), int(picks[2])


# Resampling rounds the length up: a 10 s file at 44.1 kHz becomes 480,001 samples at 48 kHz
# (librosa.load does the same). A clip at most this much longer than a crop is one crop
# from its start, not two near-identical crops at twice the cost.
NEGLIGIBLE_OVERFLOW = 0.01


def crop_starts(n_samples: int, crop_samples: int, max_crops: int) -> list[int]:
    """Start offsets of evenly spread crops covering a clip longer than one crop."""
    if n_samples <= crop_samples * (1 + NEGLIGIBLE_OVERFLOW):
        return [0]
    count = min(max_crops, math.ceil(n_samples / crop_samples))
    if count == 1:
        return [(n_samples - crop_samples) // 2]
    last = n_samples - crop_samples
    return [round(i * last / (count - 1)) for i in range(count)]


def make_crops(
    audio: np.ndarray, crop_samples: int, policy: CropPolicy, max_crops: int, seed: int = 0
) -> np.ndarray:
    """(n_crops, crop_samples) float32 crops of a mono clip, by the crop policy."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.shape[0] <= crop_samples:
        return repeatpad(audio, crop_samples)[None, :]
    if policy == "reference":
        start = reference_crop_start(audio.shape[0], crop_samples, seed)
        return audio[None, start : start + crop_samples].copy()
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
