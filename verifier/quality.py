"""Perplexity on the project's own English text: how surprised a model is by plain prose.

The text (``texts/english.txt``, about 2,100 tokens for Gemma's tokenizer) was written for
this project, so no model was trained on it; its sha256 is recorded with every result, so
figures measured on different texts are never compared.

Method, llama.cpp's ``perplexity`` tool's: the text is tokenized without BOS and cut into
chunks of ``CHUNK`` tokens whose first token is replaced by BOS; each chunk is evaluated
from an empty cache, and only the second half of each chunk is scored, so every scored
token has at least ``CHUNK / 2`` tokens of context. Perplexity is ``exp`` of the mean
negative log-likelihood, accumulated in float64 (the same model on the same machine gives
the same figure run after run). A text shorter than one chunk is scored as one chunk.

A model whose weights are garbage still loads, emits tokens and keeps its logits finite,
so the smoke check passes it; its perplexity is in the thousands where an honest small
model scores tens.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path

TEXT_PATH = Path(__file__).parent / "texts" / "english.txt"
CHUNK = 512


def text() -> str:
    return TEXT_PATH.read_text(encoding="utf-8")


def text_sha256() -> str:
    return hashlib.sha256(TEXT_PATH.read_bytes()).hexdigest()


@dataclass
class Perplexity:
    value: float  # exp(mean negative log-likelihood); inf when a logit was not finite
    tokens: int  # tokens scored
    chunks: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def chunks(tokens: list[int], bos: int) -> list[list[int]]:
    """The chunks to evaluate: ``CHUNK`` tokens each (the rest dropped), BOS first."""
    size = min(CHUNK, len(tokens))
    return [[bos, *tokens[start + 1:start + size]]
            for start in range(0, len(tokens) - size + 1, size)]


def first_scored(chunk: list[int]) -> int:
    """The first position whose prediction (of the next token) is scored."""
    return len(chunk) // 2


class Accumulator:
    """Sums negative log-likelihoods in float64; ``add`` takes one row of logits (any
    float array) and the token that came next."""

    def __init__(self) -> None:
        self.nll = 0.0
        self.count = 0
        self.finite = True

    def add(self, logits, token: int) -> None:
        import numpy as np

        row = np.asarray(logits, dtype=np.float64)
        if not np.isfinite(row).all():
            self.finite = False
            return
        top = row.max()
        self.nll += float(top + math.log(np.exp(row - top).sum()) - row[token])
        self.count += 1

    def result(self, n_chunks: int, seconds: float) -> Perplexity:
        mean = self.nll / self.count if self.finite and self.count else math.inf
        value = math.exp(mean) if mean < 700 else math.inf  # beyond: float overflow
        return Perplexity(value, self.count, n_chunks, seconds)
