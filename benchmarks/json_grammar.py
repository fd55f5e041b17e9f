"""The grammar's cost per token: decoding constrained to a JSON Schema vs free decoding (G1).

Both runs decode the same number of tokens on the ~133M model (the schema asks for more
items than the token budget holds, so neither ends early), greedy, one request at a time;
the figure is the per-pair ratio of decode seconds per token, constrained over free.
"""

from __future__ import annotations

from benchmarks.common import Row, Target, paired, spread
from benchmarks.models import small_checkpoint
from gemma_demo.engine.base import last_update
from gemma_demo.engine.loading import load_local_backend
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.settings import GenerationSettings

TARGET = Target(1.15)
NEW_TOKENS = 96
LONG_LIST = {"type": "array", "items": {"type": "string", "maxLength": 24}, "minItems": 200}
MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "List two hundred city names as JSON."}]}]


def run(quick: bool = False, reps: int = 5) -> list[Row]:
    backend = load_local_backend(str(small_checkpoint().path), LoadOptions())
    free = GenerationSettings(max_new_tokens=NEW_TOKENS)
    constrained = free.with_changes(json_schema=LONG_LIST)

    def per_token(settings: GenerationSettings):
        def measure() -> float:
            stats = last_update(backend.stream(MESSAGES, settings)).stats
            if stats.new_tokens != NEW_TOKENS:
                raise RuntimeError(f"decoded {stats.new_tokens} tokens, not {NEW_TOKENS}")
            return (stats.elapsed - stats.time_to_first_token) / (stats.new_tokens - 1)

        return measure

    result = paired(per_token(constrained), per_token(free), reps=3 if quick else reps)
    return [Row(
        id="G1",
        what=f"JSON-schema decoding (llguidance) vs free, ~133M model, {NEW_TOKENS} tokens, s/token",
        measured=f"{result.a_median * 1000:.1f} ms/token",
        baseline=f"{result.b_median * 1000:.1f} ms/token",
        ratio=result.ratio,
        target=TARGET,
        note=spread(result),
    )]
