"""What every task result shares: the model's latest update, its answer text and whether it is the last."""

from dataclasses import dataclass

from gemma_demo.engine.base import Update


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
