"""Which files a chat session may name: the ones it sent, imported or was shown.

The chat history travels with every request and is written by the client, so it can name
any path. Gradio refuses a file input outside its upload folder, but every session's uploads
and results share that folder. So each session keeps, in a `gr.State` (server-side, one per
session, never sent by the client), the paths it has sent in a message or been given by an
import or a tool; a history that names any other file is refused before the file is read,
echoed, exported or shown to the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from gradio import processing_utils
from gradio.utils import get_upload_folder

from gemma_demo.errors import InvalidInputError
from gemma_demo.tasks.conversation import ChatMessage, parts_of

SessionFiles = frozenset[str]  # resolved paths in Gradio's upload folder
NO_FILES: SessionFiles = frozenset()


def _resolved(path: str | Path) -> str:
    return os.path.realpath(path)


def file_paths(history: Iterable[ChatMessage]) -> list[str]:
    """Every file the history names, in order (any role: exports read them all)."""
    return [p["file"]["path"] for m in history for p in parts_of(m.get("content")) if p["type"] == "file"]


def require_own(history: Iterable[ChatMessage], owned: SessionFiles | None) -> None:
    """Refuse a history naming a file this session was never given."""
    for path in file_paths(history):
        if _resolved(path) not in (owned or NO_FILES):
            raise InvalidInputError(
                f"{Path(path).name} is not a file of this conversation. Attach it again in a new message, "
                "or load the conversation with Import."
            )


def with_uploads(owned: SessionFiles | None, paths: Iterable[str | Path]) -> SessionFiles:
    """`owned` plus files just uploaded; Gradio has already checked they are in its upload folder."""
    folder = _resolved(get_upload_folder())
    added = {_resolved(path) for path in paths}
    outside = [path for path in added if os.path.commonpath([folder, path]) != folder]
    if outside:
        raise InvalidInputError(f"{Path(outside[0]).name} was not uploaded to this app; attach the file again.")
    return (owned or NO_FILES) | added


def into_cache(path: str | Path) -> str:
    """A file the app made for this session (an import, a tool's picture), copied into Gradio's
    cache under the path Gradio itself would give it, so the session can name it later."""
    return _resolved(processing_utils.save_file_to_cache(path, cache_dir=get_upload_folder()))
