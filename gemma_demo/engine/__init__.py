"""Running Gemma 4: every backend meets the `Backend` contract of `base` (`stream(messages,
settings)` yields `Update`s), so tasks never know where the model runs.

`local` runs transformers in this process (with `batching` and `cpu_decode`), `remote` an
OpenAI-compatible server; `loading` and `cache` load one shared model lazily; `registry`
knows the family's checkpoints; `settings`, `options` and `reasoning` are the data they share.
Imports `errors`, `media` and `tiny`; never `tasks`, `ui` or `cli`.
"""
