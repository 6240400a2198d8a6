"""LLM generation: versioned prompts, an OpenAI-compatible engine with a cache, offline rules.

See docs/readme/llm.md. Public surface::

    from pipeline.llm import LLMConfig, GenerationEngine, LLMRequest, LLMResult, PromptLibrary
    from pipeline.llm.offline import offline_rule
"""

from pipeline.llm.config import LLMConfig
from pipeline.llm.engine import (
    EngineRunSummary,
    GenerationEngine,
    LLMBudgetReached,
    LLMFailureBudgetExceeded,
)
from pipeline.llm.prompts import PromptLibrary, PromptTemplate, Sampling, SanitizeLimits
from pipeline.llm.records import LLMRequest, LLMResult

__all__ = [
    "EngineRunSummary",
    "GenerationEngine",
    "LLMBudgetReached",
    "LLMConfig",
    "LLMFailureBudgetExceeded",
    "LLMRequest",
    "LLMResult",
    "PromptLibrary",
    "PromptTemplate",
    "Sampling",
    "SanitizeLimits",
]
