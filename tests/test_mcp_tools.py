"""MCP servers as tool sources: a second instance of this app, started with `--mcp`, is listed and
its caption tool called through the agent loop; a server that is down is named at start and
gives the model an error result."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from agent_helpers import QueuedBackend
from app_helpers import LOCALHOST, free_port, wait_until
from gradio_client import Client, handle_file
from mcp import types
from PIL import Image

from gemma_demo.config import AppConfig
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.engine.tool_syntax import write_call
from gemma_demo.tasks.agent import StepKind, run_agent
from gemma_demo.tasks.tools.base import ToolContext
from gemma_demo.tasks.tools.catalog import BUILTIN_TOOLS, toolbox
from gemma_demo.tasks.tools.mcp import McpServer, connect_servers, mcp_tool
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
    backend = QueuedBackend().enqueue(write_call("caption_image", {"image": "http://example.invalid/a.png"}),
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
