"""Audio in the one shape Gemma 4 accepts: 16 kHz mono float32 in [-1, 1].

Uploads arrive as files of any common format or as Gradio microphone tuples;
everything is normalised here so the rest of the app never sees a sample rate,
a channel count or an integer sample.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np
import soundfile as sf
import soxr

from gemma_demo.errors import InvalidInputError
from gemma_demo.media.timing import SAMPLE_RATE

SILENCE_THRESHOLD_DB = -50.0
SILENCE_FRAME_SECONDS = 0.03
LOG_FLOOR = 1e-12
SEEK_PREROLL_SECONDS = 0.5
# Files are mixed and resampled this much at a time: a block stays cache-sized (1.8 MB at
# 44.1 kHz stereo) where a whole ten-minute file would be 106 MB per intermediate. 30 s blocks
# made a 30-second clip about 20 % slower than reading it whole; 5 s blocks cost nothing extra.
READ_BLOCK_SECONDS = 5
# Gemma 4's audio encoder needs a few feature frames: a shorter clip (a click, the last
# milliseconds of a long recording) fails inside the model unless padded with silence.
MIN_MODEL_SECONDS = 0.05

AudioSource = str | Path | tuple[int, np.ndarray]


def load_audio(
    source: AudioSource, max_seconds: float | None = None, start: float = 0.0
) -> np.ndarray:
    """Decode `source` and return 16 kHz mono float32 samples in [-1, 1].

    `start` and `max_seconds` select a window in seconds so long recordings are
    not decoded in full when only one clip of them is needed.
    """
    if start < 0 or (max_seconds is not None and max_seconds <= 0):
        raise ValueError("start must be >= 0 and max_seconds > 0")
    if isinstance(source, tuple):
        rate, frames = _window_of_array(source, start, max_seconds)
        mono = _resample_blocks(rate, [frames])
    else:
        mono = _resample_file(Path(source), start, max_seconds)
    if mono.size == 0:
        raise InvalidInputError("The audio is empty — record or upload a clip with sound in it.")
    if max_seconds is not None:
        mono = mono[: round(max_seconds * SAMPLE_RATE)]
    return _fit_full_scale(mono)


def _resample_blocks(rate: int, blocks: Iterable[np.ndarray]) -> np.ndarray:
    """Mix each block to mono and resample it through one stream, then join the results.

    Whole-file intermediates (106 MB for ten minutes at 44.1 kHz) cost 15-20 % more per
    sample than cache-sized blocks; one `ResampleStream` keeps the filter state across
    blocks, so the samples equal those of a single `soxr.resample` over the whole file.
    """
    resampler = None
    if rate != SAMPLE_RATE:
        resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    pieces = []
    for block in blocks:
        mono = _mix_to_mono(block)
        if not np.all(np.isfinite(mono)):
            raise InvalidInputError(
                "The audio contains invalid samples (NaN or infinity) — re-export it and try again."
            )
        pieces.append(mono if resampler is None else resampler.resample_chunk(mono))
    if resampler is not None:
        pieces.append(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def _window_of_array(
    source: tuple[int, np.ndarray], start: float, max_seconds: float | None
) -> tuple[int, np.ndarray]:
    """Accept Gradio's `(sample_rate, array)` with shape (n,) or (n, channels)."""
    if len(source) != 2:
        raise InvalidInputError("Audio must be a (sample_rate, samples) pair.")
    rate, array = int(source[0]), np.asarray(source[1])
    if rate <= 0:
        raise InvalidInputError(
            f"The audio's sample rate ({rate}) is invalid — record or upload the clip again."
        )
    if array.ndim not in (1, 2):
        raise InvalidInputError("Audio samples must have shape (samples,) or (samples, channels).")
    first = round(start * rate)
    last = None if max_seconds is None else first + round(max_seconds * rate)
    return rate, _to_float(array[first:last])


def _to_float(array: np.ndarray) -> np.ndarray:
    """Scale integer PCM to [-1, 1]; unsigned PCM (8-bit WAV) is centred on half its range."""
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.signedinteger):
        return (array / -float(np.iinfo(array.dtype).min)).astype(np.float32)
    if np.issubdtype(array.dtype, np.unsignedinteger):
        half = (float(np.iinfo(array.dtype).max) + 1) / 2
        return ((array - half) / half).astype(np.float32)
    raise InvalidInputError(
        f"Audio samples of type {array.dtype} are not supported — use integer PCM or float."
    )


def _resample_file(path: Path, start: float, max_seconds: float | None) -> np.ndarray:
    """Try libsndfile first (exact, seekable, block by block), then fall back to FFmpeg via PyAV.

    libsndfile reads a WAV whose header says "0 bytes" (an unfinished
    recording) as empty, so an empty result also goes to PyAV.
    """
    if not path.is_file():
        raise InvalidInputError(f"The audio file {path.name!r} does not exist — upload it again.")
    if path.stat().st_size == 0:
        raise InvalidInputError(f"The audio file {path.name!r} is empty (0 bytes) — upload it again.")
    try:
        with sf.SoundFile(path) as audio:
            mono = _resample_blocks(audio.samplerate, _soundfile_blocks(audio, start, max_seconds))
        if mono.size:
            return mono
    except sf.SoundFileError:
        pass
    try:
        rate, frames = _read_with_pyav(path, start, max_seconds)
    except av.FFmpegError as error:
        raise InvalidInputError(
            f"{path.name!r} is not an audio file that can be decoded — "
            "upload a WAV, MP3, FLAC, OGG or M4A file."
        ) from error
    return _resample_blocks(rate, [frames])


