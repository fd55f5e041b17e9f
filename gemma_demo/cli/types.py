"""What a CLI subcommand is: the files it takes, its flags, its default settings and how it runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gemma_demo.engine.settings import GenerationSettings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac", ".opus", ".webm"}
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"}

Runner = Callable[[object, Path, argparse.Namespace, GenerationSettings], Iterator]


@dataclass(frozen=True)
class Command:
    help: str
    suffixes: set[str]
    default_settings: Callable[[], GenerationSettings]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Runner
