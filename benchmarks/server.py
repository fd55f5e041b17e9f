"""Starting `python app.py` on a free port and waiting for its page, for P5 and P6."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"
POLL_S = 0.05
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def page_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_app(model: str = "tiny") -> Iterator[tuple[str, float]]:
    """Yield the app's URL and the seconds it took until `/` answered 200; stop it afterwards."""
    with running_server([str(APP), "--model", model]) as started:
        yield started


@contextmanager
def running_server(arguments: list[str]) -> Iterator[tuple[str, float]]:
    """`python ARGUMENTS --port PORT` until its `/` answers 200: its URL and the seconds that took."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, *arguments, "--port", str(port)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not page_answers(url):
            if process.poll() is not None:
                raise RuntimeError(f"{arguments[0]} exited with {process.returncode}:\n{process.stderr.read()[-2000:]}")
            if time.perf_counter() - started > START_TIMEOUT_S:
                raise TimeoutError(f"{arguments[0]} did not answer on {url} within {START_TIMEOUT_S:g} s")
            time.sleep(POLL_S)
        yield url, time.perf_counter() - started
    finally:
        _stop(process)
