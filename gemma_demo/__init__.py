"""Gemma 4 Studio: Google's Gemma 4 models at work from a browser, a CLI and an API.

The layers, lowest first; a module imports only its own layer and those below it
(`tests/test_layers.py` keeps it so):

- `errors`: the errors people see.
- `media`: reading and writing pictures, sound, video, subtitles and drawings.
- `tiny`: the tiny random-weight Gemma 4 models that tests and the offline try-out use.
- `engine`: backends behind one `stream()` contract (local transformers, OpenAI-compatible
  server), loading, the shared model cache, settings and reasoning.
- `tasks`: one module per task: build messages, run the backend, parse, render.
- `config`: the app's and the CLI's flags.
- `ui` and `cli`: the Gradio app and the command line, each calling the tasks.
"""
