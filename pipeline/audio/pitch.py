"""Measured pitch of a clip: the median f0 of its voiced frames, octave-safe up to 4.4 kHz.

Method (`METHOD`, recorded in every `clip_pitch` row and part of the cache key, so values
measured by an earlier method are never mixed with these): the YIN cumulative mean
normalised difference (de Cheveigné & Kawahara 2002) of 46 ms windows of mono audio
resampled to 44.1 kHz, computed for all frames at once by FFT. Per frame, the period is
the *shortest* lag whose dip lies within `octave_tolerance` of the deepest dip between
1/fmax and 1/fmin: a harmonic tone dips about equally at every multiple of its period,
and noise can make a longer multiple the deepest (the octave-down error pYIN makes at
16 kHz, 3000 Hz → 988 Hz, and at 44.1 kHz under 10 dB SNR). Parabolic interpolation of
the dip gives sub-sample periods (at 4.2 kHz a period is only 10.5 samples). A frame is
voiced when its dip is below `voicing_threshold`; the clip's value is the median f0 of
voiced frames (robust to octave slips and to the glides of a chirp), its confidence
the voiced fraction. Measured by bench/auditorybench_pitch.py (the README quotes it).

`measure_clips` stores one `clip_pitch` row per clip and parameter set; clips already
measured with the same parameters are not measured again (reruns are free), and clips
that cannot be measured (unreadable audio, silence, too little voiced audio) are rows
with a status and a detail, never skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline import progress
from pipeline.audio.io import AudioLoadError, load_clip_audio
from pipeline.storage.warehouse import utc_now

if TYPE_CHECKING:
    from pipeline.storage import Warehouse

PITCH_TABLE = "clip_pitch"
METHOD = "yin-cmndf-44k-v2"
PitchStatus = Literal["ok", "too_little_voiced", "missing", "unreadable", "silent", "too_short"]


class PitchConfig(BaseModel):
    """Analysis parameters; every field (and METHOD) is part of the cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: int = 44_100  # harmonics of a 4.2 kHz tone reach 16.8 kHz
    fmin_hz: float = 32.7  # C1: below the lowest sample tone (41 Hz) and most instruments
    fmax_hz: float = 4400.0  # above C8 (4186 Hz), the top of a piano
    window_length: int = 2048  # 46 ms: 1.5 periods of fmin
    hop_length: int = 512
    voicing_threshold: float = 0.3  # deepest dip above this: no periodicity (noise, silence)
    octave_tolerance: float = 0.1  # dips this close to the deepest count as the period
    max_seconds: float = 30.0
    min_voiced_fraction: float = 0.2  # below this the median is not trusted: too_little_voiced

    def key(self) -> str:
        from pipeline.tasks.common.base import stable_hash

        return stable_hash(METHOD, self.model_dump(), length=12)


class PitchMeasurement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    median_f0_hz: float | None
    voiced_fraction: float
    voiced_frames: int
    frames: int


class PitchRecord(BaseModel):
    """One row of `clip_pitch` (kept in step with warehouse/tables/clip_pitch.sql)."""

    model_config = ConfigDict(extra="forbid")

    clip_id: str
    status: PitchStatus
    median_f0_hz: float | None = None
    voiced_fraction: float | None = None
    voiced_frames: int | None = None
    frames: int | None = None
    method: str = METHOD
    params: str
    params_key: str
    detail: str | None = None
    run_id: str
    measured_at: datetime


class PitchSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params_key: str
    requested: int = 0
    measured: int = 0
    cached: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)


_FRAMES_PER_BLOCK = 256  # bounds memory: a block's spectra are ~2 MB per 100 frames


