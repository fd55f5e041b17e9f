"""Gemma 4 Studio web app: `python app.py --model tiny` to try it offline, `--help` for options."""

import os

# OpenMP threads that spin while idle made a tiny answer take 4 s instead of 0.5 s on a busy
# 2-core CPU (docs/benchmarks.md); must be set before torch is imported. A user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from gemma_demo.config import parse_app_args  # noqa: E402
from gemma_demo.ui.server import launch  # noqa: E402

if __name__ == "__main__":
    launch(parse_app_args())
