"""Speculative decoding through transformers' assisted generation, with the tiny assistants.

Assisted generation is lossless: with greedy decoding the model keeps only the drafts it
would have written itself, so the answer with a drafter must equal the answer without.
The tiny assistant copies its target's head, so some of its drafts are right and the
accepted counter has something to count.
"""

import numpy as np
import pytest
from PIL import Image

from gemma_demo.config import parse_app_args
from gemma_demo.engine.base import Stats, last_update
from gemma_demo.engine.batching.generate import run_generate
from gemma_demo.engine.batching.requests import END, Batch, Request
from gemma_demo.engine.cache import ModelCache
from gemma_demo.engine.drafting import DraftRecord, draft_record
from gemma_demo.engine.local import _generation_kwargs, build_inputs
from gemma_demo.engine.options import LoadOptions
from gemma_demo.engine.settings import GenerationSettings
from gemma_demo.errors import ModelUnavailableError

GREEDY = GenerationSettings(max_new_tokens=48)
PROMPTS = {
    "text": [{"role": "user", "content": [{"type": "text", "text": "Hi there."}]}],
    "image": [{"role": "user", "content": [
        {"type": "image", "image": Image.new("RGB", (64, 64), "red")}, {"type": "text", "text": "What?"}]}],
    "audio": [{"role": "user", "content": [
        {"type": "audio", "audio": np.sin(np.arange(32_000) / 10).astype(np.float32)},
        {"type": "text", "text": "What?"}]}],
}


@pytest.fixture(scope="module", params=["tiny", "tiny-unified"])
def pair(request, tiny_root):
    """The same tiny model loaded without and with its tiny assistant."""
    plain = ModelCache().get(request.param, LoadOptions(tiny_root=tiny_root))
    drafting = ModelCache().get(request.param, LoadOptions(tiny_root=tiny_root, draft="auto"))
    return plain, drafting


def test_auto_finds_the_matching_assistant(pair):
    plain, drafting = pair
    assert plain.drafter is None and drafting.drafter is not None
    expected = "Gemma4UnifiedAssistantForCausalLM" if plain.name == "tiny-unified" else "Gemma4AssistantForCausalLM"
    assert type(drafting.drafter.model).__name__ == expected


def test_drafting_is_lossless_and_counts_accepted_drafts(pair):
    plain, drafting = pair
    accepted = 0
    for name, messages in PROMPTS.items():
        without = last_update(plain.stream(messages, GREEDY))
        with_drafter = last_update(drafting.stream(messages, GREEDY))
        assert with_drafter.answer == without.answer, name
        assert with_drafter.stats.new_tokens == without.stats.new_tokens, name
        stats = with_drafter.stats
        assert stats.drafter == "tiny assistant" and 0 <= stats.draft_accepted <= stats.draft_proposed, name
        assert stats.draft_proposed > 0 and not without.stats.draft_proposed, name
        accepted += stats.draft_accepted
    assert accepted > 0


def _request(backend, messages) -> Request:
    inputs = build_inputs(backend.processor, messages, GREEDY)
    ends = frozenset(backend.model.generation_config.eos_token_id)
    request = Request(inputs, _generation_kwargs(GREEDY), GREEDY.max_new_tokens, ends)
    request.draft = draft_record(backend.drafter, "", constrained=False)
    return request


def _drain(request: Request) -> list[int]:
    ids = []
    while (item := request.tokens.get(timeout=30)) is not END:
        assert not isinstance(item, BaseException), item
        ids.append(item)
    return ids


def test_batched_rows_run_without_the_drafter_and_say_so(pair):
    _, drafting = pair
    rows = [_request(drafting, PROMPTS["text"]), _request(drafting, PROMPTS["text"])]
    run_generate(drafting.model, Batch(rows), drafting.processor.tokenizer.pad_token_id)
    assert [len(_drain(r)) for r in rows] == [GREEDY.max_new_tokens] * 2
    for row in rows:
        assert row.draft.stats() == {"drafter": "drafter off: batched with other requests"}


def test_inputs_transformers_refuses_run_again_without_the_drafter(pair, monkeypatch):
    plain, drafting = pair
    alone = _request(drafting, PROMPTS["text"])
    original = drafting.model.generate

    def refuse_drafting(*args, **kwargs):
        if "assistant_model" in kwargs:
            raise ValueError("assisted generate is only supported for batch_size = 1")
        return original(*args, **kwargs)

    monkeypatch.setattr(drafting.model, "generate", refuse_drafting)
    run_generate(drafting.model, Batch([alone]), drafting.processor.tokenizer.pad_token_id)
    assert len(_drain(alone)) == GREEDY.max_new_tokens
    assert alone.draft.stats()["drafter"].startswith("drafter off: assisted generate is only supported")


def test_stats_report_drafts_in_json_and_the_summary():
    stats = Stats(prompt_tokens=3, new_tokens=9, drafter="gemma-4-e2b-it-assistant", draft_proposed=8, draft_accepted=6)
    assert stats.to_json()["draft_accepted"] == 6 and stats.to_json()["draft_proposed"] == 8
    assert "drafts by gemma-4-e2b-it-assistant: 6/8 accepted (75%)" in stats.summary()


def test_a_round_counts_what_transformers_proposes():
    record = DraftRecord(drafter=type("D", (), {"tokens_per_round": 4})(), drafting=True)
    record.round(emitted=1, budget_left=10, first=True)  # prefill: no drafts yet
    record.round(emitted=3, budget_left=9, first=False)  # 4 proposed, 2 kept, plus the model's own
    record.round(emitted=1, budget_left=3, first=False)  # near the limit only 2 can be proposed
    assert (record.proposed, record.accepted) == (6, 2)


def test_draft_flag_and_a_missing_named_drafter(tiny_root, tmp_path):
    assert parse_app_args([], env={}).load.draft == "auto"
    assert parse_app_args(["--draft", "off"], env={}).load.draft == "off"
    assert parse_app_args([], env={"GEMMA_DEMO_DRAFT": "/models/assistant"}).load.draft == "/models/assistant"
    with pytest.raises(ModelUnavailableError, match="Could not load the draft model"):
        ModelCache().get("tiny", LoadOptions(tiny_root=tiny_root, draft=str(tmp_path)))
