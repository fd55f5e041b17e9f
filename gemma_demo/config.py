"""Start-up settings of the web app, from command-line flags or environment variables.

Hugging Face Spaces cannot pass flags, so every flag has a `GEMMA_DEMO_*` variable; a
flag given on the command line wins over the variable.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from gemma_demo.engine.options import QUANTIZE_CHOICES, LoadOptions
from gemma_demo.engine.registry import DEFAULT_MODEL, canonical_name, family
from gemma_demo.tasks.budget import MediaLimits

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_FILE_SIZE = "200mb"
ENV_PREFIX = "GEMMA_DEMO_"
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt])?i?b?\s*$", re.IGNORECASE)
SIZE_UNITS = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024**2}  # in MiB


@dataclass(frozen=True)
class AppConfig:
    model: str = DEFAULT_MODEL
    load: LoadOptions = LoadOptions()
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    share: bool = False
    auth: tuple[str, str] | None = None
    max_file_size: str = DEFAULT_MAX_FILE_SIZE
    mcp: bool = False
    # Besides `model`, the checkpoints visitors may switch the shared model to (`--models`).
    models: tuple[str, ...] = ()
    # MCP servers whose tools the agent may call (`--mcp-server`); only the operator sets them.
    mcp_servers: tuple[str, ...] = ()
    # Let URL arguments reach those tools (`--mcp-allow-urls`); off: only this conversation's uploads.
    mcp_allow_urls: bool = False
    # What one chat request may expand over its whole conversation (`--chat-max-pages` and the others).
    chat_limits: MediaLimits = MediaLimits()

    @property
    def allowed_models(self) -> tuple[str, ...]:
        """The start-up model first, then the others `--models` allows, each once."""
        names = (canonical_name(self.model), *(canonical_name(name) for name in self.models))
        return tuple(dict.fromkeys(names))

    @property
    def share_without_auth(self) -> bool:
        return self.share and self.auth is None


def _env_value(env: Mapping[str, str], name: str, default=None):
    """The `GEMMA_DEMO_<name>` variable, or `default` when it is not set."""
    return env.get(ENV_PREFIX + name, default)


def _env_flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("--auth takes USER:PASSWORD")
    return user, password


def parse_models(value: str | None) -> tuple[str, ...]:
    """`--models`: a comma-separated list, or `all` for the whole known family."""
    if not value:
        return ()
    if value.strip().lower() == "all":
        return family()
    return tuple(name.strip() for name in value.split(",") if name.strip())


def add_model_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Flags shared by the app and the CLI: which model, where it runs."""
    get = functools.partial(_env_value, env)
    parser.add_argument("--model", default=get("MODEL", DEFAULT_MODEL),
                        help="E2B, E4B, 12B, 26B-A4B, 31B, a Hub id, a local folder, or tiny / tiny-moe / tiny-dense / tiny-unified")
    parser.add_argument("--backend", choices=("local", "openai"), default=get("BACKEND", "local"),
                        help="local: transformers in this process; openai: an OpenAI-compatible server")
    parser.add_argument("--base-url", default=get("BASE_URL"), help="server URL for --backend openai")
    parser.add_argument("--api-key", default=get("API_KEY"), help="API key for --backend openai")
    parser.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default=get("DEVICE", "auto"))
    parser.add_argument("--dtype", choices=("auto", "bfloat16", "float16", "float32"), default=get("DTYPE", "auto"))
    parser.add_argument("--draft", default=get("DRAFT", "auto"),
                        help="speculative decoding: auto (the model's published assistant when it loads), "
                             "off, or an assistant's folder or Hub id")
    parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=get("QUANTIZE", "off"),
                        help="text-decoder weights: off, int8 or int4 (Google's QAT checkpoint where published); "
                             "less memory and faster decoding, see README")
    parser.add_argument("--compile", action="store_true", default=_env_flag(get("COMPILE")),
                        help="on a CPU: compile the vision tower at load (about half a minute the first time, "
                             "cached after) for faster pictures; see README")
    parser.add_argument("--offload", action="store_true", default=_env_flag(get("OFFLOAD")),
                        help="spread the model over GPU, CPU and disk (device_map=auto) for small GPUs")
    parser.add_argument("--offload-folder", default=get("OFFLOAD_FOLDER"),
                        help="with --offload: where weights that fit nowhere else go (default: a temporary folder)")
    parser.add_argument("--max-memory", default=get("MAX_MEMORY"),
                        help="with --offload: the most the model may take on the device, e.g. 6GiB; "
                             "the rest goes to CPU memory, then disk")


def add_mcp_server_arguments(parser: argparse.ArgumentParser) -> None:
    """`--mcp-server URL`, repeatable; without it, the comma-separated `GEMMA_DEMO_MCP_SERVERS`."""
    parser.add_argument("--mcp-server", dest="mcp_servers", action="append", metavar="URL",
                        help="an MCP server whose tools the agent may call (streamable HTTP, or SSE for a URL "
                             "ending in /sse), e.g. http://127.0.0.1:7861/gradio_api/mcp/; repeatable")
    parser.add_argument("--mcp-allow-urls", action="store_true", default=None,
                        help="let the agent pass URLs to MCP tools, which then fetch them with this machine's "
                             "network (default: refused; only this conversation's uploads, sent inline)")


