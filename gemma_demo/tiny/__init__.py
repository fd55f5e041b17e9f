"""Tiny random-weight Gemma 4 models built with the real classes, processor and prompt format.

No machine here reaches the Hugging Face Hub; tests and `--model tiny` use these. `family`
holds what every variant shares, `model` builds and caches them (`unified` the 12B),
`tokenizer` trains their small tokenizer, and the chat template file beside them renders
Gemma 4's prompt format. Imports nothing else of the app.
"""
