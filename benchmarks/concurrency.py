"""P5: four people at once get more tokens per second in total than one, and nobody starves.

The app lets up to four model events run together (one queue, `concurrency_limit=4`).
That only pays if generating for four at once yields more tokens per second than for
one, and it is only fair if each of the four still sees a first token soon. Measured
end to end through `gradio_client` against `python app.py`, as a person's browser
would see it.

`python -m benchmarks.concurrency [--quick]` runs this group alone.
"""

from __future__ import annotations

import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from benchmarks.common import Row, Target, median, not_measured, paired
from benchmarks.server import APP, ROOT, running_app

USERS = 4
THROUGHPUT_TARGET, FAIRNESS_TARGET = Target(1.5, at_most=False), Target(3.0)
IMAGE = ROOT / "input" / "scene.jpg"
QUESTION = "Describe everything in this picture in detail."
NEW_TOKENS = re.compile(r"(\d+) new tokens")


@dataclass(frozen=True)
class Answer:
    """One request as its user saw it; `failed` holds the error text of a request that failed."""

    tokens: int
    first_text_s: float | None
    failed: str = ""


def ask(client, model: str, max_new_tokens: int) -> Answer:
    from gradio_client import handle_file

    started = time.perf_counter()
    first: float | None = None
    try:
        job = client.submit(image=handle_file(str(IMAGE)), style="custom", question=QUESTION, model=model,
                            max_new_tokens=max_new_tokens, thinking="off", sampling="off", api_name="/caption")
        for text, _reasoning, _stats in job:
            if first is None and text:
                first = time.perf_counter() - started
        _text, _reasoning, stats = job.result()
    except Exception as error:  # noqa: BLE001 - a failed request is a result here, not a crash
        return Answer(0, first, f"{type(error).__name__}: {error}")
    found = NEW_TOKENS.search(stats or "")
    return Answer(int(found.group(1)) if found else 0, first)


class Crowd:
    """`USERS` clients of one app; each call runs a phase and records what its users saw."""

    def __init__(self, url: str, model: str, max_new_tokens: int):
        from gradio_client import Client

        self.clients = [Client(url, verbose=False, analytics_enabled=False) for _ in range(USERS)]
        self.model, self.max_new_tokens = model, max_new_tokens
        self.phases: dict[int, list[tuple[float, list[Answer]]]] = {1: [], USERS: []}
        self.pool = ThreadPoolExecutor(USERS)

    def phase(self, users: int) -> float:
        started = time.perf_counter()
        answers = list(self.pool.map(lambda c: ask(c, self.model, self.max_new_tokens), self.clients[:users]))
        wall = time.perf_counter() - started
        self.phases[users].append((wall, answers))
        return wall

    def rows(self, label: str, reps: int) -> list[Row]:
        lone, crowd = self.phases[1][-reps:], self.phases[USERS][-reps:]
        rate = lambda wall, answers: sum(a.tokens for a in answers) / wall
        gains = [rate(*c) / rate(*l) for c, l in zip(crowd, lone)]
        firsts = [a.first_text_s for _, answers in lone for a in answers if a.first_text_s is not None]
        worst = [max((a.first_text_s or wall) for a in answers) for wall, answers in crowd]
        failures = [a.failed for _, answers in lone + crowd for a in answers if a.failed]
        note = f"{len(failures)} failed requests" + (f" (first: {failures[0][:120]})" if failures else "")
        slowest = median(worst) / median(firsts) if firsts else None
        return [
            Row("P5", f"{label}: aggregate tokens/s, {USERS} concurrent users vs 1 (/caption via gradio_client)",
                f"{median([rate(*c) for c in crowd]):.1f} tok/s", f"{median([rate(*l) for l in lone]):.1f} tok/s",
                median(gains), THROUGHPUT_TARGET, note),
            Row("P5", f"{label}: slowest of {USERS} users' first token vs a lone user's",
                f"{median(worst):.2f} s", f"{median(firsts):.2f} s" if firsts else "—", slowest, FAIRNESS_TARGET,
                "first streamed text as the client sees it"),
        ]


def measure(url: str, label: str, model: str, max_new_tokens: int, reps: int) -> list[Row]:
    crowd = Crowd(url, model, max_new_tokens)
    try:
        paired(lambda: crowd.phase(USERS), lambda: crowd.phase(1), reps)
        return crowd.rows(label, reps)
    finally:
        crowd.pool.shutdown()


def run(quick: bool = False, reps: int = 5) -> list[Row]:
    """The tiny model; in a full run also the ~133M one, served from its folder by an app started with it.

    The app lets visitors pick only known models or the one it was started with.
    """
    what = f"aggregate tokens/s, {USERS} concurrent users vs 1"
    if not APP.exists():
        return [not_measured("P5", what, THROUGHPUT_TARGET, "app.py is missing")]
    from benchmarks.models import small_checkpoint

    subjects = [("tiny", "tiny", 64)]
    if not quick:
        checkpoint = small_checkpoint()
        subjects.append((f"{checkpoint.parameters / 1e6:.0f}M E2B-like", str(checkpoint.path), 16))
    rows: list[Row] = []
    for label, model, max_new_tokens in subjects:
        with running_app(model) as (url, _):
            rows += measure(url, label, model, max_new_tokens, reps)
    return rows


if __name__ == "__main__":
    from benchmarks.report import print_rows

    print_rows(run(quick="--quick" in sys.argv))
