"""The Chat tab: its handlers and its layout.

The conversation lives in the page's own `Chatbot` value (one per browser session) and
travels with every request, so the server keeps nothing of it between turns except the
local backend's key/value cache, which only this session's next turn can find again (by
its tokens and the content of its media: `engine.prefix_cache`). Retry, undo and edit are
the chatbot's own events: a small private step cuts the history and sets the message
aside, then the same model-bound step as a new message answers it.
A sent message goes the same way, through a hidden box (the API's `message`); the page's box
takes nothing more until the page has let the turn go, since Gradio's page ignores a send
while it still counts a turn as running, a stopped one included (see `chat_tab`).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from gemma_demo.engine.base import Backend
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import GemmaDemoError, InvalidInputError
from gemma_demo.media.pdf import PdfMode
from gemma_demo.tasks import chat as chat_task
from gemma_demo.tasks.agent import DEFAULT_MAX_STEPS, MAX_STEPS_LIMIT
from gemma_demo.tasks.chat import ChatResult, chat, user_message
from gemma_demo.tasks.budget import MediaLimits
from gemma_demo.tasks.chat_export import export_conversation, import_conversation
from gemma_demo.tasks.conversation import ChatMessage, ChatOptions, is_reasoning, parts_of
from gemma_demo.tasks.tools.base import Tool
from gemma_demo.ui.files import request_folder
from gemma_demo.ui.chat_agent import DEFAULT_SCHEMA, DEFAULT_TOOLS, AgentChoice, agent_choice, agent_turn, tool_names
from gemma_demo.ui.handlers import member
from gemma_demo.ui.session_files import NO_FILES, SessionFiles, file_paths, into_cache, require_own, with_uploads
from gemma_demo.ui.wiring import Wiring

PDF_MODES = (("Pages as images", PdfMode.IMAGES.value), ("Text layer", PdfMode.TEXT.value))
FILE_TYPES = ["image", "audio", "video", ".pdf"]
EXAMPLES = (
    ("report.pdf", "What does the table on page 1 say about the second quarter?"),
    ("chelsea.jpg", "What animal is this, and what is it doing?"),
    ("coffee.jpg", "Describe this picture in two sentences."),
)


def chat_turn(
    backend: Backend, settings: GenerationSettings, message: dict | None, history: list[ChatMessage] | None,
    owned: SessionFiles | None = None, pdf_mode: str = PdfMode.IMAGES.value, pdf_pages: str = "",
    agent: bool = False, tools: list[str] | None = None, max_steps: float = DEFAULT_MAX_STEPS,
    json_answer: bool = False, json_schema: str = DEFAULT_SCHEMA, *, extra_tools: tuple[Tool, ...] = (),
    limits: MediaLimits = MediaLimits(),
) -> Iterator[tuple]:
    """Send one message of a conversation and stream the updated conversation.

    Returns the whole history (Gradio messages, each answer's reasoning a message with
    metadata {"title": "Reasoning"}), the context meter and the stats line.

    Args:
        message: The new message: {"text": "...", "files": [pictures, audio, video or PDF files]}.
        history: The conversation so far, as returned by the last call (empty for a new chat).
        owned: Kept by the page (the files this conversation may name); not an API parameter.
        pdf_mode: "images" to show the model each PDF page as a picture, "text" for the PDF's own text.
        pdf_pages: Which PDF pages to use, like "1-3, 7"; empty for all.
        agent: Run the agent loop: the model may call `tools` before it answers; every step is in the history.
        tools: Names of the tools the agent may call (detect_objects, point_at, read_text, read_document, transcribe, describe_video, calculate, current_time).
        max_steps: The most model calls in the agent loop (1-20).
        json_answer: Make the final answer JSON that matches `json_schema` (constrained decoding on the local backend).
        json_schema: The JSON Schema of the answer, as text.
    """
    message, history = message or {}, list(history or [])
    require_own(history, owned)
    files = [_path(f) for f in message.get("files") or []]
    owned = with_uploads(owned, files)
    new = user_message(str(message.get("text") or ""), files)
    choice = agent_choice(agent, tools, max_steps, json_answer, json_schema)
    yield from _answer(backend, settings, history, new, owned, (pdf_mode, pdf_pages), choice, extra_tools, limits)


def resend_turn(
    backend: Backend, settings: GenerationSettings, pending: ChatMessage | None, history: list[ChatMessage] | None,
    owned: SessionFiles | None = None, pdf_mode: str = PdfMode.IMAGES.value, pdf_pages: str = "",
    agent: bool = False, tools: list[str] | None = None, max_steps: float = DEFAULT_MAX_STEPS,
    json_answer: bool = False, json_schema: str = DEFAULT_SCHEMA, *, extra_tools: tuple[Tool, ...] = (),
    limits: MediaLimits = MediaLimits(),
) -> Iterator[tuple]:
    """Answer a message set aside by retry or edit (page only)."""
    if not pending:
        raise InvalidInputError("There is no message to answer again.")
    history = list(history or [])
    require_own([*history, pending], owned)
    choice = agent_choice(agent, tools, max_steps, json_answer, json_schema)
    yield from _answer(backend, settings, history, pending, owned or NO_FILES, (pdf_mode, pdf_pages), choice, extra_tools,
                       limits)


def _answer(
    backend: Backend, settings: GenerationSettings, history: list[ChatMessage], new: ChatMessage,
    owned: SessionFiles, pdf: tuple[str, str], choice: AgentChoice | None = None, extra_tools: tuple[Tool, ...] = (),
    limits: MediaLimits = MediaLimits(),
) -> Iterator[tuple]:
    yield [*history, new], gr.skip(), "Reading the conversation…", owned
    pdf_mode, pdf_pages = pdf
    options = ChatOptions(member(PdfMode, pdf_mode), pdf_pages or "", image_budget=settings.image_budget,
                          video_frame_budget=settings.video_frame_budget, limits=limits)
    if choice is not None:
        yield from agent_turn(backend, settings, [*history, new], options, choice, owned, extra_tools)
        return
    result: ChatResult | None = None
    warning = ""
    for result in chat(backend, history, new, settings, options):
        if warning == "" and (warning := result.context.warning()):
            gr.Warning(warning)
        yield list(result.history), result.context.meter(), _status(result, warning), owned


def _status(result: ChatResult, warning: str) -> str:
    """What the model is doing before its first token (e.g. "Encoding the picture…"), then the figures."""
    return " · ".join(part for part in (result.update.status, warning, result.update.stats.summary()) if part)


def _path(file: Any) -> str:
    return file["path"] if isinstance(file, dict) else str(file)


def take_message(message: dict | None) -> tuple:
    """Hand the box's message to the turn and hold the box (page only); an empty one goes no further."""
    message = message or {}
    if not str(message.get("text") or "").strip() and not message.get("files"):
        raise gr.Error("Type a message or attach a file.")
    return gr.MultimodalTextbox(value=None, interactive=False), message


