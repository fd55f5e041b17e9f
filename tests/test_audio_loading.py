"""load_audio turns every supported source into 16 kHz mono float32 in [-1, 1]."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
import soundfile as sf
import soxr
from audio_factory import (
    AMPLITUDE,
    RATE,
    dominant_frequency,
    rms,
    sine,
    write_audio,
    write_silent_video,
    write_with_pyav,
)

from gemma_demo.errors import InvalidInputError
from gemma_demo.media import audio
from gemma_demo.media.audio import (
    SAMPLE_RATE,
    is_silent,
    load_audio,
    to_wav_bytes,
    validate_speech,
)

TONE_HZ = 440.0
SINE_RMS = AMPLITUDE / np.sqrt(2)


def assert_tone(
    samples: np.ndarray, seconds: float, frequency: float = TONE_HZ, slack: float = 0.0
) -> None:
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert abs(len(samples) - seconds * SAMPLE_RATE) <= slack * SAMPLE_RATE + 1
    assert dominant_frequency(samples) == pytest.approx(frequency, abs=1.0)
    assert np.abs(samples).max() <= 1.0


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000, 16_000])
def test_resampling_keeps_length_and_pitch(tmp_path, rate):
    path = write_audio(tmp_path / "tone.wav", sine(TONE_HZ, 2.0, rate), rate)
    samples = load_audio(path)
    assert_tone(samples, 2.0)
    assert rms(samples) == pytest.approx(SINE_RMS, rel=0.02)


def test_stereo_in_antiphase_mixes_to_silence(tmp_path):
    tone = sine(TONE_HZ, 1.0, 44_100)
    path = write_audio(tmp_path / "antiphase.wav", np.stack([tone, -tone], axis=1), 44_100)
    samples = load_audio(path)
    assert len(samples) == SAMPLE_RATE
    assert np.abs(samples).max() < 1e-3


def test_stereo_in_phase_keeps_the_tone(tmp_path):
    tone = sine(TONE_HZ, 1.0, 44_100)
    path = write_audio(tmp_path / "inphase.wav", np.stack([tone, tone], axis=1), 44_100)
    samples = load_audio(path)
    assert_tone(samples, 1.0)
    assert rms(samples) == pytest.approx(SINE_RMS, rel=0.02)


def test_eight_channels_at_96k_are_averaged(tmp_path):
    tone = sine(1_000.0, 1.0, 96_000)
    gains = np.arange(1, 9) / 8
    path = write_audio(tmp_path / "octo.wav", tone[:, np.newaxis] * gains, 96_000, subtype="FLOAT")
    samples = load_audio(path)
    assert_tone(samples, 1.0, frequency=1_000.0)
    assert rms(samples) == pytest.approx(SINE_RMS * gains.mean(), rel=0.02)


@pytest.mark.parametrize(
    ("subtype", "tolerance"),
    [
        ("PCM_U8", 1 / 64),
        ("PCM_16", 1e-4),
        ("PCM_24", 1e-4),
        ("PCM_32", 1e-4),
        ("FLOAT", 1e-4),
        ("DOUBLE", 1e-4),
    ],
)
def test_wav_subtypes_decode_to_the_same_signal(tmp_path, subtype, tolerance):
    tone = sine(TONE_HZ, 1.0)
    samples = load_audio(write_audio(tmp_path / f"{subtype}.wav", tone, RATE, subtype=subtype))
    assert_tone(samples, 1.0)
    assert np.abs(samples - tone).max() < tolerance


@pytest.mark.parametrize("extension", ["mp3", "ogg", "flac"])
def test_compressed_formats(tmp_path, extension):
    path = write_audio(tmp_path / f"tone.{extension}", sine(TONE_HZ, 2.0, 44_100), 44_100)
    samples = load_audio(path)
    assert_tone(samples, 2.0, slack=0.1)
    assert rms(samples) == pytest.approx(SINE_RMS, rel=0.1)


@pytest.mark.parametrize("name", ["tone.m4a", "clip.mp4"])
def test_aac_audio_track_is_decoded(tmp_path, name):
    tone = sine(TONE_HZ, 2.0, 44_100)
    path = write_with_pyav(tmp_path / name, tone, 44_100, with_video=name.endswith("mp4"))
    with pytest.raises(sf.LibsndfileError):
        sf.info(path)
    assert_tone(load_audio(path), 2.0, slack=0.1)


def test_video_without_sound_is_rejected(tmp_path):
    with pytest.raises(InvalidInputError, match="no audio track"):
        load_audio(write_silent_video(tmp_path / "mute.mp4", 1.0))


@pytest.mark.parametrize(
    ("dtype", "full_scale"),
    [(np.int16, 2**15), (np.int32, 2**31), (np.float32, 1.0), (np.float64, 1.0)],
)
def test_microphone_tuple_is_scaled_and_mixed(dtype, full_scale):
    tone = sine(TONE_HZ, 1.0, 48_000)
    stereo = np.stack([tone, tone], axis=1) * full_scale
    samples = load_audio((48_000, stereo.astype(dtype)))
    assert_tone(samples, 1.0)
    assert rms(samples) == pytest.approx(SINE_RMS, rel=0.02)


def test_unsigned_8_bit_array_is_centred():
    tone = sine(TONE_HZ, 1.0)
    samples = load_audio((RATE, np.round(tone * 128 + 128).clip(0, 255).astype(np.uint8)))
    assert np.abs(samples - tone).max() < 1 / 64


def test_float_source_above_full_scale_is_scaled_not_clipped():
    samples = load_audio((RATE, sine(TONE_HZ, 1.0) * 4))
    assert np.abs(samples).max() == pytest.approx(1.0)
    assert rms(samples) == pytest.approx(1 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples_are_rejected(tmp_path, bad):
    tone = sine(TONE_HZ, 1.0)
    tone[100] = bad
    with pytest.raises(InvalidInputError, match="NaN"):
        load_audio((RATE, tone))
    with pytest.raises(InvalidInputError, match="NaN"):
        load_audio(write_audio(tmp_path / "bad.wav", tone, RATE, subtype="FLOAT"))


def test_zero_length_is_rejected(tmp_path):
    with pytest.raises(InvalidInputError, match="empty"):
        load_audio((RATE, np.zeros(0, dtype=np.int16)))
    with pytest.raises(InvalidInputError, match="empty"):
        load_audio(write_audio(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), RATE))


def test_text_file_named_wav_is_rejected(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are meeting notes, not audio\n" * 40)
    with pytest.raises(InvalidInputError, match="notes.wav"):
        load_audio(path)


def test_zip_file_named_wav_is_rejected(tmp_path):
    path = tmp_path / "archive.wav"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not audio " * 100)
    with pytest.raises(InvalidInputError, match="archive.wav"):
        load_audio(path)


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_audio(tmp_path / "gone.wav")


def _wav_bytes(samples: np.ndarray, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _claim_data_size(data: bytes, claimed_size: int) -> bytes:
    """Overwrite the data chunk's size, as unfinished or streamed recordings do."""
    patched = bytearray(data)
    size_field = patched.find(b"data") + 4
    patched[size_field : size_field + 4] = struct.pack("<I", claimed_size)
    return bytes(patched)


