"""P9: a chat follow-up's time to first token with the conversation's cache kept, over a full prefill.

The conversation's earlier turns hold about 3,000 tokens (a picture at 1120 tokens and
text); the follow-up adds a short question. With reuse, only the last answer and the
new question are prefilled. Each repetition starts from an empty store primed with the
previous turn (untimed), so every timed follow-up really extends a kept cache. Also
reported: the memory one kept cache costs, and the store's bounds.

`python -m benchmarks.chat_cache` runs this group alone.
"""

from __future__ import annotations

import sys

from benchmarks.common import ROOT_INPUT, Row, Target, mib, paired, seconds, spread
from benchmarks.models import small_checkpoint
from gemma_demo.engine.base import last_update
from gemma_demo.engine.loading import load_local_backend
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.prefix_cache import MAX_KEPT, MAX_KEPT_BYTES, MAX_KEPT_PER_CONVERSATION, PrefixCache
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.media.images import load_image

TARGET = Target(0.3)
PLAIN = GenerationSettings(max_new_tokens=2, image_budget=1120)
KEPT = PLAIN.with_changes(keep_cache=True, conversation="benchmark")
SENTENCE = "The quarterly report lists revenue, staff, offices and the plans for next year in some detail. "


def conversation() -> tuple[list[dict], list[dict]]:
    """The earlier turns, and the same with the follow-up question."""
    picture = load_image(ROOT_INPUT / "chelsea.jpg")
    earlier = [
        {"role": "user", "content": [{"type": "image", "image": picture},
                                     {"type": "text", "text": SENTENCE * 30 + "What does the picture show?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat lying on a sofa, looking to the side. " * 8}]},
    ]
    follow_up = [*earlier, {"role": "user", "content": [{"type": "text", "text": "What colour is its fur?"}]}]
    return earlier, follow_up


def run(quick: bool = False, reps: int = 5) -> list[Row]:
    backend = load_local_backend(str(small_checkpoint().path), LoadOptions())
    earlier, follow_up = conversation()
    earlier_asked = earlier[:1]

    def first_token(settings: GenerationSettings) -> float:
        return last_update(backend.stream(follow_up, settings)).stats.time_to_first_token

    def with_reuse() -> float:
        backend.prefix_cache = PrefixCache(backend.model, backend.processor)
        last_update(backend.stream(earlier_asked, KEPT))  # the previous turn, as the chat ran it
        return first_token(KEPT)

    result = paired(with_reuse, lambda: first_token(PLAIN), reps=3 if quick else reps)
    store = backend.prefix_cache
    prompt = last_update(backend.stream(follow_up, PLAIN)).stats.prompt_tokens
    assert store.stats.reused >= 1, store.stats
    return [
        Row("P9", f"chat follow-up, first token: kept cache vs full prefill ({prompt:,}-token prompt, "
                  "133M E2B-layout model)", seconds(result.a_median), seconds(result.b_median), result.ratio,
            TARGET, f"{spread(result)}; prefilled {store.stats.last_prefill_tokens} tokens with reuse"),
        Row("P9m", "memory of one kept conversation cache (133M model, float32)", mib(store.kept_bytes),
            note=f"bound: {MAX_KEPT} caches ({MAX_KEPT_PER_CONVERSATION} per conversation) or "
                 f"{store.max_bytes / 2**30:.2f} GiB (a quarter of the free memory, at most "
                 f"{MAX_KEPT_BYTES / 2**30:g} GiB), oldest dropped first"),
    ]


if __name__ == "__main__":
    from benchmarks.report import print_rows

    print_rows(run(quick="--quick" in sys.argv))