def hold_box() -> gr.MultimodalTextbox:
    """While a turn runs the box takes nothing: the page would ignore a message sent then (see chat_tab)."""
    return gr.MultimodalTextbox(interactive=False)


def free_box() -> gr.MultimodalTextbox:
    return gr.MultimodalTextbox(interactive=True)


def set_aside_for_retry(history: list[ChatMessage] | None) -> tuple[ChatMessage | None, list[ChatMessage]]:
    """The last user message, and the history before it."""
    history = list(history or [])
    last = _last_user_index(history)
    if last is None:
        return None, history
    return history[last], history[:last]


def set_aside_for_edit(history: list[ChatMessage], edit: gr.EditData) -> tuple[ChatMessage | None, list[ChatMessage]]:
    """The edited message (its files kept, its words replaced), and the history before it."""
    history = list(history or [])
    index = edit.index if isinstance(edit.index, int) else edit.index[0]
    files = [p for p in parts_of(history[index]["content"]) if p["type"] == "file"]
    text = edit.value if isinstance(edit.value, str) else ""
    return user_message(text, [p["file"]["path"] for p in files]), history[:index]


def undo_last(history: list[ChatMessage] | None) -> tuple:
    """Drop the last exchange and put its words back in the box."""
    history = list(history or [])
    last = _last_user_index(history)
    if last is None:
        return history, gr.skip()
    parts = parts_of(history[last]["content"])
    text = " ".join(p["text"] for p in parts if p["type"] == "text")
    return history[:last], {"text": text, "files": [p["file"]["path"] for p in parts if p["type"] == "file"]}


