"""Token estimates and prices: what a request will cost before it is sent.

Prompt tokens are counted with tiktoken's `o200k_base` encoding when tiktoken is installed
and its encoding file is available offline; otherwise estimated as ceil(chars / 4) per
message plus 3 tokens of message framing per message and 3 for the reply's priming —
OpenAI's published rules of thumb ("a token is about 4 characters of English text";
the cookbook's "How to count tokens with tiktoken" counts 3 framing tokens per message
and 3 priming tokens). The estimate is only used for dry runs and budget admission; what
is recorded in `llm_calls` is always the usage the server reported.

Prices come from a file the user supplies (`FORGE_LLM_PRICES`, JSON or YAML)::

    currency: USD
    batch_discount: 0.5          # batch requests cost this share of the live price
    models:
      gpt-4o-mini: {input_per_1m: 0.15, output_per_1m: 0.60}

Prices are per million tokens. A model missing from the table has no price: costs are
then NULL and a cost budget cannot be used.
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import ForgeError, InputFormatError

PRICES_ENV = "FORGE_LLM_PRICES"
CHARS_PER_TOKEN = 4
FRAMING_TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_per_1m: float = Field(ge=0, description="price of one million prompt tokens")
    output_per_1m: float = Field(ge=0, description="price of one million completion tokens")


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = "USD"
    batch_discount: float = Field(0.5, gt=0, le=1, description="batch price / live price")
    models: dict[str, ModelPrice] = Field(default_factory=dict)

    def cost(
        self,
        model: str,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        *,
        batch: bool = False,
    ) -> float | None:
        """Price of one call's tokens; None when the model has no price."""
        price = self.models.get(model)
        if price is None:
            return None
        amount = (
            (prompt_tokens or 0) * price.input_per_1m
            + (completion_tokens or 0) * price.output_per_1m
        ) / 1_000_000
        return amount * (self.batch_discount if batch else 1.0)


def load_prices(path: str | Path | None) -> PriceTable | None:
    """The price table at `path` (or $FORGE_LLM_PRICES); None when neither is set."""
    chosen = path or os.environ.get(PRICES_ENV)
    if not chosen:
        return None
    return _load_prices(str(Path(chosen).expanduser().resolve()))


@lru_cache(maxsize=8)
def _load_prices(path: str) -> PriceTable:
    file = Path(path)
    if not file.is_file():
        raise ForgeError(f"price table {file} not found (set by {PRICES_ENV} or --prices)")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix.lower() == ".json":
            data: Any = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError or yaml.YAMLError
        raise InputFormatError(file, f"not a JSON/YAML price table: {exc}") from None
    try:
        return PriceTable.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise InputFormatError(file, f"{first['msg']}", field=where) from None


@lru_cache(maxsize=1)
def _encoding() -> Any:
    try:
        import tiktoken

        return tiktoken.get_encoding("o200k_base")
    except Exception:  # not installed, or the encoding file cannot be fetched offline
        return None


def tokenizer_name() -> str:
    return "tiktoken o200k_base" if _encoding() is not None else "chars/4 estimate"


def estimate_prompt_tokens(messages: list[dict[str, str]]) -> int:
    """Prompt tokens of a chat request (see module docstring for the method)."""
    encoding = _encoding()
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        content = message.get("content") or ""
        if encoding is not None:
            total += len(encoding.encode(content))
        else:
            total += math.ceil(len(content) / CHARS_PER_TOKEN)
        total += FRAMING_TOKENS_PER_MESSAGE
    return total