def frame_f0(
    audio: np.ndarray, config: PitchConfig = PitchConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """(f0 in Hz per frame, NaN where unvoiced; voiced flag per frame) of mono float audio
    at `config.sample_rate`."""
    rate = config.sample_rate
    shortest = max(2, int(rate / config.fmax_hz))  # shortest period searched, in samples
    max_lag = int(np.ceil(rate / config.fmin_hz)) + 1
    span = config.window_length + max_lag + 1  # one frame: a window + its longest shift
    audio = np.asarray(audio, dtype=np.float64)
    if audio.shape[0] < span:
        audio = np.pad(audio, (0, span - audio.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(audio, span)[:: config.hop_length]
    results = [
        _block_f0(frames[i : i + _FRAMES_PER_BLOCK], config, shortest, max_lag)
        for i in range(0, frames.shape[0], _FRAMES_PER_BLOCK)
    ]
    f0 = np.concatenate([r[0] for r in results])
    voiced = np.concatenate([r[1] for r in results])
    return np.where(voiced, f0, np.nan), voiced


def _block_f0(
    frames: np.ndarray, config: PitchConfig, shortest: int, max_lag: int
) -> tuple[np.ndarray, np.ndarray]:
    window = config.window_length
    n_fft = 1 << (frames.shape[1] - 1).bit_length()
    # d(τ) = Σ_j (x_j − x_{j+τ})² over the window = e(0) + e(τ) − 2·r(τ), all lags by FFT.
    cross = np.fft.irfft(
        np.conj(np.fft.rfft(frames[:, :window], n_fft)) * np.fft.rfft(frames, n_fft), n_fft
    )[:, : max_lag + 2]
    squares = np.cumsum(np.pad(frames**2, ((0, 0), (1, 0))), axis=1)
    energy = squares[:, window : window + max_lag + 2] - squares[:, : max_lag + 2]
    difference = np.maximum(energy[:, :1] + energy - 2.0 * cross, 0.0)
    # Cumulative mean normalisation: d'(τ) = d(τ)·τ / Σ_{1≤k≤τ} d(k), d'(0) = 1.
    lags = np.arange(max_lag + 2)
    cmndf = np.ones_like(difference)
    running = np.cumsum(difference[:, 1:], axis=1)
    cmndf[:, 1:] = difference[:, 1:] * lags[1:] / np.maximum(running, 1e-12)
    # Dips: local minima at lags shortest..max_lag (one lag either side for neighbours),
    # compared by their parabola-interpolated depth: at short periods the lag grid misses
    # a dip's bottom by up to half a sample, which would favour the sharper dip at twice
    # the period (4.2 kHz: 10.5 samples).
    search = cmndf[:, shortest - 1 : max_lag + 2]
    before, middle, after = search[:, :-2], search[:, 1:-1], search[:, 2:]
    dips = np.zeros_like(search, dtype=bool)
    dips[:, 1:-1] = (middle < before) & (middle <= after)
    bend = np.maximum(before - 2.0 * middle + after, 1e-12)
    depth = np.full_like(search, np.inf)
    depth[:, 1:-1] = np.maximum(middle - (before - after) ** 2 / (8.0 * bend), 0.0)
    depth = np.where(dips, depth, np.inf)
    deepest = depth.min(axis=1)
    near = depth <= deepest[:, None] + config.octave_tolerance
    lag = shortest - 1 + np.argmax(near, axis=1)  # the shortest lag among near-deepest dips
    rows = np.arange(frames.shape[0])
    # Noise ripples a long period's broad dip into many small ones: take the bottom of the
    # basin (±15 %, far from the next multiple of the period), not its first ripple.
    basin = np.abs(lags[None, :] - lag[:, None]) <= np.maximum(1, 0.15 * lag[:, None])
    basin[:, : shortest - 1] = False
    lag = np.where(basin, cmndf, np.inf).argmin(axis=1)
    voiced = np.isfinite(deepest) & (cmndf[rows, lag] < config.voicing_threshold)
    # Refine on the raw difference, as YIN does: normalisation tilts the dip (noise lifts
    # its floor, and the running mean's slope then moves the minimum).
    left, centre, right = (difference[rows, np.clip(lag + k, 0, max_lag + 1)] for k in (-1, 0, 1))
    step = np.where(left < centre, -1, np.where(right < centre, 1, 0))
    lag = np.clip(lag + step, 1, max_lag)
    left, centre, right = (difference[rows, lag + k] for k in (-1, 0, 1))
    curvature = left - 2.0 * centre + right
    safe = np.where(curvature > 0, curvature, 1.0)
    offset = np.where(curvature > 0, np.clip((left - right) / (2.0 * safe), -1.0, 1.0), 0.0)
    return config.sample_rate / (lag + offset), voiced


def measure_audio(audio: np.ndarray, config: PitchConfig = PitchConfig()) -> PitchMeasurement:
    """Median f0 over voiced frames of mono float audio at `config.sample_rate`."""
    f0, voiced = frame_f0(audio[: int(config.max_seconds * config.sample_rate)], config)
    frames = int(voiced.shape[0])
    count = int(voiced.sum())
    return PitchMeasurement(
        median_f0_hz=float(np.median(f0[voiced])) if count else None,
        voiced_fraction=count / frames if frames else 0.0,
        voiced_frames=count,
        frames=frames,
    )


def measure_clip(clip: dict[str, Any], config: PitchConfig, run_id: str) -> PitchRecord:
    """Measure one `clips` row; audio problems become a status, not an exception."""
    base = {
        "clip_id": clip["clip_id"],
        "params": json.dumps(config.model_dump(), sort_keys=True),
        "params_key": config.key(),
        "run_id": run_id,
        "measured_at": utc_now(),
    }
    try:
        audio = load_clip_audio(clip, config.sample_rate)
    except AudioLoadError as exc:
        return PitchRecord(status=exc.reason, detail=exc.detail, **base)
    measurement = measure_audio(audio, config)
    status: PitchStatus = "ok"
    detail = None
    if measurement.voiced_fraction < config.min_voiced_fraction:
        status = "too_little_voiced"
        detail = f"voiced fraction {measurement.voiced_fraction:.2f} < {config.min_voiced_fraction}"
    return PitchRecord(status=status, detail=detail, **measurement.model_dump(), **base)


def measure_clips(
    warehouse: Warehouse,
    clip_ids: Iterable[str],
    run_id: str,
    config: PitchConfig = PitchConfig(),
) -> PitchSummary:
    """Measure the clips not yet in `clip_pitch` for these parameters; one new partition."""
    from pipeline.tasks.common.base import stable_hash

    wanted = sorted(set(clip_ids))
    key = config.key()
    summary = PitchSummary(params_key=key, requested=len(wanted))
    done = {
        r["clip_id"]
        for r in warehouse.rows(
            "SELECT DISTINCT clip_id FROM clip_pitch WHERE params_key = ? "
            "AND clip_id IN (SELECT unnest(?::VARCHAR[]))",
            [key, wanted],
        )
    }
    todo = [c for c in wanted if c not in done]
    summary.cached = len(wanted) - len(todo)
    clips = warehouse.rows(
        "SELECT * FROM clips WHERE clip_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY clip_id",
        [todo],
    )
    records = []
    with progress.step("pitch", total=len(clips), unit="clip") as advance:
        for clip in clips:
            records.append(measure_clip(clip, config, run_id))
            advance(1)
    if records:
        partition = f"params={key}/batch={stable_hash(todo, length=16)}"
        warehouse.write_partition(PITCH_TABLE, partition, [r.model_dump() for r in records])
    summary.measured = len(records)
    summary.by_status = dict(Counter(r.status for r in records))
    return summary


def load_pitches(
    warehouse: Warehouse, clip_ids: Iterable[str], config: PitchConfig = PitchConfig()
) -> dict[str, dict[str, Any]]:
    """The latest `clip_pitch` row per clip for these parameters."""
    rows = warehouse.rows(
        """
        SELECT clip_id, status, median_f0_hz, voiced_fraction
        FROM clip_pitch WHERE params_key = ? AND clip_id IN (SELECT unnest(?::VARCHAR[]))
        QUALIFY row_number() OVER (PARTITION BY clip_id ORDER BY measured_at DESC) = 1
        """,
        [config.key(), sorted(set(clip_ids))],
    )
    return {r["clip_id"]: r for r in rows}