def _last_user_index(history: list[ChatMessage]) -> int | None:
    return next((i for i in range(len(history) - 1, -1, -1) if history[i]["role"] == "user" and not is_reasoning(history[i])), None)


def export_chat(history: list[ChatMessage] | None, owned: SessionFiles | None = None) -> Iterator[str]:
    """The conversation as one JSON file: OpenAI-style messages, media embedded as data URLs.

    Args:
        history: The conversation, as `/chat` returns it.
        owned: Kept by the page (the files this conversation may name); not an API parameter.
    """
    try:
        require_own(history or [], owned)
        with request_folder() as folder:
            path = folder / "conversation.json"
            path.write_text(json.dumps(export_conversation(list(history or []))), encoding="utf-8")
            yield str(path)
    except GemmaDemoError as error:
        raise gr.Error(str(error)) from error


def import_chat(file: str | None, owned: SessionFiles | None = None) -> Iterator[tuple[list[ChatMessage], SessionFiles]]:
    """A conversation from a JSON file saved by `/export_chat`.

    Args:
        file: The JSON file.
        owned: Kept by the page (the files this conversation may name); not an API parameter.
    """
    try:
        if not file:
            raise InvalidInputError("Choose a conversation file saved with Export.")
        with request_folder() as folder:
            history = import_conversation(Path(file).read_bytes(), folder)
            for part in (p for m in history if isinstance(m["content"], list) for p in m["content"] if p["type"] == "file"):
                part["file"]["path"] = into_cache(part["file"]["path"])
            yield history, (owned or NO_FILES) | set(file_paths(history))
    except GemmaDemoError as error:
        raise gr.Error(str(error)) from error


def with_extra_tools(handler: Callable[..., Iterator[tuple]], extra_tools: tuple[Tool, ...],
                     limits: MediaLimits = MediaLimits()) -> Callable[..., Iterator[tuple]]:
    """`handler` with the operator's MCP tools and media limits bound; its API parameters stay as they are."""

    def run(*values: Any) -> Iterator[tuple]:
        return handler(*values, extra_tools=extra_tools, limits=limits)

    functools.update_wrapper(run, handler)
    signature = inspect.signature(handler)
    run.__signature__ = signature.replace(
        parameters=[p for p in signature.parameters.values() if p.name not in ("extra_tools", "limits")])
    return run


def agent_controls(extra_tools: tuple[Tool, ...] = ()) -> list[gr.components.Component]:
    """The Agent switch, its tools and step limit, and the JSON answer with its schema editor."""
    with gr.Accordion("Agent and JSON answer", open=False):
        with gr.Row():
            agent = gr.Checkbox(False, label="Agent", info="The model may call tools before it answers.")
            max_steps = gr.Slider(1, MAX_STEPS_LIMIT, DEFAULT_MAX_STEPS, step=1, label="Max steps")
        tools = gr.CheckboxGroup(tool_names(extra_tools), value=list(DEFAULT_TOOLS), label="Tools")
        json_answer = gr.Checkbox(False, label="JSON answer", info="The answer is JSON that matches the schema.")
        json_schema = gr.Code(DEFAULT_SCHEMA, language="json", label="JSON Schema", interactive=True)
    return [agent, tools, max_steps, json_answer, json_schema]


