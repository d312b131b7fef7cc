"""The offline-built CLIP tokenizer."""

from __future__ import annotations

from transformers import CLIPTokenizer

from generators.sandbox.dataset import VOCABULARY
from generators.sandbox.tokenizer import MODEL_MAX_LENGTH, build_tokenizer


def test_every_vocabulary_word_is_one_token(tmp_path):
    build_tokenizer(tmp_path)
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path)
    assert tokenizer.model_max_length == MODEL_MAX_LENGTH
    for word in VOCABULARY:
        assert tokenizer.tokenize(word) == [word + "</w>"]
    ids = tokenizer("a large red circle", padding="max_length", max_length=MODEL_MAX_LENGTH).input_ids
    assert len(ids) == MODEL_MAX_LENGTH
    assert ids[0] == tokenizer.bos_token_id and ids[5] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in tokenizer("a pink dog").input_ids[1:-1]
