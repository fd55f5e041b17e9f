"""A small BPE tokenizer trained locally that carries every real Gemma 4 special token.

Real checkpoints cannot be downloaded here, so the tiny model needs a tokenizer of its
own. It is trained with the `tokenizers` library on a generated corpus and wrapped in
`GemmaTokenizer`, so the processor sees the same class, normaliser, byte fallback and
named special tokens (`image_token`, `boa_token`, …) as with `google/gemma-4-*-it`.
"""

from __future__ import annotations

import json
import random

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import GemmaTokenizer

BASE_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")

# Named the way the real tokenizer_config.json names them; Gemma4Processor reads these attributes.
NAMED_SPECIAL_TOKENS = {
    "sot_token": "<|turn>",
    "eot_token": "<turn|>",
    "boi_token": "<|image>",
    "image_token": "<|image|>",
    "eoi_token": "<image|>",
    "boa_token": "<|audio>",
    "audio_token": "<|audio|>",
    "eoa_token": "<audio|>",
    "soc_token": "<|channel>",
    "eoc_token": "<channel|>",
    "think_token": "<|think|>",
    "std_token": "<|tool>",
    "etd_token": "<tool|>",
    "stc_token": "<|tool_call>",
    "etc_token": "<tool_call|>",
    "str_token": "<|tool_response>",
    "etr_token": "<tool_response|>",
    "escape_token": '<|"|>',
}
VIDEO_TOKEN = "<|video|>"
SPECIAL_TOKENS = (*BASE_TOKENS, *NAMED_SPECIAL_TOKENS.values(), VIDEO_TOKEN)
BYTE_TOKENS = tuple(f"<0x{i:02X}>" for i in range(256))

DEFAULT_VOCAB_SIZE = 1024
_WORDS = (
    "the a an of to in and is on with for at by from this that image picture photo cat dog "
    "person car tree sky house table chair cup coffee rocket astronaut page text title list "
    "box point label json answer question describe caption detect transcribe translate audio "
    "speech video frame second minute there are here what where which how many one two three "
    "red green blue white black small large left right top bottom center model user system "
    "thought html body div style script head title markdown table row column English French "
    "German Spanish Japanese hello world yes no it they we you can see shows showing"
).split()
_SYMBOLS = list('{}[]()<>:;,."\'`#*-_=+/\\|!?%&@$^~\n') + [f"{n}" for n in range(0, 1001, 7)]


def _corpus(lines: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = _WORDS + _SYMBOLS
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(4, 24))) for _ in range(lines)]


def _train_bpe(vocab_size: int, seed: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train BPE merges with the same normaliser and pre-tokeniser GemmaTokenizer uses."""
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    bpe.normalizer = normalizers.Replace(" ", "▁")
    bpe.pre_tokenizer = pre_tokenizers.Split(pattern="▁", behavior="merged_with_next")
    reserved = list(SPECIAL_TOKENS) + list(BYTE_TOKENS)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=reserved, show_progress=False, min_frequency=2
    )
    bpe.train_from_iterator(_corpus(2000, seed), trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    return model["vocab"], [tuple(merge) for merge in model["merges"]]


def build_tokenizer(vocab_size: int = DEFAULT_VOCAB_SIZE, seed: int = 0) -> GemmaTokenizer:
    """A deterministic GemmaTokenizer whose special tokens keep their real names."""
    vocab, merges = _train_bpe(vocab_size, seed)
    tokenizer = GemmaTokenizer(
        vocab=vocab,
        merges=merges,
        extra_special_tokens={**NAMED_SPECIAL_TOKENS},
        add_bos_token=False,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [*NAMED_SPECIAL_TOKENS.values(), VIDEO_TOKEN]},
        replace_extra_special_tokens=False,
    )
    return tokenizer
