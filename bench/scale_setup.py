"""Setup of bench/scale.py that the measurements do not include.

`seed_pitch` stands in for the audio stage `pipeline.audio.pitch.measure_clips`: the
corpora carry no audio, so every LAION clip gets the `clip_pitch` row that stage would
write for the default `PitchConfig` (same params and params_key, so `measure_clips`
finds every clip measured and `load_pitches` reads them). Values are seeded per clip:
median f0 log-uniform in 60-4,000 Hz (the range of the sample tones), voiced fraction
uniform in 0.05-0.95, so about a sixth of the clips are `too_little_voiced` as on real
recordings with too little periodic sound.
"""

from __future__ import annotations

import json
import math
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.storage import Warehouse

PITCH_CHUNK = 50_000
FRAMES_PER_CLIP = 861  # about 10 s at 44.1 kHz with a hop of 512 samples


def check_clips(source: str, clips: int, expected: int) -> None:
    """Fail when a corpus did not give the clips it was built with (a format drift)."""
    if clips != expected:
        raise SystemExit(f"error: {source} gave {clips} clips, built with {expected}")


def seed_pitch(wh: Warehouse, seed: int = 0) -> int:
    """One `clip_pitch` row per LAION clip, in one partition; returns the rows written."""
    from pipeline.audio.pitch import PITCH_TABLE, PitchConfig, PitchRecord
    from pipeline.storage.warehouse import utc_now

    config = PitchConfig()
    base = {
        "params": json.dumps(config.model_dump(), sort_keys=True),
        "params_key": config.key(),
        "run_id": "bench-seeded",
        "measured_at": utc_now(),
    }
    clip_ids = [
        r["clip_id"]
        for r in wh.rows("SELECT clip_id FROM clips WHERE source = 'laion630k' ORDER BY 1")
    ]
    written = 0
    with wh.writer(PITCH_TABLE, f"params={config.key()}/batch=bench-seeded") as writer:
        for start in range(0, len(clip_ids), PITCH_CHUNK):
            rows = []
            for clip_id in clip_ids[start : start + PITCH_CHUNK]:
                rng = random.Random(f"{seed}-{clip_id}")
                f0 = math.exp(rng.uniform(math.log(60.0), math.log(4_000.0)))
                voiced = rng.uniform(0.05, 0.95)
                status = "ok" if voiced >= config.min_voiced_fraction else "too_little_voiced"
                rows.append(
                    PitchRecord(
                        clip_id=clip_id,
                        status=status,
                        median_f0_hz=f0,
                        voiced_fraction=voiced,
                        voiced_frames=round(voiced * FRAMES_PER_CLIP),
                        frames=FRAMES_PER_CLIP,
                        detail=None if status == "ok" else f"voiced fraction {voiced:.2f}",
                        **base,
                    ).model_dump()
                )
            written += writer.write(rows)
    return written
