"""Gemma 4 Studio web app: `python app.py --model tiny` to try it offline, `--help` for options."""

from gemma_demo.app_config import parse_app_args
from gemma_demo.server import launch

if __name__ == "__main__":
    launch(parse_app_args())