def _soundfile_blocks(
    audio: sf.SoundFile, start: float, max_seconds: float | None
) -> Iterator[np.ndarray]:
    """The window as (frames, channels) blocks of READ_BLOCK_SECONDS each.

    A truncated file's header can promise more frames than there are, so an empty read ends it.
    """
    audio.seek(min(round(start * audio.samplerate), audio.frames))
    left = audio.frames if max_seconds is None else round(max_seconds * audio.samplerate)
    size = READ_BLOCK_SECONDS * audio.samplerate
    while left > 0:
        block = audio.read(min(size, left), dtype="float32", always_2d=True)
        if len(block) == 0:
            return
        left -= len(block)
        yield block


def _read_with_pyav(
    path: Path, start: float, max_seconds: float | None
) -> tuple[int, np.ndarray]:
    """Decode the first audio stream (also of a video), stopping once the window is full.

    The seek lands a little early because AAC, MP3 and Opus decoders need some
    preceding audio to rebuild the first samples; the extra is trimmed off.
    """
    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise InvalidInputError(f"{path.name!r} has no audio track — upload one with sound.")
        stream = container.streams.audio[0]
        if start > 0 and stream.time_base is not None:
            early = max(0.0, start - SEEK_PREROLL_SECONDS)
            container.seek(int(early / stream.time_base), stream=stream)
        blocks, rate = _decode_window(container.decode(stream), start, max_seconds)
    if not blocks:
        return SAMPLE_RATE, np.zeros((0, 1), dtype=np.float32)
    return rate, np.concatenate(blocks, axis=1).T


def _decode_window(
    frames: Iterator[av.AudioFrame], start: float, max_seconds: float | None
) -> tuple[list[np.ndarray], int]:
    """Collect planar float blocks covering [start, start + max_seconds)."""
    to_float = av.AudioResampler(format="fltp")
    blocks: list[np.ndarray] = []
    rate, position, collected = 0, 0.0, 0
    for frame in frames:
        rate = frame.sample_rate
        position = frame.time if frame.time is not None else position
        for converted in to_float.resample(frame):
            block = converted.to_ndarray()[:, max(0, round((start - position) * rate)) :]
            position += converted.samples / rate
            blocks.append(block)
            collected += block.shape[1]
        if max_seconds is not None and collected >= max_seconds * rate:
            break
    return blocks, rate


def _mix_to_mono(frames: np.ndarray) -> np.ndarray:
    return frames if frames.ndim == 1 else frames.mean(axis=1, dtype=np.float32)


def _fit_full_scale(samples: np.ndarray) -> np.ndarray:
    """Scale down rather than clip when a float source exceeds full scale."""
    peak = max(float(samples.max()), -float(samples.min()))
    if peak > 1.0:
        samples = samples / peak
    return np.ascontiguousarray(samples, dtype=np.float32)


def frame_rms(samples: np.ndarray, frame_length: int) -> np.ndarray:
    """RMS of consecutive non-overlapping frames; a trailing partial frame is ignored."""
    count = len(samples) // frame_length
    frames = np.asarray(samples[: count * frame_length], dtype=np.float32)
    frames = frames.reshape(count, frame_length)
    return np.sqrt(np.einsum("ij,ij->i", frames, frames) / frame_length)


def is_silent(samples: np.ndarray, threshold_db: float = SILENCE_THRESHOLD_DB) -> bool:
    """True when even the loudest 30 ms frame is below `threshold_db` dBFS.

    Judging the loudest frame, not the whole clip, keeps a single word in a
    long quiet recording from being dismissed as silence.
    """
    frame_length = max(1, min(len(samples), round(SILENCE_FRAME_SECONDS * SAMPLE_RATE)))
    rms = frame_rms(samples, frame_length)
    return rms.size == 0 or bool(20 * np.log10(max(float(rms.max()), LOG_FLOOR)) < threshold_db)


def validate_speech(samples: np.ndarray) -> None:
    """Refuse audio that cannot hold speech, so the model is never asked to transcribe nothing."""
    if len(samples) == 0:
        raise InvalidInputError("The audio is empty — record or upload a clip with speech in it.")
    if is_silent(samples):
        raise InvalidInputError(
            "The audio is silent — nothing to transcribe. "
            "Check that the microphone is on and the volume is up."
        )


def padded_for_model(samples: np.ndarray) -> np.ndarray:
    """`samples` with trailing silence up to the shortest clip the audio encoder accepts."""
    shortfall = round(MIN_MODEL_SECONDS * SAMPLE_RATE) - len(samples)
    return np.pad(samples, (0, shortfall)) if shortfall > 0 else samples


def to_wav_bytes(samples: np.ndarray) -> bytes:
    """16-bit PCM WAV at 16 kHz, the format every OpenAI-compatible server accepts."""
    buffer = io.BytesIO()
    samples = np.asarray(samples, dtype=np.float32)
    sf.write(buffer, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
