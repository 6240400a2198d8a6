"""Validators shared by every task. Each returns a list of reason codes (empty = passed).

Reason codes are stable, machine-readable strings stored in
`item_records.validation_reasons`; `SELECT unnest(validation_reasons), count(*) FROM items
GROUP BY 1` accounts for every rejected item. Tasks add their own codes the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# LLM outcome
SCHEMA_INVALID = "schema_invalid"  # reply did not parse / match the template's JSON schema
LLM_ERROR = "llm_error"  # http error or timeout after the engine's retries
LLM_REFUSED = "llm_refused"  # the model refused (content filter / refusal field)
LLM_DECLINED = "llm_declined"  # the reply used the schema's own decline field
PROMPT_TOO_LARGE = "prompt_too_large"  # the rendered prompt exceeds max_prompt_chars: not sent
LLM_TRUNCATED = "llm_truncated"  # finish_reason=length even after the longer retry
LLM_EMPTY_REPLY = "llm_empty_reply"  # no choices / empty content
# text checks
MASK_COUNT = "mask_count"  # not exactly the required number of [MASK] tokens
SPAN_NOT_IN_INPUT = "span_not_in_input"  # a span is not a verbatim substring of the input
SPAN_ORDER = "span_order"  # spans do not appear in the required order
ANSWER_LEAKED = "answer_leaked"  # the answer appears in the sentence/question itself
ANSWER_NOT_IN_OPTIONS = "answer_not_in_options"
OPTION_COUNT = "option_count"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
NOT_ENGLISH = "not_english"  # language sanity: too few ASCII letters or no English stopword
EMPTY_FIELD = "empty_field"
# dedup (set by pipeline.tasks.common.dedup)
DUPLICATE_EXACT = "duplicate_exact"
DUPLICATE_NORMALIZED = "duplicate_normalized"

MASK = "[MASK]"
_WORD_RE = re.compile(r"[A-Za-z']+")
ENGLISH_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "be",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "than",
        "as",
        "and",
        "or",
        "but",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "has",
        "have",
        "had",
        "makes",
        "make",
        "made",
        "sound",
        "sounds",
        "what",
        "which",
        "who",
        "where",
        "when",
        "how",
        "does",
        "do",
        "did",
        "can",
        "could",
        "you",
        "your",
        "i",
        "we",
        "they",
        "he",
        "she",
        "his",
        "her",
        "their",
    ]
)


def check_mask_count(text: str, expected: int = 1) -> list[str]:
    """Exactly `expected` [MASK] tokens (one per masked word piece where a task needs it)."""
    return [] if text.count(MASK) == expected else [MASK_COUNT]


def check_spans_verbatim(text: str, spans: Sequence[str]) -> list[str]:
    """Every span non-empty and a verbatim substring of the text."""
    return [] if spans and all(span and span in text for span in spans) else [SPAN_NOT_IN_INPUT]


def check_span_order(text: str, spans: Sequence[str]) -> list[str]:
    """Spans occur in the given order, without overlapping (span1 before span2)."""
    position = 0
    for span in spans:
        found = text.find(span, position)
        if found < 0:
            return [SPAN_ORDER]
        position = found + len(span)
    return []


def check_answer_not_leaked(text: str, answer: str, extra_forms: Sequence[str] = ()) -> list[str]:
    """The answer (or any of its forms, e.g. a plural) must not appear as a word in the text."""
    words = {word.lower() for word in _WORD_RE.findall(text)}
    forms = {answer.lower(), *(form.lower() for form in extra_forms)}
    for form in forms:
        tokens = _WORD_RE.findall(form)
        if not tokens:
            continue
        if len(tokens) == 1 and tokens[0].lower() in words:
            return [ANSWER_LEAKED]
        if len(tokens) > 1 and re.search(
            r"\b" + r"\W+".join(map(re.escape, tokens)) + r"\b", text, re.IGNORECASE
        ):
            return [ANSWER_LEAKED]
    return []


def check_answer_in_options(answer: str, options: Sequence[str]) -> list[str]:
    return [] if answer in options else [ANSWER_NOT_IN_OPTIONS]


def check_option_count(options: Sequence[str], expected: int) -> list[str]:
    return [] if len(options) == expected and len(set(options)) == expected else [OPTION_COUNT]


def check_length(text: str, min_words: int = 4, max_words: int = 60) -> list[str]:
    words = len(text.split())
    if words < min_words:
        return [TOO_SHORT]
    if words > max_words:
        return [TOO_LONG]
    return []


def check_language(text: str, min_ascii_letter_ratio: float = 0.9) -> list[str]:
    """Language sanity: mostly ASCII letters among letters, and at least one English stopword."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return [NOT_ENGLISH]
    ascii_ratio = sum(ch.isascii() for ch in letters) / len(letters)
    words = {word.lower() for word in _WORD_RE.findall(text)}
    if ascii_ratio < min_ascii_letter_ratio or not words & ENGLISH_STOPWORDS:
        return [NOT_ENGLISH]
    return []


def check_nonempty(*values: str | None) -> list[str]:
    return [] if all(value and value.strip() for value in values) else [EMPTY_FIELD]


def check_masked_sentence(
    text: str,
    spans: Sequence[str],
    answer: str,
    *,
    masks: int = 1,
    ordered_spans: bool = False,
    answer_forms: Sequence[str] = (),
    min_words: int = 4,
    max_words: int = 60,
) -> list[str]:
    """The AuditoryBench-style bundle: mask count, spans, order, leak, length, language."""
    reasons = check_mask_count(text, masks) + check_spans_verbatim(text, spans)
    if ordered_spans and not reasons:
        reasons += check_span_order(text, spans)
    reasons += check_answer_not_leaked(text, answer, answer_forms)
    reasons += check_length(text, min_words, max_words)
    reasons += check_language(text)
    return list(dict.fromkeys(reasons))
