"""MCP servers as tool sources: a second instance of this app, started with `--mcp`, is listed and
its caption tool called through the agent loop; a server that is down is named at start and
gives the model an error result. A recording MCP server shows what reaches a server: no URL
argument unless the operator allows them, and an upload named by the model, inline."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import pytest
import uvicorn
from agent_helpers import QueuedBackend
from app_helpers import LOCALHOST, free_port, wait_until
from gradio_client import Client, handle_file
from mcp import types
from mcp.server.fastmcp import FastMCP
from PIL import Image
from pydantic import Field

from gemma_demo.config import AppConfig
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import write_call
from gemma_demo.tasks.agent import StepKind, run_agent
from gemma_demo.tasks.tools.base import ToolContext
from gemma_demo.tasks.tools.catalog import BUILTIN_TOOLS, toolbox
from gemma_demo.tasks.tools.mcp import McpServer, connect_servers, mcp_tool
from gemma_demo.tasks.tools.mcp_arguments import UPLOAD_HINT
from gemma_demo.ui.server import report_mcp_servers

ROOT = Path(__file__).resolve().parents[1]
# Starting a second app (imports, the tiny model) on a busy 2-core machine; generous on purpose.
SERVER_START_CEILING_S = 300.0
SERVER_EXIT_WAIT_S = 30.0
USER = [{"role": "user", "content": [{"type": "text", "text": "Describe the picture."}]}]


class AppProcess:
    """`python app.py --model tiny --mcp` on a free port, stopped at the end (terminate, then kill)."""

    def __init__(self, tiny_root: Path, log: Path):
        self.port, self.log = free_port(), log
        self.url = f"http://{LOCALHOST}:{self.port}"
        env = {**os.environ, "GEMMA_DEMO_TINY_ROOT": str(tiny_root), "CUDA_VISIBLE_DEVICES": ""}
        command = [sys.executable, "app.py", "--model", "tiny", "--mcp", "--port", str(self.port)]
        with log.open("w") as out:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def page_is_up(self) -> bool:
        assert self.process.poll() is None, f"the MCP server app exited:\n{self.log.read_text()[-3000:]}"
        try:
            return httpx.get(self.url, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(SERVER_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(SERVER_EXIT_WAIT_S)


@pytest.fixture(scope="module")
def other_app(tiny_root, tmp_path_factory) -> Iterator[AppProcess]:
    app = AppProcess(tiny_root, tmp_path_factory.mktemp("mcp-server") / "app.log")
    try:
        assert wait_until(app.page_is_up, SERVER_START_CEILING_S), app.log.read_text()[-3000:]
        yield app
    finally:
        app.stop()


@pytest.fixture()
def red_picture(tmp_path) -> Path:
    path = tmp_path / "red.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path)
    return path


def dead_url() -> str:
    return f"http://{LOCALHOST}:{free_port()}/gradio_api/mcp/"


def test_the_other_apps_caption_tool_is_called_through_the_loop(other_app, red_picture):
    served = connect_servers([f"{other_app.url}/gradio_api/mcp/"], taken=BUILTIN_TOOLS)
    assert served.problems == ()
    caption = next(tool for tool in served.tools if tool.name == "caption_image")
    assert "image" in caption.schema["function"]["parameters"]["properties"]
    # Its detect_objects would shadow the built-in: it is offered under the server's name instead.
    assert "gemma_4_studio_detect_objects" in {tool.name for tool in served.tools}

    picture = "data:image/png;base64," + base64.b64encode(red_picture.read_bytes()).decode()
    arguments = {"image": picture, "max_new_tokens": 6, "sampling": "off"}
    backend = QueuedBackend().enqueue(write_call("caption_image", arguments), "It is a red picture.")
    tools = toolbox(["calculate", "caption_image"], extra=served.tools)
    steps = list(run_agent(backend, USER, tools, GenerationSettings(), ToolContext()))

    (step,) = [s for s in steps if s.kind is StepKind.TOOL]
    direct = Client(other_app.url, verbose=False).predict(
        handle_file(str(red_picture)), max_new_tokens=6, sampling="off", api_name="/caption")
    assert direct[0] and direct[0] in step.result.response["result"]
    assert backend.requests[1][0][-1]["tool_responses"] == [{"name": "caption_image", "response": step.result.response}]
    assert "caption_image" in {t["function"]["name"] for t in backend.requests[0][1].tools}
    assert steps[-1].kind is StepKind.ANSWER and steps[-1].update.answer == "It is a red picture."


def test_the_other_apps_caption_tool_reads_an_upload_the_model_names(other_app, red_picture):
    served = connect_servers([f"{other_app.url}/gradio_api/mcp/"], taken=BUILTIN_TOOLS)
    caption = next(tool for tool in served.tools if tool.name == "caption_image")
    assert UPLOAD_HINT in caption.schema["function"]["description"]
    arguments = {"image": "red.png", "max_new_tokens": 6, "sampling": "off"}  # the upload, by its file name
    backend = QueuedBackend().enqueue(write_call("caption_image", arguments), "It is a red picture.")
    tools = toolbox(["caption_image"], extra=served.tools)
    steps = list(run_agent(backend, USER, tools, GenerationSettings(), ToolContext(attachments=(red_picture,))))
    (step,) = [s for s in steps if s.kind is StepKind.TOOL]
    direct = Client(other_app.url, verbose=False).predict(
        handle_file(str(red_picture)), max_new_tokens=6, sampling="off", api_name="/caption")
    assert not step.result.failed, step.result.response
    assert direct[0] and direct[0] in step.result.response["result"]


def test_the_sse_endpoint_lists_the_same_tools(other_app):
    over_http = connect_servers([f"{other_app.url}/gradio_api/mcp/"])
    over_sse = connect_servers([f"{other_app.url}/gradio_api/mcp/sse"])
    assert over_sse.problems == () and McpServer(f"{other_app.url}/gradio_api/mcp/sse").uses_sse
    assert [tool.name for tool in over_sse.tools] == [tool.name for tool in over_http.tools]


def test_a_server_that_went_down_gives_the_model_an_error_result(other_app):
    listed = next(tool for tool in connect_servers([f"{other_app.url}/gradio_api/mcp/"]).tools
                  if tool.name == "caption_image")
    # The tool as it was listed while its server was up, its server gone when the model calls it.
    entry = types.Tool(name=listed.name, inputSchema=listed.schema["function"]["parameters"])
    gone = mcp_tool(McpServer(dead_url()), entry, listed.name)
    picture = "data:image/png;base64," + base64.b64encode(b"not reached").decode()
    backend = QueuedBackend().enqueue(write_call("caption_image", {"image": picture}),
                                      "The captioner is not available.")
    tools = toolbox(["caption_image"], extra=[gone])
    steps = list(run_agent(backend, USER, tools, GenerationSettings(), ToolContext()))
    (step,) = [s for s in steps if s.kind is StepKind.TOOL]
    assert "MCP server http://" in step.result.response["error"] and "cannot connect" in step.result.response["error"]
    assert steps[-1].update.answer == "The captioner is not available."


def test_a_server_that_is_down_at_start_is_named_and_the_rest_still_come(capsys):
    url = dead_url()
    served = report_mcp_servers(AppConfig(mcp_servers=(url,)))
    assert served.tools == ()
    assert f"MCP server {url} is left out: cannot connect" in capsys.readouterr().err


def test_mcp_servers_come_from_flags_or_the_variable():
    from gemma_demo.config import parse_app_args

    env = {"GEMMA_DEMO_MCP_SERVERS": "http://a/gradio_api/mcp/, http://b/sse"}
    assert parse_app_args([], env).mcp_servers == ("http://a/gradio_api/mcp/", "http://b/sse")
    flags = ["--mcp-server", "http://c/mcp", "--mcp-server", "http://d/mcp"]
    assert parse_app_args(flags, env).mcp_servers == ("http://c/mcp", "http://d/mcp")
    assert parse_app_args([], {}).mcp_servers == ()


@dataclass
class RecordingServer:
    """An MCP server on a free port that answers every call and records its arguments."""

    url: str
    calls: list[dict] = field(default_factory=list)


@pytest.fixture(scope="module")
def recorder() -> Iterator[RecordingServer]:
    port = free_port()
    recording = RecordingServer(f"http://{LOCALHOST}:{port}/mcp")
    server = FastMCP("recorder", stateless_http=True, log_level="WARNING")

    @server.tool()
    def fetch(url: str) -> str:
        """Fetch a web page (an untyped string: only its value shows it is a URL)."""
        recording.calls.append({"url": url})
        return "fetched"

    @server.tool()
    def look(picture: Annotated[str, Field(json_schema_extra={"format": "uri"})]) -> str:
        """Look at a picture (a property declared as a URL)."""
        recording.calls.append({"picture": picture})
        return "looked"

    @server.tool()
    def gather(sources: list[dict[str, str]]) -> str:
        """Read several sources (URLs nested in a list of objects)."""
        recording.calls.append({"sources": sources})
        return "gathered"

    web = uvicorn.Server(uvicorn.Config(server.streamable_http_app(), host=LOCALHOST, port=port, log_level="warning"))
    thread = threading.Thread(target=web.run, name="recording-mcp-server", daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: web.started, SERVER_START_CEILING_S)
        yield recording
    finally:
        web.should_exit = True
        thread.join(SERVER_EXIT_WAIT_S)


def call_recorder(recorder: RecordingServer, tool: str, arguments: dict, allow_urls: bool = False,
                  uploads: tuple[Path, ...] = ()) -> dict:
    """The model calls `tool` once, through the tools the app's start-up lists; the result it reads."""
    recorder.calls.clear()
    tools = report_mcp_servers(AppConfig(mcp_servers=(recorder.url,), mcp_allow_urls=allow_urls)).tools
    backend = QueuedBackend().enqueue(write_call(tool, arguments), "Done.")
    steps = list(run_agent(backend, USER, toolbox([tool], extra=tools), GenerationSettings(),
                           ToolContext(attachments=uploads)))
    (step,) = [s for s in steps if s.kind is StepKind.TOOL]
    assert backend.requests[1][0][-1]["tool_responses"][0]["response"] == step.result.response  # the model reads it
    return step.result.response


