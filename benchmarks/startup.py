"""P6: the app's page answers little later than a bare Gradio app's would.

A person running `python app.py` waits for the page. Any Gradio app pays for importing
gradio and starting its server, so the floor is a bare Gradio app (one `gr.Blocks` with a
textbox) launched the same way, in its own process, until its page answers. The model
loads on the first request, so it is not part of this.

`python -m benchmarks.startup` runs this group alone.
"""

from __future__ import annotations

import sys

from benchmarks.common import Row, Target, not_measured, paired, seconds, spread
from benchmarks.server import APP, running_app, running_server

TARGET = Target(1.5)
# The same launch as `ui/server.py` uses for the app (a port and 127.0.0.1), nothing else.
BARE_APP = """
import argparse
import gradio as gr
parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int)
with gr.Blocks() as demo:
    gr.Textbox()
demo.launch(server_name="127.0.0.1", server_port=parser.parse_args().port, quiet=True)
"""


def app_ready_seconds() -> float:
    with running_app("tiny") as (_, elapsed):
        return elapsed


def bare_ready_seconds() -> float:
    with running_server(["-c", BARE_APP]) as (_, elapsed):
        return elapsed


def run(quick: bool = False, reps: int = 5) -> list[Row]:
    what = "`python app.py --model tiny` until / answers 200 vs a bare `gr.Blocks` app with a textbox, launched the same way"
    if not APP.exists():
        return [not_measured("P6", what, TARGET, "app.py is missing")]
    # Each run is a fresh process anyway; a warm-up pair only rewarms the page cache.
    result = paired(app_ready_seconds, bare_ready_seconds, reps, warmup=0 if quick else 1)
    return [Row("P6", what, seconds(result.a_median), seconds(result.b_median), result.ratio, TARGET,
                spread(result))]


if __name__ == "__main__":
    from benchmarks.report import print_rows

    print_rows(run(quick="--quick" in sys.argv))
