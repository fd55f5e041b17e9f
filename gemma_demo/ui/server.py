"""Serving the page: launch options from the config, a loud warning for open share links,
and ZeroGPU on Hugging Face Spaces (see `zerogpu`)."""

from __future__ import annotations

import sys
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from gemma_demo.config import AppConfig
from gemma_demo.ui.login_page import HideApiInfoFromLoginPage
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.memory import bound_malloc_arenas
from gemma_demo.tasks.tools.catalog import BUILTIN_TOOLS
from gemma_demo.tasks.tools.mcp import McpTools, connect_servers
from gemma_demo.ui import zerogpu
from gemma_demo.ui.layout import EXAMPLES_DIR, build_demo

SHARE_WARNING = """
######################################################################
#  WARNING: --share without --auth.                                  #
#  Anyone who gets the public link can use this app and your GPU,    #
#  and upload files to this machine. Add --auth USER:PASSWORD.       #
######################################################################
"""
# Gradio's MCP server lists every tool without a login, and its tool calls cannot log in.
MCP_WITH_AUTH_WARNING = "--mcp is off: with --auth, MCP clients cannot log in and the tool list would be public."
THEME = gr.themes.Soft()
CSS = ".gradio-container { max-width: 1400px !important; margin: auto; }"


def report_mcp_servers(config: AppConfig) -> McpTools:
    """Connect to the operator's `--mcp-server`s at start; one that is down is named on stderr,
    and the app starts anyway. The tools are for the Chat tab's agent."""
    served = connect_servers(config.mcp_servers, taken=BUILTIN_TOOLS, allow_urls=config.mcp_allow_urls)
    for problem in served.problems:
        print(f"warning: {problem}", file=sys.stderr, flush=True)
    if served.tools:
        print(f"MCP tools for the agent: {', '.join(tool.name for tool in served.tools)}", file=sys.stderr, flush=True)
    return served


def launch(config: AppConfig, cache: ModelCache | None = None, **kwargs: Any) -> gr.Blocks:
    """Build and serve the app; `kwargs` go to `Blocks.launch` and win over the config.

    Only the example folder is served from disk besides Gradio's own upload cache.
    """
    bound_malloc_arenas()  # a server's worker threads would each keep an arena of freed memory
    if config.share_without_auth:
        print(SHARE_WARNING, file=sys.stderr, flush=True)
    if config.mcp and config.auth is not None:
        print(MCP_WITH_AUTH_WARNING, file=sys.stderr, flush=True)
    mcp_tools = tuple(report_mcp_servers(config).tools)
    cache = cache or ModelCache()
    gpu = None
    if zerogpu.on_zero_gpu():
        if config.models:
            print("--models is ignored on ZeroGPU: a Space serves one model.", file=sys.stderr, flush=True)
        config = zerogpu.zero_gpu_config(config)
        import spaces  # noqa: F401 - before the model touches CUDA, as ZeroGPU requires

        cache.get(config.allowed_models[0], config.load)
        gpu = zerogpu.gpu
    demo = build_demo(config, cache, gpu=gpu, extra_tools=mcp_tools)
    options: dict[str, Any] = {
        "server_name": config.host,
        "server_port": config.port,
        "share": config.share,
        "auth": config.auth,
        "max_file_size": config.max_file_size,
        "mcp_server": config.mcp and config.auth is None,
        "allowed_paths": [str(EXAMPLES_DIR)] if EXAMPLES_DIR.is_dir() else [],
        "theme": THEME,
        "css": CSS,
        "app_kwargs": {"middleware": [Middleware(HideApiInfoFromLoginPage)]},
    }
    demo.launch(**{**options, **kwargs})
    return demo
