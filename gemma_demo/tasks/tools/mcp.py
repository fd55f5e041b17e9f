"""Tools from MCP servers the operator names (`--mcp-server URL`), offered next to the built-ins.

The servers are listed once at start; a server that is down is reported then and left out,
and the app starts anyway. Each call opens its own session with the official `mcp` SDK on a
new event loop in a thread of its own, never on Gradio's loop: a server that restarted
between two calls just works, and a call that hangs dies with its loop at the timeout. A
URL ending in `/sse` speaks SSE; any other speaks streamable HTTP (a Gradio app started with
`--mcp` serves both, at `/gradio_api/mcp/` and `/gradio_api/mcp/sse`). What a call's arguments
may carry (uploads, never URLs unless the operator allows them) is `mcp_arguments`'s to check.
"""

from __future__ import annotations

import base64
import io
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx
from mcp import ClientSession, types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from gemma_demo.tasks.tools.base import DEFAULT_TOOL_TIMEOUT_S, Tool, ToolError, ToolOutput, current_context
from gemma_demo.tasks.tools.mcp_arguments import UPLOAD_HINT, checked_arguments, has_url_property

# Listing a server's tools at start; a server slower than this is reported as down.
LIST_TIMEOUT_S = 15.0
CANCEL_POLL_S = 0.1
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_]")
T = TypeVar("T")


@dataclass(frozen=True)
class McpServer:
    url: str
    timeout_s: float = DEFAULT_TOOL_TIMEOUT_S
    allow_urls: bool = False  # the operator's `--mcp-allow-urls`: URL arguments reach the server

    @property
    def uses_sse(self) -> bool:
        return self.url.split("?", 1)[0].rstrip("/").endswith("/sse")


@dataclass(frozen=True)
class McpTools:
    """What the servers offer, and one line per server that could not be listed."""

    tools: tuple[Tool, ...] = ()
    problems: tuple[str, ...] = ()


def connect_servers(
    urls: Iterable[str], taken: Iterable[str] = (), timeout_s: float = DEFAULT_TOOL_TIMEOUT_S,
    allow_urls: bool = False,
) -> McpTools:
    """List every server's tools; a name already `taken` (a built-in, another server's) gets a prefix.
    With `allow_urls` their calls may carry URL arguments (by default they are refused)."""
    names = set(taken)
    tools: list[Tool] = []
    problems: list[str] = []
    for url in dict.fromkeys(url.strip() for url in urls if url.strip()):
        server = McpServer(url, timeout_s, allow_urls)
        try:
            server_name, listed = _run_privately(_list_tools, server)
        except Exception as error:  # noqa: BLE001 - any failure means the server is left out, with its reason
            problems.append(f"MCP server {url} is left out: {describe_failure(error, LIST_TIMEOUT_S)}")
            continue
        for entry in listed:
            tool = mcp_tool(server, entry, _free_name(entry.name, server_name, names))
            names.add(tool.name)
            tools.append(tool)
    return McpTools(tuple(tools), tuple(problems))


def mcp_tool(server: McpServer, entry: types.Tool, name: str) -> Tool:
    """A `Tool` whose function calls `entry` on `server`; its schema is the server's own, told how
    to name an upload where it takes a URL."""
    parameters = entry.inputSchema or {"type": "object", "properties": {}}
    description = entry.description or entry.title or entry.name
    if has_url_property(parameters):
        description = f"{description}\n\n{UPLOAD_HINT}"

    def call(**arguments: Any) -> ToolOutput:
        context = current_context()
        arguments = checked_arguments(arguments, parameters, context.attachments, server.allow_urls)
        try:
            result = _run_privately(_call_tool, server, entry.name, arguments, context.cancel)
        except Exception as error:  # noqa: BLE001 - the model reads why the server did not answer
            raise ToolError(f"MCP server {server.url}: {describe_failure(error, server.timeout_s)}") from None
        return _as_output(result)

    schema = {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}
    return Tool(name, call, schema)


def describe_failure(error: BaseException, timeout_s: float) -> str:
    """A short reason a person can act on, from the error the SDK raised (often inside a group)."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout_s:g} s."
    if isinstance(error, httpx.ConnectError):
        return "cannot connect (is it running, and is the URL right?)."
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code} from {error.request.url} (is this an MCP endpoint?)."
    return f"{type(error).__name__}: {error}"


def _run_privately(function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run on a new event loop in a thread of its own, so no caller's loop is ever blocked or borrowed."""
    with ThreadPoolExecutor(1, thread_name_prefix="mcp") as pool:
        return pool.submit(anyio.run, function, *args).result()


@asynccontextmanager
async def _session(server: McpServer) -> AsyncIterator[tuple[ClientSession, types.Implementation]]:
    """An initialised session and the server's own description of itself."""
    if server.uses_sse:
        transport = sse_client(server.url, timeout=server.timeout_s)
    else:
        transport = streamable_http_client(server.url)
    async with transport as streams, ClientSession(streams[0], streams[1]) as session:
        yield session, (await session.initialize()).serverInfo


async def _list_tools(server: McpServer) -> tuple[str, list[types.Tool]]:
    with anyio.fail_after(LIST_TIMEOUT_S):
        async with _session(server) as (session, info):
            return info.name or "mcp", (await session.list_tools()).tools


async def _call_tool(
    server: McpServer, name: str, arguments: dict[str, Any], cancel: threading.Event
) -> types.CallToolResult:
    """Call `name`, giving up at the timeout or when the conversation's Stop flag is set."""
    result: types.CallToolResult | None = None
    with anyio.fail_after(server.timeout_s):
        async with anyio.create_task_group() as group:
            group.start_soon(_cancel_when_set, cancel, group.cancel_scope)
            async with _session(server) as (session, _):
                result = await session.call_tool(name, arguments)
            group.cancel_scope.cancel()
    if result is None:
        raise ToolError("the call was stopped.")
    return result


async def _cancel_when_set(cancel: threading.Event, scope: anyio.CancelScope) -> None:
    while not cancel.is_set():
        await anyio.sleep(CANCEL_POLL_S)
    scope.cancel()


def _as_output(result: types.CallToolResult) -> ToolOutput:
    """The server's answer as data for the model (the loop caps its size) and pictures for the chat."""
    texts = [item.text for item in result.content if isinstance(item, types.TextContent)]
    if result.isError:
        raise ToolError(" ".join(texts) or "the server reported an error without a message.")
    images = tuple(
        Image.open(io.BytesIO(base64.b64decode(item.data)))
        for item in result.content
        if isinstance(item, types.ImageContent)
    )
    data: dict[str, Any] = {"result": texts[0] if len(texts) == 1 else texts}
    if result.structuredContent:
        data["structured"] = result.structuredContent
    return ToolOutput(data, images)


def _free_name(name: str, server_name: str, taken: set[str]) -> str:
    """`name` made safe for Gemma's call syntax, prefixed with the server's name when it clashes."""
    safe = _UNSAFE_NAME.sub("_", name) or "tool"
    if safe[0].isdigit():
        safe = f"_{safe}"
    if safe not in taken:
        return safe
    base = f"{_UNSAFE_NAME.sub('_', server_name).lower()}_{safe}"
    candidate, suffix = base, 2
    while candidate in taken:
        candidate, suffix = f"{base}_{suffix}", suffix + 1
    return candidate
