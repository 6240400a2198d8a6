"""CLAP scoring: embeddings for clips and texts, raw scores per item, filter decisions.

    from pipeline.clap import ClapConfig, load_scorer, ClapScorer
    config = ClapConfig.from_env()            # None when no checkpoint is configured
    scorer = load_scorer(config)              # MissingArtifactError if the checkpoint is absent

Modules: `config` (settings), `scorer` (both backends), `laion_model` (laion-clap's model
built offline), `crops` (clip → fixed crops, reference preprocessing),
`stream` (parallel decode feeding batches), `embeddings` (warehouse cache of vectors),
`score` (raw item scores), `filter` (policies → item_filters), `report` (histograms,
counts), `tiny` (random test models, never a fallback).
"""

from typing import TYPE_CHECKING, Any

from pipeline.clap.config import NOT_CONFIGURED, ClapConfig

if TYPE_CHECKING:
    from pipeline.clap.scorer import ClapScorer, load_scorer

__all__ = ["NOT_CONFIGURED", "ClapConfig", "ClapScorer", "load_scorer"]


def __getattr__(name: str) -> Any:
    # The scorer imports torch (1.6 s): only code that scores pays for it, not the
    # report, export or config checks that import this package for its light modules.
    if name in ("ClapScorer", "load_scorer"):
        from pipeline.clap import scorer

        return getattr(scorer, name)
    raise AttributeError(f"module 'pipeline.clap' has no attribute {name!r}")
