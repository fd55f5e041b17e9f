"""Stop closes a run off the event loop: a slow close must not freeze the page for everyone."""

import asyncio
import threading

from app_helpers import wait_until
from gemma_demo.ui.endpoints import close_when_idle

CLOSE_CEILING_S = 30.0


def test_closing_a_run_whose_cleanup_waits_does_not_block_the_event_loop():
    cleanup_started, cleanup_may_end, closed = threading.Event(), threading.Event(), threading.Event()

    def run():
        try:
            yield "first token"
            yield "second token"
        finally:  # as the backend does: stop the model, then wait for its thread
            cleanup_started.set()
            cleanup_may_end.wait(CLOSE_CEILING_S)
            closed.set()

    results = run()
    assert next(results) == "first token"

    async def stop_then_serve_others():
        close_when_idle(results)
        returned_before_cleanup_ended = not closed.is_set()
        await asyncio.sleep(0)  # the loop runs other visitors' work at once
        return returned_before_cleanup_ended

    assert asyncio.run(stop_then_serve_others())
    assert wait_until(cleanup_started.is_set, CLOSE_CEILING_S)
    cleanup_may_end.set()
    assert wait_until(closed.is_set, CLOSE_CEILING_S)  # and the run is closed all the same
