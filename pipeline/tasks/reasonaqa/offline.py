"""Registers the ReasonAQA offline rules with the LLM engine (model `offline-rules`).

The rules depend on the shipped lexicon, so its hash is part of each rule's version:
editing `data/sound_events.csv` regenerates the offline items on the next run.
"""

from __future__ import annotations

from pipeline.llm.offline import offline_rule
from pipeline.tasks.reasonaqa import rules
from pipeline.tasks.reasonaqa.task import (
    PROMPT_DETAIL,
    PROMPT_DIFFERENCE,
    PROMPT_ENTAILMENT,
    PROMPT_MCQ,
    rules_lexicon_version,
)

_VERSION = rules_lexicon_version()

offline_rule(PROMPT_MCQ, version=_VERSION)(rules.mcq_rule)
offline_rule(PROMPT_DETAIL, version=_VERSION)(rules.detail_rule)
offline_rule(PROMPT_DIFFERENCE, version=_VERSION)(rules.difference_rule)
offline_rule(PROMPT_ENTAILMENT, version=_VERSION)(rules.entailment_rule)
