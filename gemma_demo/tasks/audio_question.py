"""Free questions about one sound clip, the way the model hears it: at most 30 s at a time.

This is the plainest audio task, so it also owns what every audio task shares: the
capability check, turning any upload into 16 kHz samples, and the message shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


from gemma_demo.engine.base import Backend
from gemma_demo.errors import InvalidInputError
from gemma_demo.media.audio import is_silent
from gemma_demo.media.timing import MAX_CLIP_SECONDS, SAMPLE_RATE
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.tasks.messages import AudioInput, audio_messages, read_audio, require_audio
from gemma_demo.tasks.result import StreamedResult

DEFAULT_SETTINGS = GenerationSettings(sampling=True)  # the model card's temperature, top_p and top_k
# Decoding a hair past the limit is how a clip that is exactly 30 s long is told from a longer one.
OVERRUN_PROBE_SECONDS = 0.1

@dataclass(frozen=True)
class AudioAnswerResult(StreamedResult):
    clip_seconds: float
    note: str = ""

    def to_json(self) -> dict:
        return {
            "answer": self.text,
            "reasoning": self.update.reasoning,
            "clip_seconds": self.clip_seconds,
            "note": self.note,
            "stats": self.update.stats.to_json(),
            "done": self.done,
        }


def ask_audio(
    backend: Backend,
    audio: AudioInput,
    question: str,
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> Iterator[AudioAnswerResult]:
    """Stream an answer about the first 30 s of `audio`; a longer clip is cut and the result says so.

    Cutting rather than chunking keeps one question with one answer; long recordings
    belong to transcription, which walks through every chunk.
    """
    require_audio(backend)
    if not question.strip():
        raise InvalidInputError("Type a question or an instruction about the sound clip.")
    samples = read_audio(audio, max_seconds=MAX_CLIP_SECONDS + OVERRUN_PROBE_SECONDS)
    limit = round(MAX_CLIP_SECONDS * SAMPLE_RATE)
    note = _cut_note() if len(samples) > limit else ""
    samples = samples[:limit]
    if is_silent(samples):
        raise InvalidInputError(
            "The audio is silent — there is nothing to listen to. Check that the microphone is on "
            "and the volume is up."
        )
    clip_seconds = len(samples) / SAMPLE_RATE
    for update in backend.stream(audio_messages(samples, question.strip()), settings):
        yield AudioAnswerResult(update=update, clip_seconds=clip_seconds, note=note)


def _cut_note() -> str:
    return (
        f"The clip is longer than {MAX_CLIP_SECONDS:g} s, the most the model hears at once: "
        f"only the first {MAX_CLIP_SECONDS:g} s were used. Use transcription for the whole recording."
    )
