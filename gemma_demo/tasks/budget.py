"""What one chat request may expand, judged from the files' headers before anything is decoded.

Every chat turn sends the whole conversation again, so every turn expands every file in
it: a PDF into page pictures, a recording into 30 s pieces, a video into frames. Their
cost is read first (page counts and sizes, picture sizes, durations, frame rates) and
summed over the conversation; a request over its budget is refused with the numbers,
having decoded nothing. The limits come from:

- the vision encoder, which takes 32,768 soft tokens at once (the video task's limit):
  PDF pages as pictures and video frames, at the request's image and frame budgets;
- the model's context: ~25 tokens per second of audio, and every soft token in all;
- the memory available now: decoded media and the processor's float32 tensors must fit
  in a quarter of it, since several requests run at once and the encoders need room too.

The operator may set each one instead (`--chat-max-pages` and the others, `config.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import astuple, dataclass

from gemma_demo.engine.memory import available_bytes
from gemma_demo.errors import InvalidInputError
from gemma_demo.media.timing import SAMPLE_RATE
from gemma_demo.media.video_file import VideoInfo
from gemma_demo.media.video_sampling import DEFAULT_MAX_SIDE
from gemma_demo.tasks.video_question import MAX_VIDEO_SOFT_TOKENS

VISION_TOKENS = MAX_VIDEO_SOFT_TOKENS
AUDIO_TOKENS_PER_SECOND = 25
PAGE_LABEL_TOKENS = 6  # "Page 12:" beside each page picture
FRAME_STAMP_TOKENS = 8  # the "mm:ss" stamp the processor writes before each frame
RGB_BYTES = 3
# The processor's float32 pixel values and int64 positions per soft token: 3x3 patches of 16x16 RGB.
PROCESSOR_BYTES_PER_SOFT_TOKEN = 9 * 16 * 16 * 3 * 4 + 9 * 2 * 8
# 16 kHz float32 samples, then 100 log-mel frames of 128 float32 values per second.
AUDIO_BYTES_PER_SECOND = SAMPLE_RATE * 4 + 100 * 128 * 4
MEMORY_SHARE = 0.25
FALLBACK_MEMORY = 8 * 1024**3  # where the system does not say (not Linux, not POSIX)
MIB = 1024**2
NEW_CHAT = "or start a new chat (Clear)."


@dataclass(frozen=True)
class MediaLimits:
    """The operator's limits per chat request, over the whole conversation; 0 means derived per request."""

    pages: int = 0
    megapixels: float = 0.0
    audio_minutes: float = 0.0
    video_frames: int = 0
    memory_mib: int = 0


@dataclass(frozen=True)
class MediaUse:
    """What expanding some files takes: counts read from headers, and the estimates made from them."""

    pages: int = 0  # PDF pages as pictures (the text layer costs only its words)
    pixels: int = 0  # of pictures, decoded at their full size
    audio_seconds: float = 0.0
    frames: int = 0
    tokens: int = 0
    bytes: int = 0

    def __add__(self, other: MediaUse) -> MediaUse:
        return MediaUse(*(mine + theirs for mine, theirs in zip(astuple(self), astuple(other))))


def page_use(pages: int, pixels: int, image_budget: int) -> MediaUse:
    """PDF pages rendered as pictures of `pixels` in all."""
    tokens = pages * image_budget
    return MediaUse(pages=pages, tokens=tokens + pages * PAGE_LABEL_TOKENS,
                    bytes=pixels * RGB_BYTES + tokens * PROCESSOR_BYTES_PER_SOFT_TOKEN)


def picture_use(size: tuple[int, int], image_budget: int) -> MediaUse:
    pixels = size[0] * size[1]
    return MediaUse(pixels=pixels, tokens=image_budget,
                    bytes=pixels * RGB_BYTES + image_budget * PROCESSOR_BYTES_PER_SOFT_TOKEN)


def audio_use(seconds: float) -> MediaUse:
    return MediaUse(audio_seconds=seconds, tokens=math.ceil(seconds * AUDIO_TOKENS_PER_SECOND),
                    bytes=math.ceil(seconds * AUDIO_BYTES_PER_SECOND))


def video_use(info: VideoInfo, frames_asked: int, frame_budget: int) -> MediaUse:
    """`frames_asked` spread over the clip, at most one per source frame, downscaled as `sample_video` does."""
    frames = min(frames_asked, max(1, round(info.duration * info.fps)))
    scale = min(1.0, DEFAULT_MAX_SIDE / max(info.width, info.height))
    frame_bytes = round(info.width * scale) * round(info.height * scale) * RGB_BYTES
    return MediaUse(frames=frames, tokens=frames * (frame_budget + FRAME_STAMP_TOKENS),
                    bytes=frames * (frame_bytes + frame_budget * PROCESSOR_BYTES_PER_SOFT_TOKEN))


def available_memory() -> int:
    """Memory the system could give now without swapping, or a fallback where it does not say."""
    return available_bytes("cpu") or FALLBACK_MEMORY


@dataclass(frozen=True)
class Limit:
    """One limit of a request: the most it allows, and why, in words for the refusal."""

    most: float
    why: str


