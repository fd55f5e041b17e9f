"""The Gradio page: one tab per task over one lazily loaded model.

`build_demo` only lays out components and connects events; what an event does lives
in `handlers` (wrapped into endpoints by `endpoints`), and the settings every tab shares in `settings`. Every task event
is a named, documented API endpoint (and an MCP tool with `--mcp`); everything else is
kept off the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import gradio as gr
from gradio.components import Component
from gradio.events import Dependency

from gemma_demo.config import AppConfig
from gemma_demo.media.drawing import legend as colour_legend
from gemma_demo.media.video_sampling import DEFAULT_NUM_FRAMES
from gemma_demo.engine.cache import ModelCache
from gemma_demo.tasks import audio_question, caption, detection, html_page, ocr, transcription, video_question
from gemma_demo.tasks.tools.base import Tool
from gemma_demo.ui.chat import chat_tab
from gemma_demo.ui.components import ImageUpload
from gemma_demo.ui.document import TEXT_LAYER_CHOICES, read_pages
from gemma_demo.ui.endpoints import Endpoints, GpuWrapper
from gemma_demo.ui.handlers import (
    ask_about_audio,
    ask_about_video,
    caption_image,
    detect_objects,
    point_at_objects,
    read_document,
    sketch_to_page,
    transcribe_speech,
    translate_speech,
)
from gemma_demo.ui.settings import audio_note, build_settings_panel
from gemma_demo.ui.wiring import MODEL_CONCURRENCY, MODEL_QUEUE, Wiring

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "input"
DOCUMENT_EXAMPLE = "contract.pdf"
TITLE = "Gemma 4 Studio"
INTRO = (
    "# Gemma 4 Studio\n"
    "Find objects, caption pictures, read documents, turn sketches into web pages, transcribe "
    "and translate speech and ask about videos with Google's Gemma 4. The model loads on the "
    "first request. Every tab is also an API endpoint: see *Use via API* at the bottom."
)
# Uploads and results live in Gradio's cache: every 10 minutes the files older than an
# hour are deleted, and all of them when the server stops.
CACHE_CLEANUP = (10 * 60, 60 * 60)
LANGUAGES = (
    "English", "French", "German", "Spanish", "Italian", "Portuguese", "Japanese", "Korean", "Chinese", "Hindi",
)
INCLUDE_AUDIO_INFO = "Audio needs E2B, E4B or 12B."
AUDIO_ACTIONS = ("Transcribe", "Translate", "Ask")
MAX_VIDEO_FRAMES = 64
# Legend entries are (label, colour); mapping each colour to itself makes the legend
# match the drawing, which gives the n-th label the n-th of these colours.
LEGEND_SIZE = 64
LEGEND_COLOURS = {colour: colour for colour in colour_legend(map(str, range(LEGEND_SIZE))).values()}


def build_demo(
    config: AppConfig, cache: ModelCache, gpu: GpuWrapper | None = None, extra_tools: tuple[Tool, ...] = (),
) -> gr.Blocks:
    """The whole page; nothing is loaded until a request needs the model.

    `gpu` wraps the model-bound part of every endpoint (ZeroGPU's `spaces.GPU`); `extra_tools`
    are the operator's MCP tools for the Chat tab's agent.
    """
    endpoints = Endpoints(cache, config.load, config.allowed_models, gpu)
    with gr.Blocks(title=TITLE, delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown(INTRO)
        settings = build_settings_panel(config.allowed_models)
        wiring = Wiring(endpoints, settings)
        with gr.Tabs():
            chat_tab(wiring, EXAMPLES_DIR, (MODEL_QUEUE, MODEL_CONCURRENCY), extra_tools, config.chat_limits)
            detection_tab(wiring)
            caption_tab(wiring)
            ocr_tab(wiring)
            audio_controls = audio_tab(wiring, config.model)
            video_controls = video_tab(wiring, config.model)
            html_tab(wiring)
        settings[0].change(
            follow_audio_capability,
            inputs=settings[0],
            outputs=[*audio_controls, *video_controls],
            api_visibility="private",
            queue=False,
        )
    return demo


def follow_audio_capability(model: str) -> tuple:
    """Grey out audio controls for models without audio, from the name alone (no download)."""
    note = audio_note(model or "")
    enabled = not note
    buttons = [gr.Button(interactive=enabled) for _ in AUDIO_ACTIONS]
    include_audio = gr.Checkbox(interactive=True) if enabled else gr.Checkbox(interactive=False, value=False)
    return gr.Markdown(note, visible=not enabled), *buttons, include_audio


def run_buttons(*labels: str, interactive: bool = True) -> list[gr.Button]:
    """The tab's action buttons, then its Stop button."""
    with gr.Row():
        buttons = [gr.Button(label, variant="primary", interactive=interactive) for label in labels]
        buttons.append(gr.Button("Stop", variant="stop"))
    return buttons


def stop_on_click(stop: gr.Button, events: Sequence[Dependency]) -> None:
    """Cancelling closes the handler's generator, which stops generation in the backend."""
    stop.click(None, cancels=list(events))


def answer_extras() -> list[Component]:
    """The reasoning, folded apart from the answer, and the stats line: the last two outputs of every run."""
    with gr.Accordion("Reasoning", open=False):
        reasoning = gr.Textbox(
            label="Reasoning", show_label=False, lines=6, interactive=False,
            placeholder="Turn thinking on in the settings to see it.",
        )
    return [reasoning, gr.Markdown(label="Stats")]


def examples(rows: Sequence[Sequence], inputs: Sequence[Component]) -> None:
    """Example rows whose first item is a file in `input/`; skipped where that folder is missing."""
    if EXAMPLES_DIR.is_dir():
        gr.Examples([[str(EXAMPLES_DIR / row[0]), *row[1:]] for row in rows], inputs=list(inputs))


def detection_tab(wiring: Wiring) -> None:
    with gr.Tab("Detection"):
        with gr.Row():
            with gr.Column():
                image = ImageUpload(label="Picture", type="filepath")
                objects = gr.Textbox(label="Objects", placeholder="red circle, blue square")
                boxes, points, stop = run_buttons("Detect boxes", "Point")
                examples([("chelsea.jpg", "cat"), ("coffee.jpg", "cup, spoon, saucer"), ("astronaut.jpg", "face, flag"),
                          ("shapes.jpg", "red circle, blue square, star")],
                         [image, objects])
            with gr.Column():
                annotated = gr.Image(label="Found", format="png", interactive=False)
                legend = gr.HighlightedText(
                    label="Legend", color_map=LEGEND_COLOURS, show_legend=False, show_inline_category=False
                )
                found = gr.JSON(label="Detections (pixels)")
                answer = gr.Textbox(label="Model answer", lines=3)
                coco = gr.File(label="COCO file")
                extras = answer_extras()
        io = ([image, objects], [annotated, legend, found, answer, coco, *extras])
        stop_on_click(stop, [
            wiring.run(boxes, detect_objects, detection.DEFAULT_SETTINGS, io, "detect"),
            wiring.run(points, point_at_objects, detection.DEFAULT_SETTINGS, io, "point"),
        ])


def caption_tab(wiring: Wiring) -> None:
    with gr.Tab("Captioning"):
        with gr.Row():
            with gr.Column():
                image = ImageUpload(label="Picture", type="filepath")
                style = gr.Radio(
                    [("Short caption", "short"), ("Detailed description", "detailed"), ("My question", "custom")],
                    value="short", label="What to write",
                )
                question = gr.Textbox(label="Question or instruction (for “My question”)", lines=2)
                run, stop = run_buttons("Caption")
                examples([("rocket.jpg", "detailed", ""), ("chelsea.jpg", "short", ""),
                          ("scene.jpg", "custom", "How many windows does the house have?")],
                         [image, style, question])
            with gr.Column():
                text = gr.Textbox(label="Caption", lines=6)
                extras = answer_extras()
        io = ([image, style, question], [text, *extras])
        stop_on_click(stop, [wiring.run(run, caption_image, caption.DEFAULT_SETTINGS, io, "caption")])


def ocr_tab(wiring: Wiring) -> None:
    """One picture (Read), or a whole document page by page (Read document): a PDF or several pictures."""
    with gr.Tab("OCR"):
        with gr.Row():
            with gr.Column():
                image = ImageUpload(label="Picture of a page", type="filepath")
                document = gr.File(label="Or a whole document: a PDF, or pictures of its pages in order",
                                   file_count="multiple", file_types=[".pdf", "image"], type="filepath")
                mode = gr.Radio(
                    [("Plain text", "text"), ("Markdown", "markdown"), ("Tables", "table")],
                    value="markdown", label="Read as",
                )
                with gr.Row():
                    pages = gr.Textbox(label="Pages", placeholder="every page, or e.g. 1-3, 5", max_length=200)
                    text_layer = gr.Radio(TEXT_LAYER_CHOICES, value="off", label="A PDF page's own text", scale=2)
                run, run_document, stop = run_buttons("Read", "Read document")
                examples([("document.png", "markdown"), ("document.png", "table")], [image, mode])
                if (EXAMPLES_DIR / DOCUMENT_EXAMPLE).exists():
                    sample = [str(EXAMPLES_DIR / DOCUMENT_EXAMPLE)]
                    gr.Examples([[sample, "markdown", "", "off"], [sample, "table", "2", "beside"]],
                                inputs=[document, mode, pages, text_layer], label="Document examples")
            with gr.Column():
                with gr.Tab("Rendered"):
                    rendered = gr.Markdown(label="Rendered", sanitize_html=True, header_links=False, container=True)
                with gr.Tab("Raw text"):
                    raw = gr.Textbox(label="Raw text", show_label=False, lines=14, buttons=["copy"])
                table = gr.Dataframe(label="Table", interactive=False, wrap=True)
                downloads = gr.File(label="Document as Markdown and JSON", file_count="multiple")
                extras = answer_extras()
        io = ([image, mode], [rendered, raw, table, *extras])
        document_io = ([document, mode, pages, text_layer], [rendered, raw, table, downloads, *extras])
        stop_on_click(stop, [wiring.run(run, read_document, ocr.DEFAULT_SETTINGS, io, "ocr"),
                             wiring.run(run_document, read_pages, ocr.DEFAULT_SETTINGS, document_io, "ocr_document")])


def audio_tab(wiring: Wiring, model: str) -> list[Component]:
    """Returns the note and the three buttons, which follow the chosen model's audio support."""
    note_text = audio_note(model)
    with gr.Tab("Audio"):
        note = gr.Markdown(note_text, visible=bool(note_text))
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Recording")
                with gr.Row():
                    language = gr.Dropdown(LANGUAGES, value="English", label="Spoken language", allow_custom_value=True)
                    target = gr.Dropdown(LANGUAGES, value="French", label="Translate into", allow_custom_value=True)
                question = gr.Textbox(label="Question (for Ask)", placeholder="What is the speaker asking for?")
                transcribe, translate, ask, stop = run_buttons(*AUDIO_ACTIONS, interactive=not note_text)
                examples([("speech.wav", "English", "French", "When does the meeting start?")],
                         [audio, language, target, question])
            with gr.Column():
                text = gr.Textbox(label="Transcript, translation or answer", lines=6)
                subtitles = gr.Textbox(label="Subtitles (SRT)", lines=6)
                files = gr.File(label="Subtitle files (SRT, VTT, TXT)", file_count="multiple")
                extras = answer_extras()
        outputs = [text, subtitles, files, *extras]
        speech, asking = transcription.DEFAULT_SETTINGS, audio_question.DEFAULT_SETTINGS
        stop_on_click(stop, [
            wiring.run(transcribe, transcribe_speech, speech, ([audio, language], outputs), "transcribe"),
            wiring.run(translate, translate_speech, speech, ([audio, language, target], outputs), "translate"),
            wiring.run(ask, ask_about_audio, asking, ([audio, question], outputs), "ask_audio"),
        ])
    return [note, transcribe, translate, ask]


def video_tab(wiring: Wiring, model: str) -> list[Component]:
    """Returns the include-audio checkbox, which follows the chosen model's audio support."""
    with gr.Tab("Video"):
        with gr.Row():
            with gr.Column():
                video = gr.Video(sources=["upload"], label="Video")
                question = gr.Textbox(label="Question", value="What happens in this video?")
                with gr.Row():
                    num_frames = gr.Slider(1, MAX_VIDEO_FRAMES, DEFAULT_NUM_FRAMES, step=1, label="Frames")
                    fps = gr.Number(None, label="Or frames per second", minimum=0)
                    start = gr.Number(None, label="Start (s)", minimum=0)
                    end = gr.Number(None, label="End (s)", minimum=0, info="0 or empty: to the end")
                include_audio = gr.Checkbox(
                    False, label="Let the model hear the sound (first 30 s)", info=INCLUDE_AUDIO_INFO,
                    interactive=not audio_note(model),
                )
                run, stop = run_buttons("Ask")
                examples([("clip.mp4", "Which way does the red ball move?")], [video, question])
            with gr.Column():
                frames = gr.Gallery(label="Frames the model saw", columns=4, height="auto")
                answer = gr.Textbox(label="Answer", lines=6)
                extras = answer_extras()
        io = ([video, question, num_frames, fps, start, end, include_audio], [frames, answer, *extras])
        stop_on_click(stop, [wiring.run(run, ask_about_video, video_question.DEFAULT_SETTINGS, io, "video")])
    return [include_audio]


def html_tab(wiring: Wiring) -> None:
    with gr.Tab("Image → HTML"):
        with gr.Row():
            with gr.Column():
                image = ImageUpload(label="Screenshot or sketch", type="filepath")
                instruction = gr.Textbox(label="Extra instructions (optional)", placeholder="use a dark theme")
                run, stop = run_buttons("Generate page")
                examples([("sketch.png", ""), ("sketch.png", "Use a dark theme.")], [image, instruction])
            with gr.Column():
                preview = gr.HTML(label="Preview (sandboxed)", min_height=300)
                page = gr.File(label="Page")
        code = gr.Code(language="html", label="HTML", lines=16)
        extras = answer_extras()
        io = ([image, instruction], [code, preview, page, *extras])
        stop_on_click(stop, [wiring.run(run, sketch_to_page, html_page.DEFAULT_SETTINGS, io, "html")])
