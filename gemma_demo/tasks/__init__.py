"""One module per task, each shaped build messages -> run the backend -> parse -> render.

Every task function takes a `Backend` and its inputs, yields results while tokens stream
(the last one has `done=True`), and never touches Gradio: the UI and the CLI both call
these functions. Results are frozen dataclasses with `to_json()` for the CLI and API.
"""

from dataclasses import dataclass

from gemma_demo.engine import Update


@dataclass(frozen=True)
class StreamedResult:
    """What every task result shares: the model's latest update."""

    update: Update

    @property
    def text(self) -> str:
        return self.update.answer

    @property
    def done(self) -> bool:
        return self.update.done
