"""Benchmarks of Gemma 4 Studio: `python -m benchmarks.run_all [--quick]`, results in docs/benchmarks.md.

Set here, before anything imports torch, and inherited by every process the benchmarks
start (the app included): no network, no telemetry, and `OMP_WAIT_POLICY=PASSIVE`. With
libgomp's default spin-waiting, torch on a 2-core machine shared with other work ran
the same tiny-model answer in 0.5 s or in 6 s depending on what else ran (experiment X3),
which would drown every ratio here in noise. An explicit `OMP_WAIT_POLICY` is kept.
"""

import os

for _name, _value in {"OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                      "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(_name, _value)
