"""Shared fixtures: one tiny Gemma 4 per test session, no network, no telemetry."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py does; see docs/benchmarks.md
# An upload cache of this session's own: a Gradio app that stops deletes the uploads it made,
# and another test session on the machine (CI shares it) would share same-content paths.
_UPLOADS = tempfile.mkdtemp(prefix="gemma-demo-tests-gradio-")
os.environ.setdefault("GRADIO_TEMP_DIR", _UPLOADS)
atexit.register(shutil.rmtree, _UPLOADS, True)
# Quantized layers kept by `--quantize` loads (engine/quantized_store.py): this session's own.
_QUANTIZED = tempfile.mkdtemp(prefix="gemma-demo-tests-quantized-")
os.environ.setdefault("GEMMA_DEMO_QUANTIZED_CACHE", _QUANTIZED)
atexit.register(shutil.rmtree, _QUANTIZED, True)

import pytest  # noqa: E402

from gemma_demo.engine.cache import ModelCache  # noqa: E402
from gemma_demo.engine.options import LoadOptions  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--update-readme-screenshot", action="store_true",
                     help="copy the browser tests' screenshots to docs/screenshot.png, docs/chat.png "
                          "and docs/documents.png")


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_options(tiny_root) -> LoadOptions:
    return LoadOptions(tiny_root=tiny_root)


@pytest.fixture(scope="session")
def tiny_backend(tiny_options):
    """The tiny E2B-like model, loaded once for the whole session."""
    return ModelCache().get("tiny", tiny_options)


@pytest.fixture(scope="module")
def app(tiny_options):
    """The app on the tiny model, one per test module; modules that need another kind override it."""
    from app_helpers import serve

    demo = serve(tiny_options)
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app.local_url, verbose=False)


@pytest.fixture
def encoded_items(tiny_backend):
    """How many pictures and audio pieces went through the towers, counted per tower call."""
    counts = {"vision": 0, "audio": 0}

    def count(name):
        def hook(module, args, kwargs):
            first = args[0] if args else next(iter(kwargs.values()))
            counts[name] += int(first.shape[0])
        return hook

    handles = [tiny_backend.model.model.vision_tower.register_forward_pre_hook(count("vision"), with_kwargs=True),
               tiny_backend.model.model.audio_tower.register_forward_pre_hook(count("audio"), with_kwargs=True)]
    yield counts
    for handle in handles:
        handle.remove()


@pytest.fixture
def endless(tiny_backend, monkeypatch):
    """Answers never end early (end of turn suppressed), and each `generate` call's batch size is recorded."""
    sizes: list[int] = []
    real = tiny_backend.model.generate

    def generate(**kwargs):
        sizes.append(int(kwargs["input_ids"].shape[0]))
        return real(**kwargs, suppress_tokens=sorted(tiny_backend._end_ids()))

    monkeypatch.setattr(tiny_backend.model, "generate", generate)
    return sizes


@pytest.fixture
def renders(monkeypatch) -> list[int]:
    """Every page PDFium renders, counted."""
    import pypdfium2

    calls: list[int] = []
    real = pypdfium2.PdfPage.render

    def render(page, *args, **kwargs):
        calls.append(1)
        return real(page, *args, **kwargs)

    monkeypatch.setattr(pypdfium2.PdfPage, "render", render)
    return calls


@pytest.fixture(scope="session")
def vllm_python():
    """The python of vLLM's own venv (`tests/vllm_server.py`), built on first use; CI must have it."""
    from vllm_server import VllmUnavailableError, ensure_vllm_venv

    try:
        return ensure_vllm_venv()
    except VllmUnavailableError as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the vLLM tests, but vLLM's venv could not be built: {error}")
        pytest.skip(f"vLLM's venv could not be built here, so the vLLM tests did not run: {error}")


def pytest_collection_modifyitems(session, config, items):
    """Start llama.cpp's build (minutes, once per machine) as soon as a test that needs it is
    collected, so that it runs beside the other tests instead of before its own."""
    if any("llama_cpp" in getattr(item, "fixturenames", ()) for item in items):
        threading.Thread(target=_build_llama_cpp_early, name="llama.cpp build", daemon=True).start()


def _build_llama_cpp_early() -> None:
    from llama_server import LlamaCppUnavailableError, ensure_llama_cpp

    try:
        ensure_llama_cpp()
    except LlamaCppUnavailableError:
        pass  # the `llama_cpp` fixture builds again and reports why


@pytest.fixture(scope="session")
def llama_cpp():
    """llama.cpp's binaries and converter (`tests/llama_server.py`), built on first use; CI must have them."""
    from llama_server import LlamaCppUnavailableError, ensure_llama_cpp

    try:
        return ensure_llama_cpp()
    except LlamaCppUnavailableError as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the llama.cpp tests, but llama.cpp could not be built: {error}")
        pytest.skip(f"llama.cpp could not be built here, so the llama.cpp tests did not run: {error}")
