"""ZeroGPU on Hugging Face Spaces: the model loads once at start-up, only generation gets a GPU.

On ZeroGPU a GPU is lent to one `@spaces.GPU` call at a time, for the `duration` the call
asks for; a call that runs past it is killed. So the model is loaded at start-up, on
`cuda`, outside any GPU call (ZeroGPU keeps it ready for the calls), and each endpoint
asks for a duration computed from its work: the tokens it may generate, the 30 s pieces
of a recording, the frames of a video. One model per Space: visitors cannot switch it.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from gemma_demo.config import AppConfig
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.media.timing import MAX_CLIP_SECONDS

ZERO_GPU_VARIABLE = "SPACES_ZERO_GPU"
# Conservative figures for the slowest model (31B) on a ZeroGPU slice: a call that asks for
# too little is killed, one that asks for too much only waits longer in ZeroGPU's queue.
SETUP_SECONDS = 20  # moving inputs to the GPU, media decoding, prefill
TOKENS_PER_SECOND = 10
SECONDS_PER_FRAME = 1.0
FALLBACK_AUDIO_SECONDS = 10 * 60  # a recording whose length cannot be read counts as 10 minutes

Duration = Callable[..., int]


def on_zero_gpu(env: Mapping[str, str] | None = None) -> bool:
    """Running on a ZeroGPU Space: its `spaces` package is installed and its variable set."""
    value = (os.environ if env is None else env).get(ZERO_GPU_VARIABLE, "")
    return value.strip().lower() in {"1", "t", "true"} and importlib.util.find_spec("spaces") is not None


def zero_gpu_config(config: AppConfig) -> AppConfig:
    """The start-up model on `cuda`, and no other model for visitors to switch to."""
    return replace(config, load=replace(config.load, device="cuda"), models=())


def generation_seconds(settings: GenerationSettings, pieces: int = 1, frames: int = 0) -> int:
    """GPU time for `pieces` generations of up to `max_new_tokens` each, over `frames` frames."""
    decode = pieces * settings.max_new_tokens / TOKENS_PER_SECOND
    return math.ceil(SETUP_SECONDS * pieces + decode + frames * SECONDS_PER_FRAME)


def audio_pieces(path: Any) -> int:
    """How many pieces of up to 30 s a recording is transcribed in."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            seconds = container.duration / 1e6 if container.duration else FALLBACK_AUDIO_SECONDS
    except (OSError, ValueError, av.error.FFmpegError):
        seconds = FALLBACK_AUDIO_SECONDS  # the task will refuse it with a clear message
    return max(1, math.ceil(seconds / MAX_CLIP_SECONDS))


def _plain(model: str, settings: GenerationSettings, *inputs: Any) -> int:
    return generation_seconds(settings)


def _speech(model: str, settings: GenerationSettings, audio: Any = None, *rest: Any) -> int:
    return generation_seconds(settings, pieces=audio_pieces(audio) if audio else 1)


def _video(model: str, settings: GenerationSettings, video: Any = None, question: Any = None,
           num_frames: Any = None, *rest: Any) -> int:
    return generation_seconds(settings, frames=int(num_frames or 0))


# Each endpoint's duration, by API name; they take the wrapped function's arguments.
DURATIONS: dict[str, Duration] = {"transcribe": _speech, "translate": _speech, "video": _video}


def duration_for(api_name: str) -> Duration:
    return DURATIONS.get(api_name, _plain)


def gpu(run: Callable, api_name: str) -> Callable:
    """`run` as a ZeroGPU function that asks for as much time as its work needs."""
    import spaces

    return spaces.GPU(run, duration=duration_for(api_name))
