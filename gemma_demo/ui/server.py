"""Serving the page: launch options from the config, a loud warning for open share links,
and ZeroGPU on Hugging Face Spaces when its `spaces` package is installed."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from gemma_demo.config import AppConfig
from gemma_demo.ui.login_page import HideApiInfoFromLoginPage
from gemma_demo.engine.cache import ModelCache
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


def gpu(fn: Callable) -> Callable:
    """`spaces.GPU(fn)` where the `spaces` package exists (ZeroGPU Spaces), else `fn` itself."""
    if importlib.util.find_spec("spaces") is None:
        return fn
    import spaces

    return spaces.GPU(fn)


def launch(config: AppConfig, cache: ModelCache | None = None, **kwargs: Any) -> gr.Blocks:
    """Build and serve the app; `kwargs` go to `Blocks.launch` and win over the config.

    Only the example folder is served from disk besides Gradio's own upload cache.
    """
    if config.share_without_auth:
        print(SHARE_WARNING, file=sys.stderr, flush=True)
    if config.mcp and config.auth is not None:
        print(MCP_WITH_AUTH_WARNING, file=sys.stderr, flush=True)
    demo = build_demo(config, cache or ModelCache(), gpu=gpu)
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
