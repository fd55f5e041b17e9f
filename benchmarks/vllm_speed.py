"""The app over a real vLLM (its CPU build) on the tiny model (V1, V2).

V1 (information): 4 users at once, aggregate tokens/s, the app's remote backend over vLLM
against the app's local engine on the same tiny checkpoint. vLLM's scheduler is the anchor
the local engine's batching (P5) is read against.

V2: what the app adds over a direct `openai` client call to the same server: one streamed
answer of exactly 128 tokens (`min_tokens` holds off the end of turn on both sides), wall
time of the app's `backend.stream` over the direct stream's, paired.

Needs the vLLM venv that `tests/vllm_server.py` builds (`python tests/vllm_server.py`);
without it the rows say so and nothing is built here (3–4 minutes, 3.5 GB, network).
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

from benchmarks.common import CACHE_DIR, Row, Target, median, not_measured, paired, spread
from gemma_demo.engine.base import Backend, last_update
from gemma_demo.engine.loading import load_local_backend
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.remote.client import OpenAIBackend, load_openai_backend
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tiny.model import ensure_tiny_model

USERS = 4
CROWD_TOKENS = 64
OVERHEAD_TOKENS = 128
OVERHEAD_TARGET = Target(1.10)
PROMPT = "Tell a long story about the sea."
SERVER_HELPER = Path(__file__).resolve().parent.parent / "tests" / "vllm_server.py"
CROWD_WHAT = f"aggregate tokens/s, {USERS} concurrent users, app over vLLM vs app's local engine (tiny E2B)"
OVERHEAD_WHAT = f"app's remote backend vs a direct openai stream, {OVERHEAD_TOKENS} tokens, same vLLM server"


def run(quick: bool = False, reps: int = 5) -> list[Row]:
    server_helper = _load_server_helper()
    venv = server_helper.venv_dir()
    if not (venv / server_helper.COMPLETE_MARKER).exists():
        reason = f"no vLLM venv at {venv}; build it with `python tests/vllm_server.py`"
        return [not_measured("V1", CROWD_WHAT, None, reason), not_measured("V2", OVERHEAD_WHAT, OVERHEAD_TARGET, reason)]
    folder = ensure_tiny_model("e2b", CACHE_DIR / "tiny")
    reps = 3 if quick else reps
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as work, \
            server_helper.serve_vllm(folder, work, python=venv / "bin" / "python") as server:
        remote = load_openai_backend(str(folder), LoadOptions(backend="openai", base_url=server.base_url))
        _force_length(remote)
        overhead = _overhead_row(remote, reps)
        crowd_remote = _crowd_rates(remote, reps)
    local = load_local_backend(str(folder), LoadOptions())
    crowd_local = _crowd_rates(local, reps)
    crowd = Row("V1", CROWD_WHAT, f"{median(crowd_remote):.1f} tok/s", f"{median(crowd_local):.1f} tok/s",
                median(crowd_remote) / median(crowd_local), None,
                f"{CROWD_TOKENS} new tokens each, greedy; {reps} runs each, medians; information")
    return [crowd, overhead]


def _load_server_helper() -> ModuleType:
    """tests/vllm_server.py, the one place that knows how to build and start vLLM here."""
    spec = importlib.util.spec_from_file_location("vllm_server", SERVER_HELPER)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("vllm_server", module)
    spec.loader.exec_module(module)
    return module


def _force_length(backend: OpenAIBackend) -> None:
    """Every request of this backend runs to its token limit, as the direct call does."""
    completions = backend.client.chat.completions
    create = completions.create

    def create_to_the_limit(**options):
        options["extra_body"] = {**options.get("extra_body", {}), "min_tokens": options["max_tokens"]}
        return create(**options)

    completions.create = create_to_the_limit


def _crowd_rates(backend: Backend, reps: int) -> list[float]:
    """Aggregate new tokens per second of `USERS` answers started together, one figure per run."""
    settings = GenerationSettings(max_new_tokens=CROWD_TOKENS)
    messages = [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]

    def answer(_: int) -> int:
        return last_update(backend.stream(messages, settings)).stats.new_tokens

    rates = []
    with ThreadPoolExecutor(USERS) as pool:
        list(pool.map(answer, range(USERS)))  # warm-up
        for _ in range(reps):
            started = time.perf_counter()
            tokens = sum(pool.map(answer, range(USERS)))
            rates.append(tokens / (time.perf_counter() - started))
    return rates


def _overhead_row(remote: OpenAIBackend, reps: int) -> Row:
    settings = GenerationSettings(max_new_tokens=OVERHEAD_TOKENS)
    messages = [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]

    def through_app() -> float:
        started = time.perf_counter()
        update = last_update(remote.stream(messages, settings))
        _check_length(update.stats.new_tokens)
        return time.perf_counter() - started

    result = paired(through_app, _direct(remote), reps=reps * 2)
    return Row("V2", OVERHEAD_WHAT, f"{result.a_median:.2f} s", f"{result.b_median:.2f} s", result.ratio,
               OVERHEAD_TARGET, f"{spread(result)}; greedy, streamed with usage on both sides")


def _direct(remote: OpenAIBackend) -> Callable[[], float]:
    """The same request as the app sends, straight through the openai client, chunks read as they come."""
    client = remote.client.with_options()  # a client of its own, without the app's wrapper above

    def call() -> float:
        started = time.perf_counter()
        stream = client.chat.completions.create(
            model=remote.name, messages=[{"role": "user", "content": PROMPT}], max_tokens=OVERHEAD_TOKENS,
            temperature=0.0, stream=True, stream_options={"include_usage": True},
            extra_body={"min_tokens": OVERHEAD_TOKENS, "skip_special_tokens": False,
                        "chat_template_kwargs": {"enable_thinking": False}},
        )
        text, tokens = "", 0
        for chunk in stream:
            text += "".join(choice.delta.content or "" for choice in chunk.choices)
            tokens = chunk.usage.completion_tokens if chunk.usage else tokens
        _check_length(tokens)
        return time.perf_counter() - started

    return call


def _check_length(tokens: int) -> None:
    if tokens != OVERHEAD_TOKENS:
        raise RuntimeError(f"streamed {tokens} tokens, not {OVERHEAD_TOKENS}")


if __name__ == "__main__":
    from benchmarks.report import print_rows

    print_rows(run(quick="--quick" in sys.argv))