@dataclass(frozen=True)
class Budget:
    """The limits of one chat request, from the operator's settings or derived from what it runs on."""

    limits: MediaLimits
    model_name: str
    context_tokens: int
    image_budget: int
    frame_budget: int
    available_bytes: int

    def memory(self) -> Limit:
        if self.limits.memory_mib:
            return Limit(self.limits.memory_mib * MIB, "the limit this server sets (--chat-media-memory)")
        return Limit(int(self.available_bytes * MEMORY_SHARE),
                     f"a quarter of the {_size(self.available_bytes)} this machine has available now")

    def pages(self) -> Limit:
        if self.limits.pages:
            return Limit(self.limits.pages, "the limit this server sets (--chat-max-pages)")
        return Limit(VISION_TOKENS // self.image_budget, f"the vision encoder takes {VISION_TOKENS:,} soft tokens "
                     f"at once, and a page takes {self.image_budget:,} at this image budget")

    def pixels(self) -> Limit:
        if self.limits.megapixels:
            return Limit(self.limits.megapixels * 1e6, "the limit this server sets (--chat-max-megapixels)")
        memory = self.memory()
        return Limit(memory.most // RGB_BYTES, f"{RGB_BYTES} bytes a pixel once decoded, in {_size(memory.most)}: "
                     f"{memory.why}")

    def audio_seconds(self) -> Limit:
        if self.limits.audio_minutes:
            return Limit(self.limits.audio_minutes * 60, "the limit this server sets (--chat-max-audio-minutes)")
        return Limit(self.context_tokens // AUDIO_TOKENS_PER_SECOND, f"about {AUDIO_TOKENS_PER_SECOND} tokens a "
                     f"second must fit in {self.model_name}'s context of {self.context_tokens:,} tokens")

    def frames(self) -> Limit:
        if self.limits.video_frames:
            return Limit(self.limits.video_frames, "the limit this server sets (--chat-max-video-frames)")
        return Limit(VISION_TOKENS // self.frame_budget, f"the vision encoder takes {VISION_TOKENS:,} soft tokens "
                     f"at once, and a frame takes {self.frame_budget:,} at this frame budget")

    def tokens(self) -> Limit:
        return Limit(self.context_tokens, f"{self.model_name}'s context")


@dataclass(frozen=True)
class Check:
    """One thing a request is measured by: what it counts, in words, and what to do when over."""

    limit: Callable[[Budget], Limit]
    used: Callable[[MediaUse], float]
    words: Callable[[float], str]
    advice: str


CHECKS = (
    Check(Budget.pages, lambda use: use.pages, lambda n: f"{n:,.0f} PDF pages as pictures",
          "Give a page range like “1-20” (under Documents), choose “Text layer”, lower the image budget, " + NEW_CHAT),
    Check(Budget.pixels, lambda use: use.pixels, lambda n: f"{n / 1e6:,.1f} megapixels of pictures",
          "Send fewer or smaller pictures, " + NEW_CHAT),
    Check(Budget.audio_seconds, lambda use: use.audio_seconds, lambda s: f"{_duration(s)} of audio",
          "Send a shorter recording (the Audio tab transcribes any length), " + NEW_CHAT),
    Check(Budget.frames, lambda use: use.frames, lambda n: f"{n:,.0f} video frames",
          "Send fewer videos, lower the frames per video or the frame budget, " + NEW_CHAT),
    Check(Budget.tokens, lambda use: use.tokens, lambda n: f"about {n:,.0f} tokens of media",
          "Send fewer or shorter attachments, lower the image budget, " + NEW_CHAT),
    Check(Budget.memory, lambda use: use.bytes, lambda n: f"about {_size(n)} of decoded media",
          "Send fewer or smaller attachments, lower the image budget, " + NEW_CHAT),
)


def require_within(budget: Budget, conversation: MediaUse, message: MediaUse) -> None:
    """Refuse a request over any limit, naming what the conversation and this message hold."""
    for check in CHECKS:
        limit, used = check.limit(budget), check.used(conversation)
        if used > limit.most:
            raise InvalidInputError(_refusal(check, used, check.used(message), limit))


def require_decoded(budget: Budget, seconds: float, name: str) -> None:
    """For audio whose header said less than it holds: refuse once decoding passes the limit."""
    limit = budget.audio_seconds()
    if seconds > limit.most:
        raise InvalidInputError(
            f"{name} holds more audio than its header says: over {_duration(limit.most)} with the "
            f"conversation's other audio, the most one chat request may hold ({limit.why}). "
            "Nothing was generated. Re-export the recording, send a shorter one, " + NEW_CHAT
        )


def _refusal(check: Check, used: float, new: float, limit: Limit) -> str:
    if new >= used:
        held = f"This message holds {check.words(used)}"
    elif new:
        held = f"This conversation holds {check.words(used)} ({check.words(new)} in this message)"
    else:
        held = f"This conversation already holds {check.words(used)}"
    return (f"{held}, but one chat request may hold at most {check.words(limit.most)} ({limit.why}). Every turn sends "
            f"the whole conversation again. Nothing was decoded or generated. {check.advice}")


def _duration(seconds: float) -> str:
    whole = round(seconds)
    hours, minutes, rest = whole // 3600, whole // 60 % 60, whole % 60
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {rest} s" if minutes else f"{seconds:.1f} s"


def _size(count: float) -> str:
    return f"{count / 1024**3:.1f} GiB" if count >= 1024**3 else f"{count / MIB:,.0f} MiB"
