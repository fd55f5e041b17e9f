import pytest

from gemma_demo.engine.reasoning import split_reasoning

CASES = [
    ("A cat.<turn|>", "", "A cat.", True),
    ("<|channel>thought\n<channel|>A cat.<turn|>", "", "A cat.", True),
    ("<|channel>thought\nIt has whiskers.<channel|>A cat.", "It has whiskers.", "A cat.", True),
    ("<|channel>thought\nStill think", "Still think", "", False),
    ("<|channel>thou", "", "", False),
    ("Done<turn|>\n<|turn>user\nmore", "", "Done", True),
    ("stray <|image|>tokens<eos>", "", "stray tokens", True),
]


@pytest.mark.parametrize(("raw", "reasoning", "answer", "finished"), CASES)
def test_split_reasoning(raw, reasoning, answer, finished):
    split = split_reasoning(raw)
    assert (split.reasoning, split.answer, split.thinking_finished) == (reasoning, answer, finished)
