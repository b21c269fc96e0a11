"""A word-level Hugging Face tokenizer over a world's vocabulary (fast, so it has offsets)."""

from __future__ import annotations

from collections.abc import Sequence

PAD, UNK = "[PAD]", "[UNK]"


def word_tokenizer(words: Sequence[str]):
    """`PreTrainedTokenizerFast` splitting on whitespace, one id per word; pad id 0, unk id 1."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD: 0, UNK: 1}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, unk_token=UNK,
                                   padding_side="right")
