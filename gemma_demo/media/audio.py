"""Audio in the one shape Gemma 4 accepts: 16 kHz mono float32 in [-1, 1].

Uploads arrive as files of any common format or as Gradio microphone tuples;
everything is normalised here so the rest of the app never sees a sample rate,
a channel count or an integer sample.
"""

from __future__ import annotations

import io
import itertools
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
SILENCE_FRAME_LENGTH = round(SILENCE_FRAME_SECONDS * SAMPLE_RATE)
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
    pieces = list(audio_blocks(source, max_seconds, start))
    if not pieces:
        raise InvalidInputError("The audio is empty — record or upload a clip with sound in it.")
    return fit_full_scale(np.concatenate(pieces))


def audio_blocks(
    source: AudioSource, max_seconds: float | None = None, start: float = 0.0
) -> Iterator[np.ndarray]:
    """The window as non-empty 16 kHz mono float32 blocks, decoded only as they are asked for.

    What `load_audio` joins, before `fit_full_scale`: a recording of any length can be
    read piece by piece with memory that does not grow with it. The file is opened and
    checked at the first block.
    """
    if start < 0 or (max_seconds is not None and max_seconds <= 0):
        raise ValueError("start must be >= 0 and max_seconds > 0")
    if isinstance(source, tuple):
        rate, frames = _window_of_array(source, start, max_seconds)
        size = READ_BLOCK_SECONDS * rate
        blocks = _resampled(rate, (frames[at : at + size] for at in range(0, len(frames), size)))
    else:
        blocks = _file_blocks(Path(source), start, max_seconds)
    return _trimmed(blocks, None if max_seconds is None else round(max_seconds * SAMPLE_RATE))


def audio_seconds(source: AudioSource) -> float | None:
    """The recording's length from its header, nothing decoded; None when the header does not say.

    A header can be wrong (an unfinished recording says 0 bytes): whoever relies on this
    must still cap what it decodes.
    """
    if isinstance(source, tuple):
        rate, frames = _window_of_array(source, 0.0, None)
        return len(frames) / rate
    path = Path(source)
    _require_file(path)
    try:
        info = sf.info(str(path))
        if info.frames > 0 and info.samplerate > 0:
            return info.frames / info.samplerate
    except sf.SoundFileError:
        pass
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = _audio_stream(container, path)
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            return container.duration / av.time_base if container.duration else None
    except av.FFmpegError as error:
        raise _undecodable(path) from error


def _trimmed(blocks: Iterator[np.ndarray], limit: int | None) -> Iterator[np.ndarray]:
    """Non-empty blocks, cut at `limit` samples in all; decoding stops there."""
    for block in blocks:
        if limit is not None:
            block = block[: max(limit, 0)]
            limit -= len(block)
        if len(block):
            yield block
        if limit is not None and limit <= 0:
            return


