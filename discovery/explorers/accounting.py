"""LLM spend: token counts from each reply's `usage`, turned into dollars by configured prices.

>>> Pricing(3.0, 15.0).usd(input_tokens=1000, output_tokens=200)
0.006
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MODELS", "Pricing"]

# Defaults only; every value is configurable on the command line (--model, --price-in, --price-out).
DEFAULT_MODELS = {
    "anthropic": ("claude-sonnet-4-5", 3.0, 15.0),
    "openai": ("gpt-4.1", 2.0, 8.0),
}


@dataclass(frozen=True)
class Pricing:
    """US dollars per million input and output tokens (cached-prompt reads and writes priced apart)."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    cache_read_per_mtok: float | None = None  # default: 10% of the input price
    cache_write_per_mtok: float | None = None  # default: 125% of the input price

    def usd(self, *, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
            cache_write_tokens: int = 0) -> float:
        read = self.input_per_mtok * 0.1 if self.cache_read_per_mtok is None else self.cache_read_per_mtok
        write = self.input_per_mtok * 1.25 if self.cache_write_per_mtok is None else self.cache_write_per_mtok
        total = (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok
                 + cache_read_tokens * read + cache_write_tokens * write) / 1e6
        return round(total, 9)
