"""JSON that matches a schema, by construction: llguidance masks the tokens that would break it.

llguidance compiles a JSON Schema into a grammar over the model's own vocabulary and, at each
step, gives the set of tokens that keep the text a valid prefix (a bitmask, computed in
tens of microseconds on the CPU). `run_generate` applies the mask to the row's logits before
sampling; the row's `Request` feeds each token it receives back to the matcher. Whitespace
between JSON tokens is not allowed at all (`whitespace_flexible: False`): an unbounded run of
spaces or newlines is the known way constrained JSON loops until the token limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import llguidance
import llguidance.hf
import numpy as np
import torch

from gemma_demo.engine.json_schema import check_schema
from gemma_demo.errors import InvalidInputError

TOOL_RESPONSE_TOKEN = "<|tool_response>"
GRAMMAR_OPTIONS = {"whitespace_flexible": False}


def grammar_tokenizer(tokenizer, model) -> llguidance.LLTokenizer:
    """The vocabulary as llguidance sees it; the answer may end with any of the model's end tokens."""
    ends = model.generation_config.eos_token_id
    ends = [ends] if isinstance(ends, int) else list(ends or [tokenizer.eos_token_id])
    vocab = model.get_output_embeddings().weight.shape[0]
    return llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab, eos_token=ends[0] if len(ends) == 1 else ends)


def tool_response_ids(tokenizer) -> frozenset[int]:
    token = tokenizer.convert_tokens_to_ids(TOOL_RESPONSE_TOKEN)
    return frozenset() if token is None or token == tokenizer.unk_token_id else frozenset([token])


@dataclass
class JsonConstraint:
    """One answer's grammar state: which tokens may come next, advanced by each token generated."""

    matcher: llguidance.LLMatcher
    vocab: int

    @classmethod
    def build(cls, tokenizer: llguidance.LLTokenizer, schema: Any) -> JsonConstraint:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(check_schema(schema), overrides=GRAMMAR_OPTIONS)
        problem = llguidance.LLMatcher.validate_grammar(grammar, tokenizer)
        if problem:
            raise InvalidInputError(f"The JSON answer schema cannot be used for decoding: {problem}")
        return cls(llguidance.LLMatcher(tokenizer, grammar), tokenizer.vocab_size)

    def consume(self, token: int) -> None:
        if not self.matcher.is_stopped():
            self.matcher.consume_token(token)

    def mask(self, scores: torch.Tensor) -> None:
        """Set the logits of every token the grammar forbids next to -inf, in place."""
        bits = np.unpackbits(np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
        allowed = torch.from_numpy(bits[: scores.shape[-1]].astype(bool)).to(scores.device, non_blocking=True)
        scores.masked_fill_(~allowed, float("-inf"))


__all__ = ["JsonConstraint", "check_schema", "grammar_tokenizer", "tool_response_ids"]
