"""The command line: `main` parses and runs, `commands` is the task table, `types` what a command is.

Imports `tasks`, `engine`, `media` and `config`; never `ui`.
"""
