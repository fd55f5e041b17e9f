"""The chat's history comes from the client: it must not be a way to read the server's files.

A history (or a new message) is JSON the client writes, so it can name any path. Gradio checks
only file objects that carry its `meta` marker, and its checks allow another session's upload
(every upload sits in one cache) and, on the way out, anything under the working directory.
The app accepts a file only if this session sent it (or an import or a tool made it for this
session); everything else is refused before it is read, echoed, exported or shown to the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.client import Endpoint
from gradio_client.exceptions import AppError

from scripted_backend import ScriptedBackend, serve_scripted

ROOT = Path(__file__).resolve().parent.parent
INPUT = ROOT / "input"
REFUSED = "not a file of this conversation"
GRADIO_REFUSED = "was not uploaded by a user"
FILE_DATA = {"_type": "gradio.FileData"}


@dataclass
class RecordingBackend(ScriptedBackend):
    """Answers at once and keeps every request's messages, to see what reached the model."""

    updates: int = 2
    delay_s: float = 0.0
    seen: list = field(default_factory=list)

    def stream(self, messages, settings):
        self.seen.append(messages)
        yield from super().stream(messages, settings)


@pytest.fixture(scope="module")
def backend():
    return RecordingBackend()


@pytest.fixture
def hand_written(monkeypatch):
    """gradio_client uploads every file it is given; a hand-written client sends server paths as they are."""
    monkeypatch.setattr(Endpoint, "_upload_file", lambda self, file, data_index: file)


@pytest.fixture(scope="module")
def app(backend):
    demo = serve_scripted(backend)
    yield demo
    demo.close()


def server_upload(app, path: Path) -> str:
    """Upload as another visitor's page does; the answer is the file's path on the server."""
    with path.open("rb") as file:
        response = httpx.post(f"{app.local_url}gradio_api/upload", files={"files": (path.name, file)})
    response.raise_for_status()
    return response.json()[0]


def raw_file(path: str | Path) -> dict:
    """A file part naming a path on the server, marked as Gradio's file data."""
    return {"type": "file", "file": {"path": str(path), "meta": FILE_DATA}}


def history_naming(path: str | Path) -> list[dict]:
    return [
        {"role": "user", "content": [raw_file(path), {"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A file."}]},
    ]


def images_seen(backend: RecordingBackend) -> int:
    return sum(1 for messages in backend.seen for m in messages if isinstance(m["content"], list)
               for p in m["content"] if p["type"] == "image")


def targets(app) -> dict[str, str]:
    """Files a visitor must not reach: a system file, the app's source and a picture inside the
    working directory, and a picture another visitor uploaded."""
    return {
        "system file": "/etc/hostname",
        "app source": str(ROOT / "gemma_demo" / "ui" / "chat.py"),
        "repository picture": str(ROOT / "docs" / "screenshot.png"),
        "another session's upload": server_upload(app, INPUT / "rocket.jpg"),
    }


def test_a_history_naming_a_file_never_sent_is_refused(app, backend, hand_written):
    client = Client(app.local_url, verbose=False)
    for name, path in targets(app).items():
        before = len(backend.seen)
        with pytest.raises(AppError, match=REFUSED if name == "another session's upload" else ""):
            client.predict({"text": "Go on.", "files": []}, history_naming(path), api_name="/chat")
        assert len(backend.seen) == before, name
    assert images_seen(backend) == 0


def test_a_new_message_naming_a_server_file_is_refused(app, backend, hand_written):
    client = Client(app.local_url, verbose=False)
    before = images_seen(backend)
    for name, path in targets(app).items():
        if name == "another session's upload":
            continue  # Gradio serves any upload to whoever names its path (a keyed hash of its bytes)
        with pytest.raises(AppError):  # Gradio refuses it without saying why (show_error is off)
            client.predict({"text": "What is this?", "files": [{"path": path, "meta": FILE_DATA}]}, [],
                           api_name="/chat")
    assert images_seen(backend) == before


def test_export_refuses_a_file_never_sent(app, hand_written):
    client = Client(app.local_url, verbose=False)
    for name, path in targets(app).items():
        with pytest.raises(AppError, match=REFUSED if name == "another session's upload" else ""):
            client.predict(history_naming(path), api_name="/export_chat")


def test_an_imported_chat_cannot_name_a_server_file(app, tmp_path):
    client = Client(app.local_url, verbose=False)
    document = {"format": "gemma-demo-chat/1", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/etc/hostname"}},
                                     {"type": "file", "file": {"path": "/etc/hostname"}}]},
    ]}
    chat_file = tmp_path / "chat.json"
    chat_file.write_text(json.dumps(document))
    with pytest.raises(AppError, match="not base64 data URLs"):
        client.predict(handle_file(chat_file), api_name="/import_chat")


def resendable(history: list[dict]) -> list[dict]:
    """gradio_client hands files back as local paths; `handle_file` uploads them again."""
    for part in (p for m in history for p in m["content"] if p["type"] == "file"):
        part["file"] = handle_file(part["file"])
    return history


def test_the_session_keeps_its_own_files_across_turns_and_imports(app, backend):
    client = Client(app.local_url, verbose=False)
    history, _, _ = client.predict({"text": "What is it?", "files": [handle_file(INPUT / "chelsea.jpg")]}, [],
                                   api_name="/chat")
    before = images_seen(backend)
    history, _, _ = client.predict({"text": "And the colour?", "files": []}, resendable(history), api_name="/chat")
    assert images_seen(backend) == before + 1  # the first picture went to the model again
    exported = client.predict(resendable(history), api_name="/export_chat")
    other = Client(app.local_url, verbose=False)
    loaded = other.predict(handle_file(exported), api_name="/import_chat")
    history, _, _ = other.predict({"text": "Once more.", "files": []}, resendable(loaded), api_name="/chat")
    assert images_seen(backend) == before + 2  # an imported picture is the importing session's own
    third = Client(app.local_url, verbose=False)
    with pytest.raises(AppError, match=REFUSED):  # but the history alone is not a third session's
        third.predict({"text": "And now?", "files": []}, resendable(history), api_name="/chat")