def mcp_allow_urls_from(args: argparse.Namespace, env: Mapping[str, str]) -> bool:
    """`--mcp-allow-urls`, or `GEMMA_DEMO_MCP_ALLOW_URLS` when the flag is not given."""
    return bool(args.mcp_allow_urls) or _env_flag(_env_value(env, "MCP_ALLOW_URLS"))


def parse_mib(value: str | None) -> int:
    """A size like `4GiB`, `512MiB` or `512` (MiB) in MiB; empty or 0 means derived."""
    match = SIZE.match(value or "0")
    if match is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not a size: write it like 4GiB or 512MiB")
    return round(float(match[1]) * SIZE_UNITS[(match[2] or "m").lower()])


def _count(convert: type) -> Callable[[str], float]:
    """A limit's parser: a number of at least 0 (0 means derived)."""

    def parse(value: str) -> float:
        try:
            number = convert(value)
        except ValueError:
            number = -1
        if number < 0:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number of at least 0 (0: derived)")
        return number

    return parse


CHAT_LIMIT_FLAGS = (  # MediaLimits field, parser, metavar, help
    ("pages", _count(int), "N", "PDF pages as pictures (default: 32,768 soft tokens / image budget: 117 at 280)"),
    ("megapixels", _count(float), "MP", "pictures' megapixels, decoded at full size (default: media memory / 3 bytes)"),
    ("audio_minutes", _count(float), "MINUTES",
     "minutes of audio (default: the model's context at 25 tokens a second: 87 at 128K)"),
    ("video_frames", _count(int), "N", "video frames (default: 32,768 soft tokens / frame budget: 468 at 70)"),
)


def add_chat_budget_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Limits per chat request, summed over its whole conversation (every turn sends it again).

    String defaults go through `type` like typed flags, so a bad variable is reported the same way."""
    group = parser.add_argument_group(
        "chat budget", "what one chat request may expand over its whole conversation; 0 derives each "
        "from the model's context, the vision encoder and the memory available (see docs/reliability.md)")
    for field, parse, metavar, text in CHAT_LIMIT_FLAGS:
        flag = "chat_max_" + field
        group.add_argument("--" + flag.replace("_", "-"), type=parse, default=_env_value(env, flag.upper(), "0"),
                           metavar=metavar, help=text)
    group.add_argument("--chat-media-memory", type=parse_mib, default=_env_value(env, "CHAT_MEDIA_MEMORY", "0"),
                       metavar="SIZE", help="decoded media and processor tensors per request, e.g. 4GiB "
                                            "(default: a quarter of the memory available at the time of the request)")


def chat_limits_from(args: argparse.Namespace) -> MediaLimits:
    numbers = {field: getattr(args, "chat_max_" + field) for field, *_ in CHAT_LIMIT_FLAGS}
    return MediaLimits(**numbers, memory_mib=args.chat_media_memory)


def mcp_servers_from(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, ...]:
    """The flags' servers, or the variable's when no flag is given (a flag wins, as everywhere)."""
    given = args.mcp_servers or (_env_value(env, "MCP_SERVERS") or "").split(",")
    return tuple(dict.fromkeys(url.strip() for url in given if url.strip()))


def load_options_from(args: argparse.Namespace) -> LoadOptions:
    return LoadOptions(
        backend=args.backend,
        device=args.device,
        dtype=args.dtype,
        offload=args.offload,
        offload_folder=args.offload_folder,
        max_memory=args.max_memory,
        draft=args.draft,
        quantize=args.quantize,
        compile=args.compile,
        base_url=args.base_url,
        api_key=args.api_key,
    )


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    get = functools.partial(_env_value, env)
    parser = argparse.ArgumentParser(prog="app.py", description="Gemma 4 Studio web app")
    add_model_arguments(parser, env)
    parser.add_argument("--host", default=get("HOST", DEFAULT_HOST),
                        help="interface to listen on (0.0.0.0 exposes the app to your network)")
    parser.add_argument("--port", type=int, default=int(get("PORT", DEFAULT_PORT)))
    parser.add_argument("--share", action="store_true", default=_env_flag(get("SHARE")),
                        help="public Gradio share link (use --auth with it)")
    parser.add_argument("--auth", type=parse_auth, default=parse_auth(get("AUTH")), help="USER:PASSWORD")
    parser.add_argument("--max-file-size", default=get("MAX_FILE_SIZE", DEFAULT_MAX_FILE_SIZE),
                        help="largest upload, e.g. 200mb")
    parser.add_argument("--mcp", action="store_true", default=_env_flag(get("MCP")),
                        help="also serve every task as an MCP tool")
    parser.add_argument("--models", type=parse_models, default=parse_models(get("MODELS")),
                        help="other checkpoints visitors may switch to, comma-separated, or 'all' "
                             "(default: only --model)")
    add_mcp_server_arguments(parser)
    add_chat_budget_arguments(parser, env)
    return parser


def parse_app_args(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> AppConfig:
    env = os.environ if env is None else env
    args = build_parser(env).parse_args(argv)
    return AppConfig(
        model=args.model,
        load=load_options_from(args),
        host=args.host,
        port=args.port,
        share=args.share,
        auth=args.auth,
        max_file_size=args.max_file_size,
        mcp=args.mcp,
        models=args.models,
        mcp_servers=mcp_servers_from(args, env),
        mcp_allow_urls=mcp_allow_urls_from(args, env),
        chat_limits=chat_limits_from(args),
    )
