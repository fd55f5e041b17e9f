"""What a conversation may hand an operator's MCP tool: the trust model for its arguments.

An MCP tool acts with the operator's network, not the visitor's, so a URL among its arguments
would let any visitor make it fetch any address (a public page, an internal service, a file).
By default no argument may name a place to fetch from: a string with a fetching scheme
(`https://…`, `file:/…`, `s3://…`, `//host/…`) anywhere in the arguments, or any value of a
property the tool declares as a URL (JSON Schema `format` `uri`/`url`/`iri`, or Gradio's
"… url to a file"), is refused before the call with a message the model reads. In such a URL
property the model names one of this conversation's uploads as the built-in tools do, by
number or file name, and the server gets its bytes inline as a `data:` URL: a place it could
fetch from never leaves the app. `data:` URLs the model writes carry their content and pass;
other text and numbers pass unchanged (a tool that builds a URL out of plain words is the
operator's to trust). The operator's `--mcp-allow-urls` lets URLs through.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from pathlib import Path
from typing import Any

from gemma_demo.tasks.tools.base import ToolError, find_upload, upload_listing

# Schemes read as a place to fetch from even without `//` (`file:/etc/passwd`, `http:host`).
FETCHING_SCHEMES = frozenset({"http", "https", "ftp", "ftps", "sftp", "file", "ws", "wss", "gopher", "smb", "tftp"})
# An upload goes inline in the call's JSON; larger ones would make one call of hundreds of MB.
MAX_INLINE_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_ARGUMENT_DEPTH = 32
ALLOW_URLS_FLAG = "--mcp-allow-urls"
UPLOAD_HINT = "For an argument that takes a URL, name an attached file by its number or file name."
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)", re.DOTALL)
_URL_FORMAT = re.compile(r"\b(uri|url|iri)\b", re.IGNORECASE)


def is_url(text: str) -> bool:
    """Whether `text` names a place to fetch from; a `data:` URL carries its content and does not."""
    text = text.strip()
    if text.startswith("//"):
        return True
    match = _SCHEME.fullmatch(text)
    if match is None:
        return False
    return match[2].startswith("//") or match[1].lower() in FETCHING_SCHEMES


def is_url_property(schema: Any) -> bool:
    """Whether a property's schema (or one of its `anyOf`/`oneOf` branches) declares a URL."""
    if not isinstance(schema, dict):
        return False
    alternatives = [branch for key in ("anyOf", "oneOf", "allOf") for branch in _listed(schema.get(key))]
    return any(isinstance(branch, dict) and isinstance(branch.get("format"), str)
               and _URL_FORMAT.search(branch["format"]) is not None for branch in [schema, *alternatives])


def has_url_property(parameters: dict[str, Any]) -> bool:
    properties = parameters.get("properties")
    return isinstance(properties, dict) and any(map(is_url_property, properties.values()))


def _listed(value: Any) -> list[Any]:
    """A server's schema is its own: anything but a list where one belongs counts as none."""
    return value if isinstance(value, list) else []


def checked_arguments(
    arguments: dict[str, Any], parameters: dict[str, Any], uploads: tuple[Path, ...], allow_urls: bool = False
) -> dict[str, Any]:
    """The arguments as they may reach the server: uploads named in URL properties inlined, and
    (unless `allow_urls`) a `ToolError` for any other URL."""
    return _checked(arguments, parameters, "", uploads, allow_urls, 0)


def _checked(value: Any, schema: Any, where: str, uploads: tuple[Path, ...], allow_urls: bool, depth: int) -> Any:
    if depth > MAX_ARGUMENT_DEPTH:
        raise ToolError(f"The arguments are nested more than {MAX_ARGUMENT_DEPTH} levels deep.")
    schema = schema if isinstance(schema, dict) else {}
    if isinstance(value, dict):
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        return {key: _checked(item, properties.get(key), f"{where}.{key}" if where else str(key), uploads,
                              allow_urls, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_checked(item, schema.get("items"), f"{where}[{index}]", uploads, allow_urls, depth + 1)
                for index, item in enumerate(value)]
    url_property = is_url_property(schema)
    if url_property and isinstance(value, (str, int)) and not isinstance(value, bool):
        upload = find_upload(uploads, value)
        if upload is not None:
            return inline(upload)
    if isinstance(value, str) and not allow_urls and not _is_data_url(value) and (url_property or is_url(value)):
        raise ToolError(_refusal(where, uploads))
    return value


def inline(path: Path) -> str:
    """The upload as a `data:` URL, its type read from its name."""
    size = path.stat().st_size
    if size > MAX_INLINE_UPLOAD_BYTES:
        raise ToolError(f"{path.name} is {size / 2**20:.0f} MiB; an MCP tool takes uploads of up to "
                        f"{MAX_INLINE_UPLOAD_BYTES / 2**20:.0f} MiB.")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _is_data_url(text: str) -> bool:
    return text.strip()[:5].lower() == "data:"


def _refusal(where: str, uploads: tuple[Path, ...]) -> str:
    attached = f"attached: {upload_listing(uploads)}" if uploads else "this conversation has no uploads"
    return (f"The argument {where} is refused: an MCP tool here takes no URLs, only this "
            f"conversation's uploads, named by number or file name ({attached}). The operator can allow URLs "
            f"with {ALLOW_URLS_FLAG}.")
