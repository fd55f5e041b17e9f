"""The CLI's task table: per subcommand, its inputs, its flags and how it calls the task."""

from __future__ import annotations

import argparse

from gemma_demo.cli.documents import add_document_arguments
from gemma_demo.cli.types import AUDIO_SUFFIXES, IMAGE_SUFFIXES, VIDEO_SUFFIXES, Command
from gemma_demo.engine.settings import DEFAULT_VIDEO_FRAME_BUDGET, IMAGE_BUDGETS, GenerationSettings
from gemma_demo.tasks import caption, detection, html_page, ocr, transcription
from gemma_demo.tasks.ocr_document import PDF_SUFFIX


def _objects(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--objects", required=True, help='what to find, e.g. "cat, remote control"')


def _caption_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=[p.value for p in caption.CaptionPreset], default="short")
    parser.add_argument("--prompt", default="", help="your own prompt (with --preset custom)")


def _ocr_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=[m.value for m in ocr.OcrMode], default=ocr.OcrMode.MARKDOWN.value)
    add_document_arguments(parser)


def _html_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instruction", default="", help="what to change or add")


def _language(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--language", default="English", help="language spoken in the audio")


def _translate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="English", help="language spoken in the audio")
    parser.add_argument("--target", required=True, help="language to translate into")


def _question(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--question", required=True)


def _video_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", default="Describe what happens in this video.")
    parser.add_argument("--frames", type=int, default=32, help="number of frames to sample (with --fps: at most)")
    parser.add_argument("--fps", type=float, help="sample this many frames per second instead, up to --frames")
    parser.add_argument("--start", type=float, help="start time in seconds")
    parser.add_argument("--end", type=float, help="end time in seconds")
    parser.add_argument("--with-audio", action="store_true", help="add the clip's audio track (E2B, E4B, 12B)")
    parser.add_argument("--frame-budget", type=int, choices=IMAGE_BUDGETS, default=DEFAULT_VIDEO_FRAME_BUDGET,
                        help="soft tokens per frame")


def _video(backend, path, args, settings):
    from gemma_demo.media.video_sampling import FrameSampling
    from gemma_demo.tasks.video_question import describe_video

    sampling = FrameSampling(num_frames=args.frames, fps=args.fps, start=args.start, end=args.end)
    settings = settings.with_changes(video_frame_budget=args.frame_budget)
    return describe_video(backend, path, args.prompt, sampling, args.with_audio, settings)


def _transcribe(backend, path, args, settings):
    from gemma_demo.tasks.transcription import transcribe

    return transcribe(backend, path, args.language, settings)


def _translate(backend, path, args, settings):
    from gemma_demo.tasks.transcription import translate

    return translate(backend, path, args.source, args.target, settings)


def _ask_audio(backend, path, args, settings):
    from gemma_demo.tasks.audio_question import ask_audio

    return ask_audio(backend, path, args.question, settings)


def _plain() -> GenerationSettings:
    return GenerationSettings()


COMMANDS: dict[str, Command] = {
    "detect": Command(
        "draw boxes around objects", IMAGE_SUFFIXES, lambda: detection.DEFAULT_SETTINGS, _objects,
        lambda b, p, a, s: detection.detect(b, p, a.objects, s, detection.GroundingMode.BOXES, image_name=p.name),
    ),
    "point": Command(
        "point at objects", IMAGE_SUFFIXES, lambda: detection.DEFAULT_SETTINGS, _objects,
        lambda b, p, a, s: detection.detect(b, p, a.objects, s, detection.GroundingMode.POINTS, image_name=p.name),
    ),
    "caption": Command(
        "describe pictures", IMAGE_SUFFIXES, _plain, _caption_args,
        lambda b, p, a, s: caption.caption(b, p, caption.CaptionPreset(a.preset), a.prompt, s),
    ),
    "ocr": Command(
        "read text, Markdown or tables from pictures, or PDFs page by page", IMAGE_SUFFIXES | {PDF_SUFFIX},
        lambda: ocr.DEFAULT_SETTINGS, _ocr_args,
        lambda b, p, a, s: ocr.ocr(b, p, ocr.OcrMode(a.mode), s),
    ),
    "html": Command(
        "turn a screenshot or sketch into an HTML page", IMAGE_SUFFIXES, lambda: html_page.DEFAULT_SETTINGS,
        _html_args, lambda b, p, a, s: html_page.image_to_html(b, p, a.instruction, s),
    ),
    "transcribe": Command("speech to text, any length", AUDIO_SUFFIXES | VIDEO_SUFFIXES,
                          lambda: transcription.DEFAULT_SETTINGS, _language, _transcribe),
    "translate": Command("speech to translated text", AUDIO_SUFFIXES | VIDEO_SUFFIXES,
                         lambda: transcription.DEFAULT_SETTINGS, _translate_args, _translate),
    "ask-audio": Command("ask about a clip", AUDIO_SUFFIXES | VIDEO_SUFFIXES, _plain, _question, _ask_audio),
    "video": Command("ask about a video", VIDEO_SUFFIXES, _plain, _video_args, _video),
}
