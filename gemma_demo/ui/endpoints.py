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
from gemma_demo.engine.registry import is_selectable
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import GemmaDemoError, InvalidInputError
from gemma_demo.ui.settings import SETTINGS_DOC, SettingsChoice, settings_for, settings_parameters

log = logging.getLogger(__name__)

CLOSE_RETRY_S = 0.01
GENERIC_ERROR = "Something went wrong while running this request. Try again; if it keeps failing, see the server log."
Handler = Callable[..., Iterator[tuple]]


@dataclass(frozen=True)
class Endpoints:
    """Makes Gradio event functions from handlers; every one shares the one model cache.

    `gpu` wraps the part that runs the model (ZeroGPU's `spaces.GPU` on Spaces). It gets
    the model name rather than the backend, since a loaded model cannot cross into the
    process ZeroGPU runs it in.
    """

    cache: ModelCache
    load: LoadOptions
    startup_model: str
    gpu: Callable[[Callable], Callable] | None = None

    def wrap(self, handler: Handler, defaults: GenerationSettings) -> Callable[..., AsyncIterator[tuple]]:
        task_parameters = list(inspect.signature(handler).parameters.values())[2:]
        count = len(task_parameters)

        def run(model: str, settings: GenerationSettings, *inputs: Any) -> Iterator[tuple]:
            require_selectable(model, self.startup_model)
            yield from handler(self.cache.get(model, self.load), settings, *inputs)

        if self.gpu is not None:
            run = self.gpu(run)

        def results(*values: Any) -> Iterator[tuple]:
            inputs, choice = values[:count], SettingsChoice(*values[count:])
            try:
                yield from run(choice.model, settings_for(choice, defaults), *inputs)
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
            run_results = results(*values)
            driver = asyncio.current_task()
            if driver is not None:
                driver.add_done_callback(lambda _: close_when_idle(run_results))
            try:
                while (result := await anyio.to_thread.run_sync(next, run_results, None)) is not None:
                    yield result
            finally:
                close_when_idle(run_results)

        # Gradio names API parameters after the signature and describes them from the docstring.
        endpoint.__signature__ = inspect.Signature(task_parameters + settings_parameters())
        endpoint.__doc__ = with_settings_doc(handler.__doc__ or "")
        return endpoint


def close_when_idle(results: Iterator) -> None:
    """Close a generator now, or once the worker thread still inside it comes out.

    Closing it is what stops the model (the backend's `finally` sets its stop flag).
    """
    try:
        results.close()
    except ValueError:  # "generator already executing": a cancelled step still runs
        threading.Thread(target=_close_after_step, args=(results,), name="close-run", daemon=True).start()


def _close_after_step(results: Iterator) -> None:
    while True:
        try:
            results.close()
            return
        except ValueError:
            time.sleep(CLOSE_RETRY_S)


def require_selectable(model: str, startup_model: str) -> None:
    """Visitors pick among the known models; other folders or Hub ids only by start-up flag.

    Loading a model replaces the one every user shares, so an arbitrary name from the page
    or the API must not unload it or probe the server's disk.
    """
    if model != startup_model and not is_selectable(model):
        raise InvalidInputError(
            f"{model!r} is not one of this app's models. Pick E2B, E4B, 26B-A4B, 31B or a tiny model; "
            "another checkpoint can be served by starting the app with --model."
        )


def with_settings_doc(doc: str) -> str:
    """Append the settings to the handler's `Args:` list, one `name: text` line each."""
    lines = "\n".join(f"    {name}: {text}" for name, text in SETTINGS_DOC.items())
    return f"{inspect.cleandoc(doc)}\n{lines}"
