"""Small facts about time in media, defined once: Gemma 4's audio rate and clip limit, `mm:ss` stamps."""

SAMPLE_RATE = 16_000  # the audio feature extractor's rate; every clip is resampled to it
MAX_CLIP_SECONDS = 30.0  # the processor cuts longer audio silently (750 tokens), so we split first
SECONDS_PER_MINUTE = 60


def mm_ss(seconds: float) -> str:
    """`mm:ss` of whole seconds, the stamp Gemma 4's processor writes before each video frame."""
    minutes, secs = divmod(int(seconds), SECONDS_PER_MINUTE)
    return f"{minutes:02d}:{secs:02d}"
