"""The embedded sample corpora: a few dozen rows of each source in its real format.

`pipeline/samples/data/<source>/` holds metadata written for this project;
`audio_specs.csv` says which synthetic signal stands for each clip, and
`pipeline.samples.audio.write_sample_audio` renders those signals so every stage can run
offline end to end.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
AUDIO_SPECS = DATA_DIR / "audio_specs.csv"

SAMPLE_PATHS: dict[str, Path] = {
    "audiocaps": DATA_DIR / "audiocaps",
    "clotho": DATA_DIR / "clotho",
    "clotho-aqa": DATA_DIR / "clotho_aqa",
    "laion630k": DATA_DIR / "laion630k",
}


def sample_audio_root(audio_dir: Path | str, source: str) -> Path:
    """Where the synthetic audio of one sample source is written under `audio_dir`."""
    return Path(audio_dir) / source