def test_truncated_wav_decodes_what_is_there(tmp_path):
    data = _wav_bytes(sine(TONE_HZ, 4.0))
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: len(data) // 2])
    samples = load_audio(path)
    assert abs(len(samples) - 2.0 * SAMPLE_RATE) < 0.01 * SAMPLE_RATE
    assert dominant_frequency(samples) == pytest.approx(TONE_HZ, abs=1.0)


@pytest.mark.parametrize("claimed_size", [0, 0xFFFFFFFF])
def test_wav_header_with_wrong_size_decodes_everything(tmp_path, claimed_size):
    path = tmp_path / "streamed.wav"
    path.write_bytes(_claim_data_size(_wav_bytes(sine(TONE_HZ, 3.0)), claimed_size))
    assert_tone(load_audio(path), 3.0)


def _two_tone_file(tmp_path, writer):
    tones = np.concatenate([sine(TONE_HZ, 5.0, 44_100), sine(2 * TONE_HZ, 5.0, 44_100)])
    return writer(tmp_path, tones)


WRITERS = {
    "wav": lambda tmp_path, tones: write_audio(tmp_path / "two.wav", tones, 44_100),
    "m4a": lambda tmp_path, tones: write_with_pyav(tmp_path / "two.m4a", tones, 44_100),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_window_selects_seconds_from_start(tmp_path, kind):
    path = _two_tone_file(tmp_path, WRITERS[kind])
    head = load_audio(path, max_seconds=3.0)
    assert len(head) == 3 * SAMPLE_RATE
    assert dominant_frequency(head) == pytest.approx(TONE_HZ, abs=1.0)
    tail = load_audio(path, start=6.0, max_seconds=2.0)
    assert len(tail) == 2 * SAMPLE_RATE
    assert dominant_frequency(tail) == pytest.approx(2 * TONE_HZ, abs=1.0)


def test_window_on_microphone_tuple():
    tones = np.concatenate([sine(TONE_HZ, 2.0), sine(2 * TONE_HZ, 2.0)])
    tail = load_audio((RATE, tones), start=2.5, max_seconds=1.0)
    np.testing.assert_array_equal(tail, tones[round(2.5 * RATE) : round(3.5 * RATE)])


def _spoiled_tail(seconds: float) -> np.ndarray:
    tone = sine(TONE_HZ, seconds)
    tone[3 * RATE :] = np.nan
    return tone


def test_samples_past_the_window_are_not_read(tmp_path):
    path = write_audio(tmp_path / "spoiled_tail.wav", _spoiled_tail(4.0), RATE, subtype="FLOAT")
    assert_tone(load_audio(path, max_seconds=2.0), 2.0)


def test_invalid_samples_in_a_later_block_are_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(audio, "READ_BLOCK_SECONDS", 1)
    path = write_audio(tmp_path / "spoiled_tail.wav", _spoiled_tail(4.0), RATE, subtype="FLOAT")
    with pytest.raises(InvalidInputError, match="NaN"):
        load_audio(path)


def test_ffmpeg_fallback_stops_decoding_after_the_window(tmp_path):
    path = tmp_path / "streamed_spoiled_tail.wav"
    path.write_bytes(_claim_data_size(_wav_bytes(_spoiled_tail(4.0), "FLOAT"), 0))
    assert_tone(load_audio(path, max_seconds=2.0), 2.0)
    with pytest.raises(InvalidInputError, match="NaN"):
        load_audio(path)


def test_silence_detection():
    assert is_silent(np.zeros(RATE, dtype=np.float32))
    assert is_silent(np.zeros(0, dtype=np.float32))
    assert is_silent(sine(TONE_HZ, 1.0, amplitude=10 ** (-60 / 20)))
    assert not is_silent(sine(TONE_HZ, 1.0, amplitude=10 ** (-40 / 20)))
    assert not is_silent(sine(TONE_HZ, 1.0), threshold_db=-10)
    assert is_silent(sine(TONE_HZ, 1.0), threshold_db=0)


def test_a_short_word_in_a_long_quiet_recording_is_not_silence():
    recording = np.zeros(120 * RATE, dtype=np.float32)
    recording[60 * RATE : 60 * RATE + RATE // 2] = sine(TONE_HZ, 0.5, amplitude=0.1)
    assert not is_silent(recording)


def test_validate_speech_refuses_empty_and_silent_audio():
    with pytest.raises(InvalidInputError, match="empty"):
        validate_speech(np.zeros(0, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="silent"):
        validate_speech(np.zeros(RATE, dtype=np.float32))
    validate_speech(sine(TONE_HZ, 1.0))


def test_wav_bytes_round_trip():
    tone = sine(TONE_HZ, 1.0)
    decoded, rate = sf.read(io.BytesIO(to_wav_bytes(tone)), dtype="float32")
    info = sf.info(io.BytesIO(to_wav_bytes(tone)))
    assert (rate, info.subtype, info.format) == (SAMPLE_RATE, "PCM_16", "WAV")
    np.testing.assert_allclose(decoded, tone, atol=1 / 2**14)



def _streamed_wav(path, samples):
    path.write_bytes(_claim_data_size(_wav_bytes(samples, "FLOAT"), 0))
    return path


DECODED_BY_FFMPEG = {
    "streamed.wav": _streamed_wav,
    "chirp.m4a": lambda path, samples: write_with_pyav(path, samples, RATE),
}


@pytest.mark.parametrize("name", sorted(DECODED_BY_FFMPEG))
def test_ffmpeg_window_matches_the_full_decode(tmp_path, name):
    time = np.arange(6 * RATE) / RATE
    chirp = (AMPLITUDE * np.sin(2 * np.pi * (100 * time + 40 * time**2))).astype(np.float32)
    path = DECODED_BY_FFMPEG[name](tmp_path / name, chirp)
    full = load_audio(path)
    for start in (1.2345, 3.777):
        window = load_audio(path, start=start, max_seconds=1.0)
        first = round(start * RATE)
        assert len(window) == RATE
        np.testing.assert_allclose(window, full[first : first + RATE], atol=1e-3)


LONG_RATE = 44_100


@pytest.fixture(scope="module")
def long_stereo(tmp_path_factory):
    """75 s of 44.1 kHz stereo noise: longer than two read blocks, so block edges fall inside."""
    noise = np.random.default_rng(0).uniform(-AMPLITUDE, AMPLITUDE, (75 * LONG_RATE, 2))
    path = tmp_path_factory.mktemp("long") / "long.wav"
    return write_audio(path, noise.astype(np.float32), LONG_RATE, subtype="FLOAT")


def _whole_array_load(path, start: float, max_seconds: float | None) -> np.ndarray:
    """What load_audio did before reading files in blocks: one `soxr.resample` of the mixed window."""
    frames, rate = sf.read(path, dtype="float32", always_2d=True)
    first = round(start * rate)
    last = None if max_seconds is None else first + round(max_seconds * rate)
    mono = frames[first:last].mean(axis=1, dtype=np.float32)
    resampled = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return resampled if max_seconds is None else resampled[: round(max_seconds * SAMPLE_RATE)]


@pytest.mark.parametrize(
    ("start", "max_seconds"), [(0.0, None), (20.0, None), (10.3, 40.0), (44.7, 5.0)]
)
def test_blockwise_reading_gives_the_whole_array_samples(long_stereo, start, max_seconds):
    expected = _whole_array_load(long_stereo, start, max_seconds)
    samples = load_audio(long_stereo, max_seconds, start)
    np.testing.assert_allclose(samples, expected, rtol=0, atol=1e-6)


def test_reading_a_file_never_holds_it_whole(long_stereo, monkeypatch):
    """With small blocks the peak is about the 16 kHz result twice (pieces and their join).

    The whole-array path held the file as float32 stereo, then mono: over eight times the result.
    """
    monkeypatch.setattr(audio, "READ_BLOCK_SECONDS", 1)
    tracemalloc.start()
    try:
        samples = load_audio(long_stereo)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * samples.nbytes


def test_blocks_are_decoded_only_as_they_are_asked_for(long_stereo, monkeypatch):
    """Handed on and dropped block by block, 75 s of 44.1 kHz stereo never sit in memory at once."""
    monkeypatch.setattr(audio, "READ_BLOCK_SECONDS", 1)
    tracemalloc.start()
    try:
        total = sum(len(block) for block in audio.audio_blocks(long_stereo))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert abs(total - 75 * SAMPLE_RATE) <= 1
    assert peak < 75 * SAMPLE_RATE * 4 / 3  # a third of what the blocks joined would take


def _decoding_refused(rate, blocks):
    raise AssertionError("the header was enough; nothing should be decoded")


@pytest.mark.parametrize("name", ["tone.wav", "tone.flac", "tone.m4a", "streamed.wav"])
def test_the_length_comes_from_the_header_without_decoding(tmp_path, monkeypatch, name):
    tone = sine(TONE_HZ, 4.0, 44_100)
    writers = {
        "tone.wav": lambda path: write_audio(path, tone, 44_100),
        "tone.flac": lambda path: write_audio(path, tone, 44_100),
        "tone.m4a": lambda path: write_with_pyav(path, tone, 44_100),
        "streamed.wav": lambda path: path.write_bytes(_claim_data_size(_wav_bytes(sine(TONE_HZ, 4.0)), 0)),
    }
    path = tmp_path / name
    writers[name](path)
    monkeypatch.setattr(audio, "_resampled", _decoding_refused)
    assert audio.audio_seconds(path) == pytest.approx(4.0, abs=0.05)
    assert audio.audio_seconds((RATE, sine(TONE_HZ, 2.5))) == 2.5
