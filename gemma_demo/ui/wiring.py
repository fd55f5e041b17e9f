"""How a tab connects a button to its endpoint, apart from the page so that tabs in their own
modules (`chat`) and the page that lays them out (`layout`) both import it, not each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gradio as gr
from gradio.components import Component
from gradio.events import Dependency

from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.ui.endpoints import Endpoints, Handler

# Every event that runs the model shares one queue, so a few people stream at once
# and the rest wait their turn instead of crowding the GPU.
MODEL_QUEUE = "model"
MODEL_CONCURRENCY = 4


@dataclass(frozen=True)
class Wiring:
    """Connects buttons to endpoints; every run also takes the shared settings as inputs."""

    endpoints: Endpoints
    settings: Sequence[Component]

    def run(
        self,
        button: gr.Button,
        handler: Handler,
        defaults: GenerationSettings,
        io: tuple[Sequence[Component], Sequence[Component]],
        api_name: str,
    ) -> Dependency:
        inputs, outputs = io
        return button.click(
            self.endpoints.wrap(handler, defaults, api_name),
            inputs=[*inputs, *self.settings],
            outputs=list(outputs),
            api_name=api_name,
            concurrency_id=MODEL_QUEUE,
            concurrency_limit=MODEL_CONCURRENCY,
        )
