"""Media in and out: load and normalise pictures, audio and video, cut long audio, write
subtitles, draw boxes, name files, and the small time facts they share (`timing`).

Imports only `errors` (and third-party libraries); knows nothing of models or tasks.
"""
