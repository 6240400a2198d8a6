"""Content fingerprints: the same recording, re-encoded, gives (nearly) the same bits.

The rule (after Haitsma & Kalker's band-energy-difference fingerprint, made coarse so a
whole clip gives one fixed-size vector):

* decode, mix to mono, resample to 8 kHz (`load_clip_audio`): sample rate and container
  no longer matter;
* power spectrum in 32 ms frames (hop 16 ms), summed into `BANDS` (17) log-spaced bands
  between 150 and 3,500 Hz (below the 4 kHz Nyquist, where lossy codecs keep energy);
  frames are averaged into `SEGMENTS` (17) equal time segments of the whole clip;
* E = log band energy; bit[t, b] = 1 iff
  (E[t, b] − E[t, b+1]) − (E[t−1, b] − E[t−1, b+1]) > 0, for 16 × 16 = 256 bits.
  A gain change adds a constant to every E, which every difference cancels exactly.

Two fingerprints match when their Hamming distance is at most `MATCH_MAX_BITS` (51 of
256, 20 %); unrelated audio differs in ~128 bits (σ ≈ 8), so 51 is ~9σ away. A steady
tone or a silent clip has almost no energy changes, so its bits are coin flips on
rounding noise: a fingerprint is `informative` only when at least `MIN_STRONG_SHARE` of
its differences exceed `STRONG_DIFFERENCE` nats, and only informative ones link clips.
Measured on the synthetic sample signals (noise, pulses, chirp): an Ogg Vorbis copy at
16 kHz differs in ≤ 22 bits, MP3 at 22.05 kHz ≤ 30, FLAC/WAV at other rates ≤ 4 (tested
in tests/leakage). Whole-clip grid: a crop or a time-stretched copy is not matched.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from pipeline.audio.io import AudioLoadError, load_clip_audio
from pipeline.storage.warehouse import Warehouse, utc_now

FINGERPRINT_TABLE = "clip_fingerprints"
METHOD = "band-energy-diff-v1"
SAMPLE_RATE = 8_000
FRAME = 256  # 32 ms at 8 kHz
HOP = 128
BANDS = 17
SEGMENTS = 17
LOW_HZ, HIGH_HZ = 150.0, 3_500.0
N_BITS = (BANDS - 1) * (SEGMENTS - 1)  # 256
MATCH_MAX_BITS = 51  # 20 % of 256
STRONG_DIFFERENCE = 0.1  # nats: a difference this large survives codec noise
MIN_STRONG_SHARE = 0.5
FLOOR_BELOW_PEAK = 1e-3  # −30 dB
MIN_SECONDS = 0.5  # shorter clips have too few frames for 17 segments


class FingerprintRecord(BaseModel):
    """One row of `clip_fingerprints` (warehouse/tables/clip_fingerprints.sql)."""

    model_config = ConfigDict(extra="forbid")

    clip_id: str
    method: str
    status: str  # ok | missing | unreadable | silent | too_short
    bits: str | None  # 64 hex digits (256 bits), None unless status == ok
    informative: bool
    strong_share: float | None
    detail: str | None
    run_id: str
    computed_at: datetime


def _band_edges() -> np.ndarray:
    freqs = np.fft.rfftfreq(FRAME, 1 / SAMPLE_RATE)
    edges_hz = np.geomspace(LOW_HZ, HIGH_HZ, BANDS + 1)
    return np.searchsorted(freqs, edges_hz)


def fingerprint_signal(audio: np.ndarray) -> tuple[np.ndarray, float]:
    """Mono float audio at SAMPLE_RATE → (256 bits as a bool array, share of strong bits)."""
    if audio.shape[-1] < FRAME * SEGMENTS:
        raise ValueError(f"{audio.shape[-1]} samples is too short for {SEGMENTS} segments")
    n_frames = 1 + (audio.shape[-1] - FRAME) // HOP
    index = np.arange(FRAME)[None, :] + HOP * np.arange(n_frames)[:, None]
    frames = audio[index] * np.hanning(FRAME)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    edges = _band_edges()
    bands = np.stack([power[:, lo:hi].sum(axis=1) for lo, hi in itertools.pairwise(edges)], 1)
    segments = np.stack([s.mean(axis=0) for s in np.array_split(bands, SEGMENTS, axis=0)])
    # Bands far below the loudest hold only codec and dither noise; clamping them to a floor
    # relative to the loudest band (so gain still cancels) makes their bits ties, i.e. 0.
    energy = np.log(np.maximum(segments, segments.max() * FLOOR_BELOW_PEAK) + 1e-30)
    across_bands = energy[:, :-1] - energy[:, 1:]
    difference = across_bands[1:] - across_bands[:-1]
    bits = (difference > 0).ravel()
    strong_share = float((np.abs(difference) > STRONG_DIFFERENCE).mean())
    return bits, strong_share


def bits_to_hex(bits: np.ndarray) -> str:
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


def hex_to_int(bits_hex: str) -> int:
    return int(bits_hex, 16)


def hamming(a_hex: str, b_hex: str) -> int:
    return (hex_to_int(a_hex) ^ hex_to_int(b_hex)).bit_count()


def fingerprint_clip(clip: dict[str, Any], run_id: str) -> FingerprintRecord:
    """Fingerprint one `clips` row; an unreadable clip is a recorded status, not an error."""
    base = {"clip_id": clip["clip_id"], "method": METHOD, "run_id": run_id}
    try:
        audio = load_clip_audio(clip, SAMPLE_RATE, min_seconds=MIN_SECONDS)
        bits, strong_share = fingerprint_signal(audio)
    except AudioLoadError as exc:
        return FingerprintRecord(
            **base,
            status=exc.reason,
            bits=None,
            informative=False,
            strong_share=None,
            detail=str(exc),
            computed_at=utc_now(),
        )
    return FingerprintRecord(
        **base,
        status="ok",
        bits=bits_to_hex(bits),
        informative=strong_share >= MIN_STRONG_SHARE,
        strong_share=round(strong_share, 4),
        detail=None,
        computed_at=utc_now(),
    )


def fingerprint_clips(warehouse: Warehouse, clip_ids: Iterable[str], run_id: str) -> dict[str, int]:
    """Fingerprint the clips not yet in `clip_fingerprints` for this method; one partition."""
    from pipeline.tasks.common.base import stable_hash

    wanted = sorted(set(clip_ids))
    done = {
        r["clip_id"]
        for r in warehouse.rows(
            "SELECT DISTINCT clip_id FROM clip_fingerprints WHERE method = ? "
            "AND list_contains(?, clip_id)",
            [METHOD, wanted],
        )
    }
    todo = [c for c in wanted if c not in done]
    clips = warehouse.rows(
        "SELECT clip_id, audio_root, audio_path FROM clips WHERE list_contains(?, clip_id) "
        "ORDER BY clip_id",
        [todo],
    )
    records = [fingerprint_clip(clip, run_id).model_dump() for clip in clips]
    if records:
        partition = f"method={METHOD}/batch={stable_hash(todo, length=16)}"
        warehouse.write_partition(FINGERPRINT_TABLE, partition, records)
    counts: dict[str, int] = {"cached": len(done), "computed": len(records)}
    for record in records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    return counts


def load_fingerprints(warehouse: Warehouse) -> dict[str, str]:
    """clip_id → hex bits of the latest informative fingerprint of each clip."""
    rows = warehouse.rows(
        """
        SELECT clip_id, bits FROM clip_fingerprints
        WHERE method = ? AND status = 'ok' AND informative
        QUALIFY row_number() OVER (PARTITION BY clip_id ORDER BY computed_at DESC) = 1
        """,
        [METHOD],
    )
    return {r["clip_id"]: r["bits"] for r in rows}
