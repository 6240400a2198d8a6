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

from pipeline.clap.config import NOT_CONFIGURED, ClapConfig
from pipeline.clap.scorer import ClapScorer, load_scorer

__all__ = ["NOT_CONFIGURED", "ClapConfig", "ClapScorer", "load_scorer"]
