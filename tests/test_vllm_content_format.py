"""vLLM reads every tiny model's chat template as it reads Google's: content is a list of parts.

vLLM decides from a template's *source* whether message content reaches it as one string or as
OpenAI-style parts ("openai"). With "string", every picture and audio request to a stock
`vllm serve` fails with "Failed to apply prompt replacement"; users of the real models never
pass `--chat-template-content-format`, so the tiny models must not need it either. The question
goes to vLLM's own detector in the venv `vllm_server` builds (vLLM cannot be imported beside the
app), so a change in vLLM's heuristics shows here rather than as HTTP 500s.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gemma_demo.tiny.model import TinyVariant, build_processor
from gemma_demo.tiny.unified import build_unified_processor

pytestmark = pytest.mark.timeout(1200)  # a fresh machine builds the venv first (3–4 min)

# vLLM 0.32 keeps its detector in vllm/renderers/hf.py; "undecided" is what it returns when it
# cannot parse a template, so a parse error is not mistaken for either answer.
DETECT = """\
import json, sys
from vllm.renderers.hf import _detect_content_format
templates = json.load(sys.stdin)
print(json.dumps({name: _detect_content_format(text, default="undecided") for name, text in templates.items()}))
"""
FAMILIES = ("tiny", "tiny-moe", "tiny-dense", "tiny-unified")
# A template that only ever prints content whole: the detector must call it "string", or an
# answer of "openai" for the tiny families would prove nothing.
STRING_ONLY = "{% for message in messages %}{{ message['role'] ~ message['content'] }}{% endfor %}"


def family_templates() -> dict[str, str]:
    """The template each tiny family's checkpoint carries, as vLLM loads it from the folder."""
    return {
        "tiny": build_processor(TinyVariant.E2B).chat_template,
        "tiny-moe": build_processor(TinyVariant.MOE).chat_template,
        "tiny-dense": build_processor(TinyVariant.DENSE).chat_template,
        "tiny-unified": build_unified_processor().chat_template,
    }


@pytest.fixture(scope="module")
def detected(vllm_python) -> dict[str, str]:
    return ask_vllm(vllm_python, {**family_templates(), "string-only": STRING_ONLY})


def ask_vllm(python: Path, templates: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run([str(python), "-c", DETECT], input=json.dumps(templates), env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"vLLM's detector failed:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])  # vLLM may log to stdout first


def test_the_detector_tells_a_string_template_apart(detected):
    assert detected["string-only"] == "string"


@pytest.mark.parametrize("family", FAMILIES)
def test_vllm_passes_content_as_parts_to_each_tiny_family(detected, family):
    assert detected[family] == "openai"
