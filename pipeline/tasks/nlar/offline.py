"""Registers the NLAR offline rules with the LLM engine (model `offline-rules`)."""

from __future__ import annotations

from pipeline.llm.offline import offline_rule
from pipeline.tasks.nlar import rules
from pipeline.tasks.nlar.task import PROMPT_DESCRIBE, PROMPT_QA
from pipeline.tasks.reasonaqa.task import rules_lexicon_version

_VERSION = rules_lexicon_version()

offline_rule(PROMPT_DESCRIBE, version=_VERSION)(rules.describe_event_rule)
offline_rule(PROMPT_QA, version=_VERSION)(rules.qa_rule)