def chat_tab(wiring: Wiring, examples_dir: Path, queue: tuple[str, int], extra_tools: tuple[Tool, ...] = (),
             limits: MediaLimits = MediaLimits()) -> None:
    """The tab; `queue` is the concurrency id and limit every model-bound event shares;
    `extra_tools` are the operator's MCP tools, offered beside the built-ins; `limits` the operator's per request."""
    queue_id, limit = queue
    with gr.Tab("Chat"):
        chatbot = gr.Chatbot(label="Conversation", height=520, editable="user", buttons=["copy"],
                             placeholder="Attach pictures, sound, video or PDF documents, and ask.")
        box = gr.MultimodalTextbox(
            file_count="multiple", file_types=FILE_TYPES, sources=["upload", "microphone"],
            placeholder="Message (Enter to send)", show_label=False,
        )
        # The message on its way, the API's `message`: the box is emptied as soon as it is sent.
        outgoing = gr.MultimodalTextbox(visible=False, file_count="multiple", file_types=FILE_TYPES)
        with gr.Row():
            meter = gr.Markdown("Context: 0 tokens", label="Context")  # the label names the API's output
            stop = gr.Button("Stop", variant="stop", scale=0)
        stats = gr.Markdown(label="Stats")
        with gr.Accordion("Documents, export and import", open=False):
            with gr.Row():
                pdf_mode = gr.Radio(PDF_MODES, value=PdfMode.IMAGES.value, label="PDF pages as")
                pdf_pages = gr.Textbox("", label="PDF pages", placeholder="all, or like 1-3, 7")
            with gr.Row():
                export_button = gr.Button("Export conversation")
                exported = gr.File(label="Conversation file (JSON)")
                imported = gr.File(label="Load a conversation file", file_types=[".json"], type="filepath")
        agent_inputs = agent_controls(extra_tools)
        if examples_dir.is_dir():
            gr.Examples([[{"text": text, "files": [str(examples_dir / name)]}] for name, text in EXAMPLES
                         if (examples_dir / name).exists()], inputs=[box])
    pending = gr.State(None)
    files = gr.State(NO_FILES)  # what this session may name in its history (see session_files)
    options = [files, pdf_mode, pdf_pages, *agent_inputs, *wiring.settings]
    outputs = [chatbot, meter, stats, files]
    model_bound = {"concurrency_id": queue_id, "concurrency_limit": limit}
    defaults = chat_task.DEFAULT_SETTINGS
    taken = box.submit(take_message, [box], [box, outgoing], queue=False, api_visibility="private")
    send = taken.success(wiring.endpoints.wrap(with_extra_tools(chat_turn, extra_tools, limits), defaults, "chat"),
                         [outgoing, chatbot, *options], outputs, api_name="chat", **model_bound)
    # Named for its ZeroGPU duration (`zerogpu.DURATIONS`); not an API endpoint.
    resend = wiring.endpoints.wrap(with_extra_tools(resend_turn, extra_tools, limits), defaults, "chat_resend")
    retried = chatbot.retry(set_aside_for_retry, [chatbot], [pending, chatbot], queue=False, api_visibility="private").then(
        resend, [pending, chatbot, *options], outputs, api_visibility="private", **model_bound)
    edited = chatbot.edit(set_aside_for_edit, [chatbot], [pending, chatbot], queue=False, api_visibility="private").then(
        resend, [pending, chatbot, *options], outputs, api_visibility="private", **model_bound)
    chatbot.undo(undo_last, [chatbot], [chatbot, box], queue=False, api_visibility="private")
    chatbot.clear(lambda: ("Context: 0 tokens", ""), None, [meter, stats], queue=False, api_visibility="private")
    stop.click(None, cancels=[send, retried, edited])
    # The page ignores a send while it still counts the last turn as running, which after Stop
    # lasts until its cancel request comes back; so the box is held from a send, retry or edit
    # until the page has let that turn go (ended, failed or stopped: `.then` misses failures).
    chatbot.retry(hold_box, None, [box], queue=False, api_visibility="private")
    chatbot.edit(hold_box, None, [box], queue=False, api_visibility="private")
    for run in (send, retried, edited):
        run.then(free_box, None, [box], queue=False, api_visibility="private")
        run.failure(free_box, None, [box], queue=False, api_visibility="private")
    export_button.click(export_chat, [chatbot, files], [exported], api_name="export_chat")
    imported.upload(import_chat, [imported, files], [chatbot, files], api_name="import_chat")
