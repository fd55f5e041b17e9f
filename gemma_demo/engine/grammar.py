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
# llguidance's own limits (lexer fuel, lexer states, grammar size) stay at their defaults: they
# end a runaway lexer, but only after up to a second, so `engine.json_schema` refuses the schemas
# that would reach them first. Errors come without the parser's state dump: a person needs the gist.
LIMITS = llguidance.LLParserLimits(verbose_errors=False)
# What llguidance's messages mean for the person who wrote the schema, by how they begin.
PROBLEMS = {
    "regex parse error": "a pattern is not a regular expression it can use",
    "Unimplemented keys": "the schema uses keywords it does not support; remove them",
    "Unknown format": "the schema names a format it does not know; remove it or use a pattern",
    "Unsatisfiable schema": "no JSON value can match the schema",
    "Unable to determine if regex is empty": "a pattern together with minLength or maxLength is too complex; "
                                             "simplify the pattern or drop the length limits",
    "lexer error": "the patterns or lengths are too complex; simplify them",
    "recursion limit": "the schema is nested too deeply",
    "NoExtensionBias": "no answer can begin; does the schema only refer to itself?",
    "Pointer": "a $ref points at nothing in the schema",
    "Resource": "a $ref points outside the schema; only references inside it work",
}


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
        """The grammar for `schema`, checked on the caller's thread: its first mask too, as that
        is where llguidance builds its lexer (slow for a costly pattern, and where some fail)."""
        grammar = llguidance.LLMatcher.grammar_from_json_schema(check_schema(schema), overrides=GRAMMAR_OPTIONS)
        problem = llguidance.LLMatcher.validate_grammar(grammar, tokenizer, limits=LIMITS)
        if problem:
            raise InvalidInputError(grammar_problem(problem))
        matcher = llguidance.LLMatcher(tokenizer, grammar, limits=LIMITS)
        matcher.compute_bitmask()
        if matcher.is_error():
            raise InvalidInputError(grammar_problem(matcher.get_error()))
        return cls(matcher, tokenizer.vocab_size)

    def consume(self, token: int) -> None:
        if not self.matcher.is_stopped():
            self.matcher.consume_token(token)

    def mask(self, scores: torch.Tensor) -> None:
        """Set the logits of every token the grammar forbids next to -inf, in place."""
        bits = np.unpackbits(np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
        allowed = torch.from_numpy(bits[: scores.shape[-1]].astype(bool)).to(scores.device, non_blocking=True)
        scores.masked_fill_(~allowed, float("-inf"))


def grammar_problem(problem: str) -> str:
    """llguidance's message for a grammar it cannot use, said as what went wrong and what to do."""
    lines = [line.strip() for line in problem.splitlines() if line.strip() and line.strip() != "<non-verbose/>"]
    detail = (lines or [problem])[0]
    if problem.startswith("regex parse error") and len(lines) > 2:  # the pattern, a caret line, the error
        detail = f"{lines[1]}: {lines[-1].removeprefix('error: ')}"
    meaning = next((text for start, text in PROBLEMS.items() if problem.startswith(start)), "")
    said = f"{meaning} ({detail})" if meaning else detail
    return f"The JSON answer schema cannot be used for decoding: {said}."


__all__ = ["JsonConstraint", "check_schema", "grammar_problem", "grammar_tokenizer", "tool_response_ids"]
