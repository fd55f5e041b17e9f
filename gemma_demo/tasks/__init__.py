"""One module per task, each shaped build messages -> run the backend -> parse -> render.

Every task function takes a `Backend` and its inputs, yields results while tokens stream
(the last one has `done=True`), and never touches Gradio: the UI and the CLI both call
these functions. Results are frozen dataclasses with `to_json()` for the CLI and API.

Shared pieces: `messages` builds the user turn, `result` the result base class,
`grounding` reads boxes and points. Tasks import `engine` and `media`, never `ui` or `cli`.
"""
