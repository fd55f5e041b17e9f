"""Cancel storm: 50 long requests started and stopped at random moments through the API.

Each request comes from its own session, as from 50 browser tabs, and asks for far more
tokens than it will be allowed to write. Some are stopped while queued, some while the
model reads the prompt, most while tokens stream. Afterwards no generation thread may be
left, the process must fall idle (the time it took is printed, not judged: speed belongs
to `benchmarks/`), and a normal request must work. A Stop while the model is still loading must not leave a generation running for nobody.

A request counts as started once the server has accepted it (the client holds its event
id): `gradio_client` cannot tell the server about a Stop that comes before that.
"""

from __future__ import annotations

import random
import threading
import time

import psutil
import pytest
from gradio_client import Client, handle_file

from gemma_demo.config import AppConfig
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.loading import load_local_backend
from gemma_demo.ui.server import launch
from hostile_inputs import ENDPOINTS, FILE
from app_helpers import free_port, generating, generation_threads, wait_until
from test_api import CANCEL_TOKENS

STORM = 50
SEED = 20240611
SPREAD_S = 6.0  # requests start at random moments over this long
LONGEST_LIFE_S = 2.5  # each is stopped at a random moment up to this long after the server accepted it
POLL_S = 0.005
CEILING_S = 120.0  # how long to wait for an event before calling it lost; never a speed target
IDLE_WINDOW_S = 0.5
# Of one core. One tiny-model generation keeps a core busy; a server with 50 open sessions
# and nothing to generate uses a few per cent (heartbeats, event streams).
IDLE_CPU_SHARE = 0.2
MIN_STOPPED_MID_STREAM = 5
STORM_TASKS = ("caption", "ocr", "detect", "ask_audio", "transcribe", "video", "html")

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, list]:
    folder = tmp_path_factory.mktemp("storm")
    files = {name: ENDPOINTS[name].write_normal(folder / name) for name in STORM_TASKS}
    return {
        name: [handle_file(files[name]) if item is FILE else item for item in ENDPOINTS[name].normal_inputs]
        for name in STORM_TASKS
    }


def submit(client: Client, inputs: dict[str, list], task: str, max_new_tokens: int):
    endpoint = ENDPOINTS[task]
    # Greedy, so every run makes all its tokens (a sampled end token could stop an open-ended task early).
    return client.submit(*inputs[task], api_name=endpoint.api, max_new_tokens=max_new_tokens, sampling="off",
                         **endpoint.options)


def accepted(job) -> bool:
    return job.communicator.event_id is not None


def streamed(job) -> bool:
    return len(job.outputs()) > 0


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def seconds_until_idle(since: float, deadline: float) -> float | None:
    """Seconds from `since` to the end of the first window in which this process used almost no CPU."""
    process = psutil.Process()
    while time.monotonic() < since + deadline + IDLE_WINDOW_S:
        before, started = cpu_seconds(process), time.monotonic()
        time.sleep(IDLE_WINDOW_S)
        if cpu_seconds(process) - before < IDLE_CPU_SHARE * (time.monotonic() - started):
            return time.monotonic() - since
    return None


def test_fifty_requests_stopped_at_random_leave_nothing_running(app, inputs):
    rng = random.Random(SEED)
    tasks = [rng.choice(STORM_TASKS) for _ in range(STORM)]
    starts = sorted(rng.uniform(0, SPREAD_S) for _ in range(STORM))
    lifetimes = [rng.uniform(0, LONGEST_LIFE_S) for _ in range(STORM)]
    clients = [Client(app.local_url, verbose=False) for _ in range(STORM)]
    assert "8 new tokens" in submit(clients[0], inputs, "caption", 8).result()[-1]  # the model is loaded

    jobs, stop_at, mid_stream = {}, {}, {}
    began = time.monotonic()
    while len(mid_stream) < STORM:
        now = time.monotonic() - began
        for i in range(len(jobs), STORM):
            if starts[i] > now:
                break
            jobs[i] = submit(clients[i], inputs, tasks[i], CANCEL_TOKENS)
        for i, job in jobs.items():
            if i not in stop_at and accepted(job):
                stop_at[i] = now + lifetimes[i]
            if i in stop_at and i not in mid_stream and stop_at[i] <= now:
                mid_stream[i] = streamed(job)
                job.cancel()
        time.sleep(POLL_S)
    last_stop = time.monotonic()

    threads_gone = wait_until(lambda: not generating(), CEILING_S)
    threads_s = time.monotonic() - last_stop
    idle_s = seconds_until_idle(last_stop, CEILING_S)
    left = len(generation_threads())
    stopped_streaming = sum(mid_stream.values())
    print(f"\nRELIABILITY cancel storm: {STORM} requests ({len(set(tasks))} tasks), {stopped_streaming} stopped "
          f"while streaming, {STORM - stopped_streaming} before their first token; no generation thread "
          f"{threads_s:.2f} s after the last Stop; idle after {idle_s} s; generation threads left: {left}")

    assert stopped_streaming >= MIN_STOPPED_MID_STREAM, "the storm did not hit running generations"
    assert threads_gone and left == 0, "a generation thread outlived its request"
    assert idle_s is not None, f"still busy {CEILING_S} s after the last Stop"
    final = submit(clients[-1], inputs, "caption", 8).result()
    assert final[0] and "8 new tokens" in final[-1]
    assert not generating()


def test_stop_while_the_model_loads_starts_no_generation(tiny_options, inputs):
    """The load is held until the test lets it go, so the Stop surely comes while it runs;
    once the model is there, the stopped request must not run it at all."""
    loading, release, steps = threading.Event(), threading.Event(), []

    def held_loader(name, options):
        loading.set()
        release.wait(CEILING_S)
        backend = load_local_backend(name, options)
        backend.model.register_forward_hook(lambda *_: steps.append(1))  # one call per token
        return backend

    cache = ModelCache(loaders={"local": held_loader})
    demo = launch(AppConfig(model="tiny", load=tiny_options, port=free_port()), cache,
                  prevent_thread_lock=True, quiet=True, share=False)
    try:
        client = Client(demo.local_url, verbose=False)
        job = submit(client, inputs, "caption", CANCEL_TOKENS)
        assert loading.wait(CEILING_S), "the request never asked for the model"
        assert cache.loaded_name is None and not generating()  # still loading
        job.cancel()
        assert wait_until(job.done, CEILING_S)
        release.set()
        assert wait_until(lambda: cache.loaded_name == "tiny", CEILING_S)
        assert seconds_until_idle(time.monotonic(), CEILING_S) is not None
        stopped_steps = len(steps)
        assert stopped_steps == 0 and not generating(), "the Stop was lost during the load"
        final = submit(client, inputs, "caption", 8).result()
        assert "8 new tokens" in final[-1] and len(steps) > stopped_steps
    finally:
        release.set()
        demo.close()
