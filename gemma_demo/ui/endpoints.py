"""Gradio event functions from handlers: settings as named parameters, the shared model, errors, Stop.

`Endpoints.wrap` turns a handler into what Gradio calls: the shared settings become named
parameters (the API page and MCP tools list them), the model is fetched from the cache,
and errors become `gr.Error` in this one place, so the page always gets a message
instead of freezing. Closing a run is what stops the model.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import gradio as gr

from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.registry import canonical_name
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import GemmaDemoError, InvalidInputError
from gemma_demo.ui.settings import SETTINGS_DOC, SettingsChoice, settings_for, settings_parameters

log = logging.getLogger(__name__)

CLOSE_RETRY_S = 0.01
PROGRESS_DOC = {
    "request": "Set by Gradio (the visitor's session, which owns what is kept between turns); not an API parameter.",
    "progress": "Set by Gradio (shows a model download or load); not an API parameter.",
}
# While the model loads, the page's progress bar is refreshed this often.
PROGRESS_POLL_S = 0.5
GENERIC_ERROR = "Something went wrong while running this request. Try again; if it keeps failing, see the server log."
Handler = Callable[..., Iterator[tuple]]
# Wraps the model-bound part of an endpoint, given the endpoint's API name (ZeroGPU's `spaces.GPU`).
GpuWrapper = Callable[[Callable, str], Callable]


@dataclass(frozen=True)
class Endpoints:
    """Makes Gradio event functions from handlers; every one shares the one model cache.

    `models` are the checkpoints visitors may use, the start-up one first. `gpu` wraps the
    part that runs the model (ZeroGPU's `spaces.GPU` on Spaces). It gets the model name
    rather than the backend, since its arguments are sent to the process ZeroGPU runs it in.
    """

    cache: ModelCache
    load: LoadOptions
    models: tuple[str, ...]
    gpu: GpuWrapper | None = None

    def wrap(
        self, handler: Handler, defaults: GenerationSettings, api_name: str = ""
    ) -> Callable[..., AsyncIterator[tuple]]:
        task_parameters = list(inspect.signature(handler).parameters.values())[2:]
        count = len(task_parameters)

        def run(model: str, settings: GenerationSettings, *inputs: Any, stopped: threading.Event | None = None
                ) -> Iterator[tuple]:
            with self.cache.use(model, self.load) as backend:
                # A Stop that came while the model loaded cannot close this generator (a worker
                # is inside it), so it is checked here, before the model reads anything.
                if stopped is None or not stopped.is_set():
                    yield from handler(backend, settings, *inputs)

        if self.gpu is not None:
            run = self.gpu(run, api_name)

        def results(stopped: threading.Event, session: str, *values: Any) -> Iterator[tuple]:
            inputs, choice = values[:count], SettingsChoice(*values[count:])
            # ZeroGPU sends the arguments to another process, which an Event cannot reach;
            # there the model is loaded at start-up, so no Stop can come during a load.
            local_stop = {"stopped": stopped} if self.gpu is None else {}
            try:
                model = require_allowed(choice.model, self.models)
                settings = settings_for(choice, defaults).with_changes(conversation=session)
                yield from run(model, settings, *inputs, **local_stop)
            except GemmaDemoError as error:
                raise gr.Error(str(error)) from error
            except Exception:  # noqa: BLE001 - the person gets a message, the log gets the trace
                log.exception("%s failed", handler.__name__)
                raise gr.Error(GENERIC_ERROR) from None

        @functools.wraps(handler)
        async def endpoint(*values: Any) -> AsyncIterator[tuple]:
            # Gradio closes a run on Stop only once it has registered the run's first result,
            # so a Stop during loading, prefill or that result's postprocessing would leave the
            # model generating for nobody. A Stop cancels the task that drives this generator,
            # whatever it is awaiting; when that task ends, for any reason, the run is closed.
            # Gradio passes the request, then its progress tracker, last, where the signature below puts them.
            progress = values[-1] if values and isinstance(values[-1], gr.Progress) else None
            values = values[: len(values) - (progress is not None)]
            request = values[-1] if values and isinstance(values[-1], gr.Request) else None
            values = values[: len(values) - (request is not None)]
            stopped = threading.Event()
            run_results = results(stopped, session_of(request), *values)
            driver = asyncio.current_task()
            if driver is not None:
                driver.add_done_callback(lambda _: (stopped.set(), close_when_idle(run_results)))
            try:
                first = await self._first_result(run_results, progress)
                if first is not None:
                    yield first
                while (result := await anyio.to_thread.run_sync(next, run_results, None)) is not None:
                    yield result
            finally:
                close_when_idle(run_results)

        # Gradio names API parameters after the signature and describes them from the docstring;
        # `request` and `progress` are Gradio's own (found by annotation and default), not API parameters.
        own = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request),
               inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())]
        endpoint.__signature__ = inspect.Signature(task_parameters + settings_parameters() + own)
        endpoint.__annotations__ = {"request": gr.Request}
        endpoint.__doc__ = with_settings_doc(handler.__doc__ or "")
        return endpoint

    async def _first_result(self, run_results: Iterator[tuple], progress: gr.Progress | None) -> tuple | None:
        """The run's first result; meanwhile, any model load it waits for shows as progress.

        Every request that waits for the same load reads the same progress.
        """
        first = asyncio.ensure_future(anyio.to_thread.run_sync(next, run_results, None))
        try:
            while not first.done():
                if progress is not None and (state := self.cache.loading) is not None:
                    progress(state.fraction, desc=state.describe())
                await asyncio.wait([first], timeout=PROGRESS_POLL_S)
            return first.result()
        finally:
            first.cancel()


def session_of(request: gr.Request | None) -> str:
    """The visitor's session, which owns what the model keeps between turns; empty when unknown."""
    return str(getattr(request, "session_hash", None) or "")


def close_when_idle(results: Iterator) -> None:
    """Close a generator in a thread of its own, once the worker thread still inside it comes out.

    Closing it is what stops the model (the backend's `finally` sets its stop flag), and
    that `finally` may wait for a decode step or a generation thread: on the event loop,
    that wait would freeze the page for every visitor.
    """
    threading.Thread(target=_close_after_step, args=(results,), name="close-run", daemon=True).start()


def _close_after_step(results: Iterator) -> None:
    while True:
        try:
            results.close()
            return
        except ValueError:
            time.sleep(CLOSE_RETRY_S)


def require_allowed(model: str, allowed: tuple[str, ...]) -> str:
    """The checkpoint a request names, if the operator allows it (`--model`, `--models`).

    Loading a model replaces the one every user shares, so only the operator decides which
    ones visitors may pick; any other name is refused, never served by another model.
    """
    name = canonical_name(model or "")
    if not name:
        raise InvalidInputError("Choose a model in the settings.")
    if name not in allowed:
        raise InvalidInputError(
            f"{model!r} is not one of this app's models; it serves {', '.join(allowed)}. "
            "Another checkpoint is the operator's choice: --model, or --models for the ones visitors may pick."
        )
    return name


def with_settings_doc(doc: str) -> str:
    """Append the settings to the handler's `Args:` list, one `name: text` line each."""
    lines = "\n".join(f"    {name}: {text}" for name, text in {**SETTINGS_DOC, **PROGRESS_DOC}.items())
    return f"{inspect.cleandoc(doc)}\n{lines}"
