"""P10: decode speed with the tiny assistant drafting against decoding alone, and the acceptance rate.

Information only. Random weights make acceptance meaningless (the tiny assistant copies
its target's head, so it is right about as often as the target repeats a token), and on
a CPU a verification step over several tokens costs more than one plain step; the real
gain needs the published assistants, real weights and a GPU. What this shows is the
overhead of assisted generation when drafts are mostly rejected, side by side in one run.

`python -m benchmarks.drafting_speed [--quick]` runs this group alone.
"""

from __future__ import annotations

import sys

from benchmarks.common import CACHE_DIR, Row, paired, spread
from benchmarks.models import small_checkpoint
from gemma_demo.engine.base import Stats, last_update
from gemma_demo.engine.loading import load_local_backend
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tiny.assistant import ensure_assistant

PROMPT = [{"role": "user", "content": [{"type": "text", "text": "Tell me a long story about a cat and a dog."}]}]


def _decode_seconds(stats: Stats) -> float:
    return stats.elapsed - (stats.time_to_first_token or 0.0)


def _compare(label: str, id: str, name: str, draft: str, options: LoadOptions, tokens: int, reps: int) -> list[Row]:
    plain = load_local_backend(name, options)
    drafting = load_local_backend(name, LoadOptions(**{**options.__dict__, "draft": draft}))
    settings = GenerationSettings(max_new_tokens=tokens)
    last: dict[str, Stats] = {}

    def decode(backend, key: str):
        def run() -> float:
            stats = last_update(backend.stream(PROMPT, settings)).stats
            last[key] = stats
            return _decode_seconds(stats) / max(stats.new_tokens - 1, 1)

        return run

    result = paired(decode(drafting, "on"), decode(plain, "off"), reps=reps)
    on = last["on"]
    rate = on.draft_accepted / on.draft_proposed if on.draft_proposed else 0.0
    return [
        Row(id, f"decode time per token, tiny assistant drafting vs none ({label}, greedy, {tokens} tokens)",
            f"{result.a_median * 1000:.1f} ms", f"{result.b_median * 1000:.1f} ms", result.ratio, None, spread(result)),
        Row(f"{id}a", f"draft acceptance ({label}, random weights)", f"{rate:.0%}",
            note=f"{on.draft_accepted}/{on.draft_proposed} drafts accepted, {on.new_tokens} tokens"),
    ]


def run(quick: bool = False, reps: int = 5) -> list[Row]:
    tokens, reps = (32, 3) if quick else (96, reps)
    tiny = LoadOptions(tiny_root=CACHE_DIR / "tiny", device="cpu")
    small = small_checkpoint().path
    small_assistant = ensure_assistant(small)
    return [
        *_compare("tiny E2B", "P10", "tiny", "auto", tiny, tokens, reps),
        *_compare("133M E2B-layout model", "P10s", str(small), str(small_assistant), LoadOptions(device="cpu"),
                  tokens, reps),
    ]


if __name__ == "__main__":
    from benchmarks.report import print_rows

    print_rows(run(quick="--quick" in sys.argv))
