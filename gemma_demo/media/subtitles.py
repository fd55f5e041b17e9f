"""Transcripts as SRT, WebVTT or plain text files.

Players are strict about cue syntax, so times are rounded in integer
milliseconds (never `00:00:60,000`) and text that could be read as cue syntax
is neutralised.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

MS_PER_SECOND = 1000
MS_PER_MINUTE = 60 * MS_PER_SECOND
MS_PER_HOUR = 60 * MS_PER_MINUTE
ARROW = re.compile(r"-{2,}>")
BLANK_LINES = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Cue:
    """A span of the recording in seconds and what was said in it."""

    start: float
    end: float
    text: str

    def __post_init__(self) -> None:
        finite = math.isfinite(self.start) and math.isfinite(self.end)
        if not finite or self.end < self.start:
            raise ValueError(f"A cue needs finite times and end >= start: {self.start}..{self.end}")


def _milliseconds(seconds: float) -> int:
    """Round half up on the decimal value as written: 59.9995 s is 60.000 s, whatever the float."""
    if not math.isfinite(seconds):
        raise ValueError(f"Cannot format a timestamp of {seconds} seconds")
    written = Decimal(str(max(float(seconds), 0.0)))
    return int(written.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP) * MS_PER_SECOND)


def format_timestamp(seconds: float, sep: str = ",") -> str:
    """`HH:MM:SS,mmm` for SRT; pass `sep="."` for WebVTT. Negative times become zero."""
    total = _milliseconds(seconds)
    hours, rest = divmod(total, MS_PER_HOUR)
    minutes, rest = divmod(rest, MS_PER_MINUTE)
    secs, millis = divmod(rest, MS_PER_SECOND)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def _cue_text(text: str) -> str:
    """Text safe inside a cue: no blank line (it ends a cue) and no `-->` (it starts one)."""
    return ARROW.sub("->", BLANK_LINES.sub("\n", text.strip()))


def _spoken(cues: Iterable[Cue]) -> list[Cue]:
    return [cue for cue in cues if cue.text.strip()]


def to_srt(cues: Iterable[Cue]) -> str:
    blocks = [
        f"{number}\n{format_timestamp(cue.start)} --> {format_timestamp(cue.end)}\n"
        f"{_cue_text(cue.text)}\n"
        for number, cue in enumerate(_spoken(cues), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(cues: Iterable[Cue]) -> str:
    """WebVTT also reads `<` and `&` as markup, so they are escaped."""
    blocks = [
        f"{format_timestamp(cue.start, '.')} --> {format_timestamp(cue.end, '.')}\n"
        f"{_vtt_escape(_cue_text(cue.text))}\n"
        for cue in _spoken(cues)
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_txt(cues: Iterable[Cue], timestamps: bool = True) -> str:
    """One `[mm:ss] text` line per cue (`[h:mm:ss]` past an hour), or the bare text.

    Times are truncated to the second so a line never claims to start after its words.
    """
    spoken = _spoken(cues)
    if not timestamps:
        return " ".join(" ".join(cue.text.split()) for cue in spoken)
    return "".join(f"[{_clock(cue.start)}] {' '.join(cue.text.split())}\n" for cue in spoken)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(_milliseconds(seconds) // MS_PER_SECOND, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
