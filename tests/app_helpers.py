"""What the tests that run the app share: a free port, the app on the tiny model, and a
way to watch the threads that generate."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

LOCALHOST = "127.0.0.1"
STOP_WAIT_S = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return probe.getsockname()[1]


def serve(tiny_options, cache=None, **config):
    """The app on the tiny model, in this process, with its own model cache (or `cache`, to look inside)."""
    from gemma_demo.config import AppConfig
    from gemma_demo.engine.cache import ModelCache
    from gemma_demo.ui.server import launch

    # The other tiny models are allowed too, as tests switch to them (`--models`).
    config = {"models": ("tiny-moe", "tiny-dense"), **config}
    settings = AppConfig(model="tiny", load=tiny_options, port=free_port(), **config)
    return launch(settings, cache or ModelCache(), prevent_thread_lock=True, quiet=True, share=False)


def generation_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("generate-")]


def generating() -> bool:
    return bool(generation_threads())


def wait_until(condition: Callable[[], bool], timeout: float = STOP_WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
