"""Source corpora: one module per corpus, each `load(path)` yielding clips and rejections."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.sources import audiocaps, clotho, clotho_aqa, laion630k
from pipeline.sources.common import LoaderOutput
from pipeline.sources.records import ClipRecord, QAPair, Rejection

LOADERS: dict[str, Callable[[Path], LoaderOutput]] = {
    audiocaps.SOURCE: audiocaps.load,
    clotho.SOURCE: clotho.load,
    clotho_aqa.SOURCE: clotho_aqa.load,
    laion630k.SOURCE: laion630k.load,
}
SOURCE_NAMES = tuple(LOADERS)

__all__ = ["LOADERS", "SOURCE_NAMES", "ClipRecord", "QAPair", "Rejection"]
