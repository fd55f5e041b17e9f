"""Errors the app shows to people.

Domain code raises these; only the UI turns them into `gr.Error` and only the CLI
turns them into an exit status. Each message says what went wrong and what to do.
"""


class GemmaDemoError(Exception):
    """Base class: the message is meant for the person using the app."""


class InvalidInputError(GemmaDemoError):
    """The uploaded file or the prompt cannot be used."""


class CapabilityError(GemmaDemoError):
    """The selected model cannot do this (e.g. audio on 26B-A4B or 31B)."""


class ModelUnavailableError(GemmaDemoError):
    """The model's weights cannot be loaded (no network, no cache, broken folder)."""


class GenerationError(GemmaDemoError):
    """Generation failed part-way (out of memory, a server error, a crash in the model)."""
