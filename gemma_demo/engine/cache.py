"""The one piece of process-wide state: the currently loaded model.

Loading is lazy (first request) and happens once even when several requests arrive
together. Switching to another model (only among those the operator allows) waits until
the generations that use the current one have finished, while new requests queue behind
the switch; it then frees the current model before loading the next, so a GPU never
holds two checkpoints, and if the next one fails to load it loads the previous one again.
"""

from __future__ import annotations

import gc
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


from gemma_demo.engine.base import Backend
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.progress import LoadProgress, LoadState, reporting
from gemma_demo.errors import GemmaDemoError, ModelUnavailableError

Loader = Callable[[str, LoadOptions], Backend]


def _load_openai_backend(name: str, options: LoadOptions) -> Backend:
    from gemma_demo.engine.remote.client import load_openai_backend

    return load_openai_backend(name, options)


def _load_local_backend(name: str, options: LoadOptions) -> Backend:
    # Imported on first use, as the remote one is: torch and transformers take seconds to
    # import, and the page should answer before they do.
    from gemma_demo.engine.loading import load_local_backend

    return load_local_backend(name, options)


LOADERS: dict[str, Loader] = {"local": _load_local_backend, "openai": _load_openai_backend}


@dataclass(frozen=True)
class CacheKey:
    name: str
    options: LoadOptions


class ModelCache:
    """Holds at most one backend; `use` lends it to one generation, loading or switching first."""

    def __init__(self, loaders: dict[str, Loader] | None = None):
        self._loaders = loaders or LOADERS
        self._changed = threading.Condition()
        self._key: CacheKey | None = None
        self._backend: Backend | None = None
        self._users = 0  # generations running on the current backend
        self._wanted: Counter[CacheKey] = Counter()  # requests waiting, by the model they need
        self._loading: LoadProgress | None = None
        self.loads = 0

    @property
    def loaded_name(self) -> str | None:
        return self._key.name if self._key else None

    @property
    def loading(self) -> LoadState | None:
        """How far the load in progress has got; `None` when no model is loading."""
        progress = self._loading
        return progress.state if progress is not None else None

    @property
    def waiting(self) -> int:
        """Requests queued for a model (behind a load, a switch, or the generations a switch waits for)."""
        with self._changed:
            return sum(self._wanted.values())

    def get(self, name: str, options: LoadOptions | None = None) -> Backend:
        """The backend for `name`, loaded if needed, for callers that run one thing at a time."""
        with self.use(name, options) as backend:
            return backend

    @contextmanager
    def use(self, name: str, options: LoadOptions | None = None) -> Iterator[Backend]:
        """The backend for `name` while the caller generates with it; a switch waits for the caller."""
        key = CacheKey(name, options or LoadOptions())
        backend = self._acquire(key)
        try:
            yield backend
        finally:
            with self._changed:
                self._users -= 1
                self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            while self._users or self._loading is not None:
                self._changed.wait()
            self._release()

    def _acquire(self, key: CacheKey) -> Backend:
        with self._changed:
            self._wanted[key] += 1
            try:
                while not self._may_go(key):
                    self._changed.wait()
            finally:
                self._wanted[key] -= 1
            if self._key == key and self._backend is not None:
                self._users += 1
                return self._backend
            self._loading = LoadProgress(key.name)
        backend = None
        try:
            backend = self._switch(key)
            return backend
        finally:
            with self._changed:
                self._loading = None
                self._users += backend is not None
                self._changed.notify_all()

    def _may_go(self, key: CacheKey) -> bool:
        """Use the loaded model unless a switch is queued; switch once nobody generates."""
        if self._loading is not None:
            return False
        if self._key == key and self._backend is not None:
            return not any(count and other != key for other, count in self._wanted.items())
        return not self._users

    def _switch(self, key: CacheKey) -> Backend:
        """Free the current model, load `key`'s; on failure load the previous one again."""
        previous = self._key
        self._release()
        try:
            return self._load(key)
        except Exception as error:
            if previous is None:
                raise
            reason = str(error) if isinstance(error, GemmaDemoError) else f"{type(error).__name__}: {error}"
            try:
                self._load(previous)
            except Exception as again:  # noqa: BLE001 - both failures go into one message
                raise ModelUnavailableError(
                    f"{reason} Reloading {previous.name} failed too ({again}); no model is loaded."
                ) from error
            raise ModelUnavailableError(f"{reason} {previous.name} is loaded again.") from error

    def _load(self, key: CacheKey) -> Backend:
        loader = self._loaders.get(key.options.backend)
        if loader is None:
            raise ValueError(f"Unknown backend {key.options.backend!r}; use one of {sorted(self._loaders)}")
        assert self._loading is not None
        with reporting(self._loading):
            backend = loader(key.name, key.options)
        self._backend, self._key = backend, key
        self.loads += 1
        return backend

    def _release(self) -> None:
        """Drop the model and return its memory; no generation uses it any more."""
        self._backend = None
        self._key = None
        gc.collect()
        import torch  # here, not at import: the page must not wait seconds for torch to start

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
