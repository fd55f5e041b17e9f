import pytest

from gemma_demo.engine.reasoning import split_reasoning

CASES = [
    ("A cat.<turn|>", "", "A cat."),
    ("<|channel>thought\n<channel|>A cat.<turn|>", "", "A cat."),
    ("<|channel>thought\nIt has whiskers.<channel|>A cat.", "It has whiskers.", "A cat."),
    ("<|channel>thought\nStill think", "Still think", ""),
    ("<|channel>thou", "", ""),
    ("Done<turn|>\n<|turn>user\nmore", "", "Done"),
    ("stray <|image|>tokens<eos>", "", "stray tokens"),
]


@pytest.mark.parametrize(("raw", "reasoning", "answer"), CASES)
def test_split_reasoning(raw, reasoning, answer):
    split = split_reasoning(raw)
    assert (split.reasoning, split.answer) == (reasoning, answer)