def _resampled(rate: int, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Mix each block to mono and resample it through one stream.

    Whole-file intermediates (106 MB for ten minutes at 44.1 kHz) cost 15-20 % more per
    sample than cache-sized blocks; one `ResampleStream` keeps the filter state across
    blocks, so the samples equal those of a single `soxr.resample` over the whole file.
    """
    resampler = None
    if rate != SAMPLE_RATE:
        resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    for block in blocks:
        mono = _mix_to_mono(block)
        if not np.all(np.isfinite(mono)):
            raise InvalidInputError(
                "The audio contains invalid samples (NaN or infinity) — re-export it and try again."
            )
        yield mono if resampler is None else resampler.resample_chunk(mono)
    if resampler is not None:
        yield resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


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


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise InvalidInputError(f"The audio file {path.name!r} does not exist — upload it again.")
    if path.stat().st_size == 0:
        raise InvalidInputError(f"The audio file {path.name!r} is empty (0 bytes) — upload it again.")


def _undecodable(path: Path) -> InvalidInputError:
    return InvalidInputError(
        f"{path.name!r} is not an audio file that can be decoded — upload a WAV, MP3, FLAC, OGG or M4A file."
    )


def _file_blocks(path: Path, start: float, max_seconds: float | None) -> Iterator[np.ndarray]:
    """Try libsndfile first (exact, seekable, block by block), then fall back to FFmpeg via PyAV.

    libsndfile reads a WAV whose header says "0 bytes" (an unfinished recording) as
    empty, so a file it yields nothing for also goes to PyAV. A libsndfile error after
    blocks were handed on cannot start over: the file is called damaged.
    """
    _require_file(path)
    handed_on = False
    try:
        with sf.SoundFile(path) as audio:
            raw = _soundfile_blocks(audio, start, max_seconds)
            first = next(raw, None)
            if first is not None:
                for block in _resampled(audio.samplerate, itertools.chain([first], raw)):
                    handed_on = True
                    yield block
                return
    except sf.SoundFileError as error:
        if handed_on:
            raise InvalidInputError(f"{path.name!r} is damaged part-way ({error}) — re-export it and try again.") from None
    yield from _pyav_blocks(path, start, max_seconds)


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


def _pyav_blocks(path: Path, start: float, max_seconds: float | None) -> Iterator[np.ndarray]:
    """Decode the first audio stream (also of a video) frame by frame, stopping once the window is full.

    The seek lands a little early because AAC, MP3 and Opus decoders need some
    preceding audio to rebuild the first samples; the extra is trimmed off.
    """
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = _audio_stream(container, path)
            if start > 0 and stream.time_base is not None:
                early = max(0.0, start - SEEK_PREROLL_SECONDS)
                container.seek(int(early / stream.time_base), stream=stream)
            planar = _window_blocks(container.decode(stream), start, max_seconds)
            first = next(planar, None)
            if first is None:
                return
            rate = first[0]
            yield from _resampled(rate, (block.T for _, block in itertools.chain([first], planar)))
    except av.FFmpegError as error:
        raise _undecodable(path) from error


def _audio_stream(container: av.container.InputContainer, path: Path) -> av.AudioStream:
    if not container.streams.audio:
        raise InvalidInputError(f"{path.name!r} has no audio track — upload one with sound.")
    return container.streams.audio[0]


def _window_blocks(
    frames: Iterator[av.AudioFrame], start: float, max_seconds: float | None
) -> Iterator[tuple[int, np.ndarray]]:
    """(sample rate, planar float block) pairs covering [start, start + max_seconds)."""
    to_float = av.AudioResampler(format="fltp")
    position, collected = 0.0, 0
    for frame in frames:
        rate = frame.sample_rate
        position = frame.time if frame.time is not None else position
        for converted in to_float.resample(frame):
            block = converted.to_ndarray()[:, max(0, round((start - position) * rate)) :]
            position += converted.samples / rate
            collected += block.shape[1]
            yield rate, block
        if max_seconds is not None and collected >= max_seconds * rate:
            return


def _mix_to_mono(frames: np.ndarray) -> np.ndarray:
    return frames if frames.ndim == 1 else frames.mean(axis=1, dtype=np.float32)


def fit_full_scale(samples: np.ndarray, peak: float | None = None) -> np.ndarray:
    """Scale down rather than clip when a float source exceeds full scale.

    `peak` is the whole recording's when `samples` are one piece of it, so every piece is scaled alike.
    """
    if peak is None:
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
    return loudest_frame_db(samples) < threshold_db


def loudest_frame_db(samples: np.ndarray) -> float:
    """The level of the loudest 30 ms frame in dBFS (a clip shorter than that is one frame)."""
    frame_length = max(1, min(len(samples), SILENCE_FRAME_LENGTH))
    rms = frame_rms(samples, frame_length)
    return level_db(float(rms.max()) if rms.size else 0.0)


def level_db(rms: float) -> float:
    return 20 * float(np.log10(max(rms, LOG_FLOOR)))


def validate_speech(samples: np.ndarray) -> None:
    """Refuse audio that cannot hold speech, so the model is never asked to transcribe nothing."""
    require_speech(len(samples), loudest_frame_db(samples))


def require_speech(length: int, loudest_db: float) -> None:
    """`validate_speech` from figures gathered while reading a recording block by block."""
    if length == 0:
        raise InvalidInputError("The audio is empty — record or upload a clip with speech in it.")
    if loudest_db < SILENCE_THRESHOLD_DB:
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
