"""The Gemma 4 checkpoints the app knows, and what each can do.

Anything else (a local folder or another Hub id) is accepted too; its capabilities are
read from its config, so a fine-tune of E4B keeps its audio input.
"""

from __future__ import annotations

from dataclasses import dataclass

TINY_PREFIX = "tiny"


@dataclass(frozen=True)
class ModelCapabilities:
    audio: bool
    context_tokens: int


@dataclass(frozen=True)
class ModelSpec:
    label: str
    repo_id: str
    capabilities: ModelCapabilities
    description: str

    @property
    def qat_repo_id(self) -> str:
        """Google's quantization-aware-trained weights (2026-06-05), stored in half precision.

        Trained against 4-bit rounding (Q4_0), they lose less than the plain weights when
        `--quantize int4` rounds them.
        """
        return f"{self.repo_id}-qat-q4_0-unquantized"


SMALL = ModelCapabilities(audio=True, context_tokens=131_072)
LARGE = ModelCapabilities(audio=False, context_tokens=262_144)
UNIFIED = ModelCapabilities(audio=True, context_tokens=262_144)

KNOWN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("E2B", "google/gemma-4-E2B-it", SMALL, "2B effective, audio, runs on a laptop"),
    ModelSpec("E4B", "google/gemma-4-E4B-it", SMALL, "4B effective, audio"),
    ModelSpec("12B", "google/gemma-4-12B-it", UNIFIED, "encoder-free, audio, 256K context"),
    ModelSpec("26B-A4B", "google/gemma-4-26B-A4B-it", LARGE, "mixture of experts, 4B active"),
    ModelSpec("31B", "google/gemma-4-31B-it", LARGE, "dense, strongest"),
)
DEFAULT_MODEL = KNOWN_MODELS[0].repo_id
TINY_MODELS = ("tiny", "tiny-moe", "tiny-dense", "tiny-unified")
TINY_CAPABILITIES = {"e2b": SMALL, "moe": LARGE, "dense": LARGE, "unified": UNIFIED}


def find_known(name: str) -> ModelSpec | None:
    """The known checkpoint named by label or repo id (case-insensitive)."""
    wanted = name.strip().lower()
    return next(
        (s for s in KNOWN_MODELS if wanted in (s.label.lower(), s.repo_id.lower())), None
    )


def canonical_name(name: str) -> str:
    """One spelling per checkpoint: a known label (`E4B`) becomes its repo id, others stay as given."""
    spec = find_known(name)
    return spec.repo_id if spec is not None else name.strip()


def family() -> tuple[str, ...]:
    """Every checkpoint the app knows, for `--models all`: the real ones and the tiny ones."""
    return (*(spec.repo_id for spec in KNOWN_MODELS), *TINY_MODELS)


def is_tiny(name: str) -> bool:
    return name in TINY_MODELS


def tiny_variant(name: str) -> str:
    """`tiny` → e2b, `tiny-moe` → moe, `tiny-dense` → dense."""
    return name.split("-", 1)[1] if "-" in name else "e2b"


def capabilities_from_config(config) -> ModelCapabilities:
    """Capabilities of any Gemma 4 checkpoint, read from its loaded config."""
    text = getattr(config, "text_config", config)
    return ModelCapabilities(
        audio=getattr(config, "audio_config", None) is not None,
        context_tokens=int(getattr(text, "max_position_embeddings", SMALL.context_tokens)),
    )


def capabilities_for_name(name: str) -> ModelCapabilities:
    """Best guess from a name alone (remote servers), before any config is read."""
    if is_tiny(name):
        return TINY_CAPABILITIES[tiny_variant(name)]
    spec = find_known(name)
    if spec is not None:
        return spec.capabilities
    lowered = name.lower()
    if "12b" in lowered:
        return UNIFIED
    if any(tag in lowered for tag in ("26b", "31b", "a4b")):
        return LARGE
    return SMALL
