"""LLM generation: versioned prompts, an OpenAI-compatible engine with a cache, offline rules.

See docs/readme/llm.md. Public surface::

    from pipeline.llm import LLMConfig, GenerationEngine, LLMRequest, LLMResult, PromptLibrary
"""

from pipeline.llm.prompts import PromptLibrary, PromptTemplate, Sampling, SanitizeLimits

__all__ = ["PromptLibrary", "PromptTemplate", "Sampling", "SanitizeLimits"]