REFUSED = [
    ("fetch", {"url": "https://example.com/private"}, "url"),
    ("fetch", {"url": "file:///etc/passwd"}, "url"),
    ("fetch", {"url": " HTTP://169.254.169.254/latest/meta-data/"}, "url"),
    ("look", {"picture": "https://example.com/cat.jpg"}, "picture"),
    ("look", {"picture": "cat.jpg"}, "picture"),  # a URL property that names no upload
    ("gather", {"sources": [{"name": "a", "link": "s3://bucket/key"}]}, "sources[0].link"),
]


@pytest.mark.parametrize(("tool", "arguments", "where"), REFUSED)
def test_a_url_argument_is_refused_before_it_reaches_the_server(recorder, red_picture, tool, arguments, where):
    response = call_recorder(recorder, tool, arguments, uploads=(red_picture,))
    assert f"The argument {where} is refused" in response["error"]
    assert "0: red.png" in response["error"] and "--mcp-allow-urls" in response["error"]
    assert recorder.calls == []


@pytest.mark.parametrize(("tool", "arguments", "where"), REFUSED)
def test_the_operators_switch_lets_url_arguments_through(recorder, tool, arguments, where):
    response = call_recorder(recorder, tool, arguments, allow_urls=True)
    assert "error" not in response and recorder.calls == [arguments]


@pytest.mark.parametrize("name", ["red.png", "0", 0])
def test_an_upload_named_in_a_url_property_reaches_the_server_inline(recorder, red_picture, name):
    response = call_recorder(recorder, "look", {"picture": name}, uploads=(red_picture,))
    assert response["result"] == "looked"
    (call,) = recorder.calls
    kind, _, data = call["picture"].partition(";base64,")
    assert kind == "data:image/png" and base64.b64decode(data) == red_picture.read_bytes()


@pytest.mark.parametrize("text", ["Note: the meeting moved", "red.png", "data:text/plain;base64,aGk="])
def test_text_that_is_no_url_reaches_the_server_unchanged(recorder, red_picture, text):
    response = call_recorder(recorder, "fetch", {"url": text}, uploads=(red_picture,))
    assert response["result"] == "fetched" and recorder.calls == [{"url": text}]
