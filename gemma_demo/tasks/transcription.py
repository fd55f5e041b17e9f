"""Speech to text (ASR) and speech to translated text (AST) for recordings of any length.

The model hears at most 30 s per request, so a recording is cut at quiet points into
chunks that are transcribed one after another, each decoded only when its turn comes
(memory does not grow with the recording); each chunk becomes one subtitle cue,
and every streamed result carries everything known so far so the UI can show
progress on long recordings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from gemma_demo.engine.base import Backend, Stats, Update
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import InvalidInputError
from gemma_demo.media.audio import audio_blocks, is_silent, require_speech
from gemma_demo.media.chunks import AudioChunk, CutPlan, cut_pieces, plan_cuts
from gemma_demo.media.filenames import safe_stem
from gemma_demo.media.subtitles import Cue, to_srt, to_txt, to_vtt
from gemma_demo.media.timing import SAMPLE_RATE
from gemma_demo.tasks.messages import AudioInput, audio_messages, require_audio

# 30 s of fast speech is ~100 words; a translation doubles that.
DEFAULT_SETTINGS = GenerationSettings(sampling=False, max_new_tokens=512)
DEFAULT_LANGUAGE = "English"
DEFAULT_STEM = "transcript"
SILENT_CHUNK_STATUS = "silent, not sent to the model"
SUBTITLE_FORMATS = ("srt", "vtt", "txt")

ASR_PROMPT = (
    "Transcribe the following speech segment in {language} into {language} text.\n\n"
    "Follow these specific instructions for formatting the answer:\n"
    "* Only output the transcription, with no newlines.\n"
    "* When transcribing numbers, write the digits, i.e. write 1.7 and not one point seven, "
    "and write 3 instead of three."
)
AST_PROMPT = (
    "Transcribe the following speech segment in {source}, then translate it into {target}.\n"
    "When formatting the answer, first output the transcription in {source}, then one newline, "
    "then output the string '{target}: ', then the translation in {target}."
)


@dataclass(frozen=True)
class ChunkText:
    """What the model said about one chunk; `translation` is None when only transcribing."""

    transcript: str
    translation: str | None = None

    @property
    def subtitle(self) -> str:
        return self.transcript if self.translation is None else self.translation


@dataclass(frozen=True)
class TranscriptResult:
    """Everything known so far; `chunk_index` counts from 0 like `AudioChunk.index`.

    `cues` hold finished chunks only, while `transcript` and `translation` also include
    the chunk being written, so the text grows token by token. `stats` add up all chunks
    so far; `update` is the current chunk's own.
    """

    transcript: str
    translation: str | None
    cues: tuple[Cue, ...]
    chunk_index: int
    chunk_count: int
    progress: str
    update: Update
    stats: Stats
    done: bool

    @property
    def text(self) -> str:
        """The text the person asked for: the translation when translating."""
        return self.transcript if self.translation is None else self.translation

    def srt(self) -> str:
        return to_srt(self.cues)

    def vtt(self) -> str:
        return to_vtt(self.cues)

    def txt(self) -> str:
        return to_txt(self.cues)

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "transcript": self.transcript,
            "translation": self.translation,
            "cues": [asdict(cue) for cue in self.cues],
            "chunk_index": self.chunk_index,
            "chunk_count": self.chunk_count,
            "progress": self.progress,
            "stats": self.stats.to_json(),
            "done": self.done,
        }


def transcribe(
    backend: Backend,
    audio: AudioInput,
    language: str = DEFAULT_LANGUAGE,
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> Iterator[TranscriptResult]:
    """Stream a transcript of `audio`, spoken in `language`, chunk after chunk."""
    require_audio(backend)
    spoken = _language(language, "Choose the language spoken in the recording.")
    prompt = ASR_PROMPT.format(language=spoken)
    yield from _stream_chunks(backend, audio, prompt, lambda answer, _: ChunkText(_one_line(answer)), settings)


def translate(
    backend: Backend,
    audio: AudioInput,
    source_language: str,
    target_language: str,
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> Iterator[TranscriptResult]:
    """Stream a transcript and its translation; the cues carry the translation."""
    require_audio(backend)
    source = _language(source_language, "Choose the language spoken in the recording.")
    target = _language(target_language, "Choose the language to translate into.")
    if source.casefold() == target.casefold():
        raise InvalidInputError(
            f"The recording is already in {source}: pick another target language, or use transcription."
        )
    prompt = AST_PROMPT.format(source=source, target=target)
    yield from _stream_chunks(
        backend, audio, prompt, lambda answer, done: split_translation(answer, target, done), settings
    )


def split_translation(answer: str, target_language: str, finished: bool = True) -> ChunkText:
    """Cut an answer at its last "{target}: " marker into transcript and translation.

    A finished answer without the marker is taken to be all translation: the person
    asked for a translation, and subtitles in the wrong language are easier to spot
    than no subtitles. While streaming, text before the marker is the transcript,
    since the model writes that first.
    """
    markers = list(_marker(target_language).finditer(answer))
    if markers:
        last = markers[-1]
        return ChunkText(_one_line(answer[: last.start()]), _one_line(answer[last.end() :]))
    if finished:
        return ChunkText("", _one_line(answer))
    return ChunkText(_one_line(answer), "")


def write_subtitles(result: TranscriptResult, directory: str | Path, stem: str) -> dict[str, Path]:
    """Save .srt, .vtt and .txt side by side under a name that is safe on any file system."""
    if not any(cue.text.strip() for cue in result.cues):
        raise InvalidInputError("There is no transcript to save yet: transcribe a recording first.")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    contents = {"srt": result.srt(), "vtt": result.vtt(), "txt": result.txt()}
    paths = {kind: folder / f"{safe_stem(stem, DEFAULT_STEM)}.{kind}" for kind in SUBTITLE_FORMATS}
    for kind, path in paths.items():
        path.write_text(contents[kind], encoding="utf-8")
    return paths


def _stream_chunks(
    backend: Backend,
    audio: AudioInput,
    prompt: str,
    read: Callable[[str, bool], ChunkText],
    settings: GenerationSettings,
) -> Iterator[TranscriptResult]:
    plan, chunks = read_in_pieces(audio)
    finished: list[ChunkText] = []
    cues: list[Cue] = []
    spent = Stats()
    for chunk in chunks:
        for update in _chunk_updates(backend, chunk, prompt, settings):
            piece = read(update.answer, update.done)
            stats = spent.followed_by(update.stats)
            if update.done:
                finished.append(piece)
                cues.append(Cue(chunk.start, chunk.end, piece.subtitle))
                spent = stats
            pieces = finished if update.done else [*finished, piece]
            last = update.done and chunk.index == plan.count - 1
            yield _result(pieces, cues, chunk.index, plan.count, update, stats, last)


def read_in_pieces(audio: AudioInput) -> tuple[CutPlan, Iterator[AudioChunk]]:
    """The recording's pieces, decoded one at a time as they are asked for, never the whole.

    Two passes over the file: the first keeps only frame levels to plan the quiet cuts
    (and refuses empty or silent audio before the model is asked anything), the second
    decodes again and hands on each piece of at most 30 s, so memory stays that of one
    piece at any length (and about 1 MB of levels per hour).
    """
    source = (SAMPLE_RATE, audio) if isinstance(audio, np.ndarray) else audio
    plan = plan_cuts(audio_blocks(source))
    require_speech(plan.length, plan.loudest_db)
    return plan, cut_pieces(audio_blocks(source), plan)


def _chunk_updates(
    backend: Backend, chunk: AudioChunk, prompt: str, settings: GenerationSettings
) -> Iterator[Update]:
    """A silent chunk is not sent: asked to transcribe silence, the model tends to invent words."""
    if is_silent(chunk.samples):
        return iter([Update(done=True, status=SILENT_CHUNK_STATUS)])
    return backend.stream(audio_messages(chunk.samples, prompt), settings)


def _result(
    pieces: list[ChunkText],
    cues: list[Cue],
    index: int,
    count: int,
    update: Update,
    stats: Stats,
    done: bool,
) -> TranscriptResult:
    translating = pieces[0].translation is not None
    progress = f"Chunk {index + 1} of {count}"
    # The piece being worked on, as `Update.status`: the page's status line and the CLI's stderr show it.
    status = f"{progress} ({update.status})" if update.status else progress
    return TranscriptResult(
        transcript=_joined(piece.transcript for piece in pieces),
        translation=_joined(piece.translation or "" for piece in pieces) if translating else None,
        cues=tuple(cues),
        chunk_index=index,
        chunk_count=count,
        progress=progress,
        update=replace(update, status=status),
        stats=stats,
        done=done,
    )


def _marker(target_language: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(target_language)}\s*:[ \t]*", re.IGNORECASE)


def _language(name: str, missing: str) -> str:
    if not name.strip():
        raise InvalidInputError(missing)
    return name.strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _joined(texts: Iterable[str]) -> str:
    return " ".join(text for text in texts if text)
