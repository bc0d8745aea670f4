"""What each benchmark request asks: a window of the shipped public-domain text as the prompt.

Unique prompts start at a different word for every request of the run, so no server can
answer from its prompt cache; the shared-prefix variant gives every request the same
passage followed by its own question, which is what a prompt (prefix) cache speeds up.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from dsdeploy.data.corpus import evaluation_text
from dsdeploy.errors import BenchError

WINDOW_STRIDE = 53
"""Words between the starts of successive unique prompts (prime: windows rarely repeat)."""


@cache
def corpus_words() -> tuple[str, ...]:
    return tuple(evaluation_text().read_text(encoding="utf-8").split())


@dataclass(frozen=True)
class Workload:
    prompt_words: int
    max_tokens: int
    shared_prefix: bool

    def __post_init__(self) -> None:
        available = len(corpus_words()) - WINDOW_STRIDE
        if not 1 <= self.prompt_words <= available:
            raise BenchError(f"--prompt-words must be between 1 and {available}")
        if self.max_tokens < 2:
            raise BenchError("--max-tokens must be at least 2 (TPOT needs two tokens)")

    @property
    def name(self) -> str:
        return "shared-prefix" if self.shared_prefix else "unique"

    def prompt(self, index: int) -> str:
        words = corpus_words()
        if self.shared_prefix:
            start = 0
        else:
            start = (index * WINDOW_STRIDE) % (len(words) - self.prompt_words)
        passage = " ".join(words[start : start + self.prompt_words])
        return f"{passage}\n\nRequest {index}: continue this scene."

    def body(self, model: str, index: int) -> dict[str, object]:
        """A streamed chat request that decodes exactly ``max_tokens`` tokens (EOS ignored,
        an extension llama-server and vLLM accept), reporting usage in its last chunk."""
        return {
            "model": model,
            "messages": [{"role": "user", "content": self.prompt(index)}],
            "max_tokens": self.max_tokens,
            "ignore_eos": True,
            "temperature": 0.7,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
