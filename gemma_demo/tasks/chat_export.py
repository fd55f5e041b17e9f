"""A conversation as one JSON file, and back.

The file holds `{"format": FORMAT, "messages": [...]}` with OpenAI-style chat messages:
text as `{"type": "text"}` parts, pictures as `image_url` parts and every other file as a
`file` part (`{"filename", "file_data"}`), all media embedded as base64 data URLs so the
one file is the whole conversation. An answer's reasoning travels in the assistant
message's `reasoning_content`, the field vLLM uses.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from typing import Any

from gemma_demo.errors import InvalidInputError
from gemma_demo.media.filenames import safe_stem
from gemma_demo.tasks.conversation import (
    REASONING_TITLE,
    ChatMessage,
    file_part,
    is_reasoning,
    media_type,
    parts_of,
    text_part,
)

FORMAT = "gemma-demo-chat/1"
DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)


def export_conversation(history: list[ChatMessage]) -> dict[str, Any]:
    """The history as OpenAI-style messages with embedded media."""
    messages: list[dict[str, Any]] = []
    reasoning = ""
    for message in history:
        if is_reasoning(message):
            reasoning += "".join(p["text"] for p in parts_of(message["content"]) if p["type"] == "text")
            continue
        exported: dict[str, Any] = {"role": message["role"], "content": [_export_part(p) for p in parts_of(message["content"])]}
        if message["role"] == "assistant" and reasoning:
            exported["reasoning_content"], reasoning = reasoning, ""
        messages.append(exported)
    return {"format": FORMAT, "messages": messages}


def import_conversation(document: str | bytes | dict, folder: Path) -> list[ChatMessage]:
    """The history from an exported file; embedded media are written into `folder`."""
    data = _parsed(document)
    history: list[ChatMessage] = []
    for index, message in enumerate(data["messages"]):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise InvalidInputError(f"Message {index + 1} of the chat file has no user or assistant role.")
        if role == "assistant" and message.get("reasoning_content"):
            history.append(
                {"role": "assistant", "content": str(message["reasoning_content"]),
                 "metadata": {"title": REASONING_TITLE, "status": "done"}}
            )
        content = message.get("content")
        parts = [text_part(content)] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise InvalidInputError(f"Message {index + 1} of the chat file has no content list.")
        history.append({"role": role, "content": [_import_part(p, folder, f"{index}-{n}") for n, p in enumerate(parts)]})
    return history


def _export_part(part: dict[str, Any]) -> dict[str, Any]:
    if part["type"] == "text":
        return part
    path = Path(part["file"]["path"])
    mime = media_type(path)
    url = f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": url}, "filename": path.name}
    return {"type": "file", "file": {"filename": path.name, "file_data": url}}


def _import_part(part: Any, folder: Path, key: str) -> dict[str, Any]:
    if isinstance(part, dict) and part.get("type") == "text":
        return text_part(str(part.get("text", "")))
    if isinstance(part, dict) and part.get("type") == "image_url":
        return _write(part["image_url"]["url"], part.get("filename") or "picture", folder, key)
    if isinstance(part, dict) and part.get("type") == "file":
        return _write(part["file"]["file_data"], part["file"].get("filename") or "file", folder, key)
    raise InvalidInputError("The chat file holds a part that is not text, an image_url or a file.")


def _write(url: str, filename: str, folder: Path, key: str) -> dict[str, Any]:
    """The embedded file on disk under a safe name; its suffix keeps its media type readable."""
    match = DATA_URL.match(url or "")
    if match is None:
        raise InvalidInputError("The chat file embeds media that are not base64 data URLs; export the chat again.")
    try:
        data = base64.b64decode(match["data"], validate=True)
    except binascii.Error:
        raise InvalidInputError("The chat file holds damaged base64 media; export the chat again.") from None
    suffix = re.sub(r"[^a-z0-9.]", "", Path(filename).suffix.lower())[:8]
    path = folder / key / f"{safe_stem(filename, 'file')}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return file_part(path)


def _parsed(document: str | bytes | dict) -> dict[str, Any]:
    try:
        data = json.loads(document) if isinstance(document, (str, bytes)) else document
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInputError("The chat file is not JSON. Load a file saved with Export.") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("messages"), list):
        raise InvalidInputError(f"The chat file is not a {FORMAT} file. Load a file saved with Export.")
    return data
