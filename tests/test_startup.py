"""The page must answer before torch and transformers would finish importing (P6 in
docs/benchmarks.md): the app's start imports neither; they load with the first model."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_starting_the_app_imports_neither_torch_nor_transformers():
    probe = "import sys, app; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stderr
