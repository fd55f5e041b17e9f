"""Speculative decoding with Google's assistant models, through transformers' assisted generation.

Each Gemma 4 checkpoint has a published draft model (`google/gemma-4-e2b-it-assistant` for
E2B, and so on: `Gemma4AssistantForCausalLM`, `Gemma4UnifiedAssistantForCausalLM` for the
12B). It reads the target's last hidden state and stored keys and values and proposes a
few tokens that the target then checks in one step; `generate(assistant_model=...)` does
all of it, losslessly, and this module only chooses when to ask for it and counts.

transformers drafts for one row at a time, so a request drafts only when it runs alone;
when requests share a batch (several users at once, where batching pays more) they run
without the drafter and their stats say so. Inputs transformers refuses to draft for run
again without it, and say that too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.registry import find_known, is_tiny
from gemma_demo.errors import ModelUnavailableError

log = logging.getLogger(__name__)

DRAFT_AUTO = "auto"
DRAFT_OFF = "off"
ASSISTANT_SUFFIX = "-assistant"


@dataclass(frozen=True)
class Drafter:
    """A loaded assistant model and the name the stats line gives it."""

    model: Any
    name: str

    @property
    def tokens_per_round(self) -> int:
        return int(self.model.generation_config.num_assistant_tokens)


@dataclass
class DraftRecord:
    """One request's drafting: who drafted, how many tokens were proposed and accepted, or why none."""

    drafter: Drafter | None
    drafting: bool = False  # whether the current `generate` call drafts for this request
    proposed: int = 0
    accepted: int = 0
    note: str = ""

    def round(self, emitted: int, budget_left: int, first: bool) -> None:
        """Count one verification step that gave `emitted` tokens with `budget_left` still allowed before it.

        Mirrors transformers' drafting round: none on the prefill step, then up to
        `tokens_per_round` proposals, fewer near the token limit; every emitted token but
        the target's own last one is an accepted draft.
        """
        if not self.drafting or first:
            return
        self.proposed += max(0, min(self.drafter.tokens_per_round, budget_left - 1))
        self.accepted += emitted - 1

    def stats(self) -> dict[str, Any]:
        """The `Stats` fields: the drafter's name, or why none drafted, and the counts."""
        if self.note or self.drafter is None:
            return {"drafter": self.note}
        return {"drafter": self.drafter.name, "draft_proposed": self.proposed, "draft_accepted": self.accepted}


def draft_record(drafter: Drafter | None, missing_note: str, constrained: bool) -> DraftRecord:
    """A new request's drafting: none for answers held to a grammar, whose masks follow one token at a time."""
    if drafter is None:
        return DraftRecord(None, note=missing_note)
    if constrained:
        return DraftRecord(None, note="drafter off: the answer follows a grammar")
    return DraftRecord(drafter)


def assistant_source(name: str, source: str, options: LoadOptions) -> str | None:
    """Where the drafter for model `name` (loaded from `source`) lives, or None for no drafter."""
    choice = options.draft.strip()
    if choice.lower() == DRAFT_OFF:
        return None
    if choice.lower() != DRAFT_AUTO:
        folder = Path(choice).expanduser()
        return str(folder) if folder.exists() else choice
    if is_tiny(name):
        from gemma_demo.tiny.assistant import ensure_assistant

        return str(ensure_assistant(Path(source)))
    spec = find_known(name)
    return None if spec is None else spec.repo_id.lower() + ASSISTANT_SUFFIX


def load_drafter(name: str, source: str, options: LoadOptions, **load_kwargs) -> tuple[Drafter | None, str]:
    """The drafter for `name` and a note for the stats line when there is none.

    With `auto` a missing assistant only means no drafting; a drafter the person named
    must load, or loading fails with the reason.
    """
    assistant = assistant_source(name, source, options)
    if assistant is None:
        return None, ""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(assistant, **load_kwargs).eval()
    except Exception as error:  # noqa: BLE001 - any failure means "no drafter" under auto
        if options.draft.strip().lower() == DRAFT_AUTO:
            log.info("No drafter for %s: %s could not be loaded (%s)", name, assistant, error)
            return None, f"no drafter ({assistant} not available)"
        raise ModelUnavailableError(
            f"Could not load the draft model {assistant}: {type(error).__name__}: {error}. "
            "Name a Gemma 4 assistant checkpoint (a folder or Hub id), or use --draft auto or off."
        ) from error
    label = "tiny assistant" if is_tiny(name) else Path(assistant).name
    return Drafter(model, label), ""


def drafting_kwargs(records: list[DraftRecord]) -> dict[str, Any]:
    """`assistant_model=` when the batch is one request with a drafter; else note why not."""
    for record in records:
        record.drafting = False
    if len(records) == 1 and records[0].drafter is not None:
        records[0].drafting = True
        return {"assistant_model": records[0].drafter.model}
    for record in records:
        if record.drafter is not None:
            record.note = "drafter off: batched with other requests"
    return {}


def generate_drafting(call: Callable[..., None], records: list[DraftRecord], started: Callable[[], bool]) -> None:
    """Run `call(**drafting_kwargs)`; if transformers refuses to draft before any token, run it again without."""
    extra = drafting_kwargs(records)
    if not extra:
        call()
        return
    try:
        call(**extra)
    except ValueError as error:
        if started():
            raise
        records[0].drafting = False
        records[0].note = f"drafter off: {error}"
        call()
