"""Build a CLIP byte-level BPE tokenizer offline from the caption vocabulary."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from transformers import CLIPTokenizer

from .dataset import VOCABULARY

MODEL_MAX_LENGTH = 16
BOS_TOKEN = "<|startoftext|>"  # noqa: S105 (not a secret)
EOS_TOKEN = "<|endoftext|>"  # noqa: S105
END_OF_WORD = "</w>"


def byte_alphabet() -> list[str]:
    """The 256 printable characters GPT-2/CLIP byte-level BPE uses for raw bytes, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return [mapping[b] for b in range(256)]


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Plain BPE training until every word is one token; ties are broken lexicographically."""
    segmented = {w: [*w[:-1], w[-1] + END_OF_WORD] for w in sorted(set(words))}
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter(p for parts in segmented.values() for p in zip(parts, parts[1:], strict=False))
        if not pairs:
            return merges
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for word, parts in segmented.items():
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            segmented[word] = merged


def build_tokenizer(out_dir: str | Path, words: tuple[str, ...] = VOCABULARY) -> CLIPTokenizer:
    """Write vocab.json/merges.txt for ``words``, then save a loadable CLIPTokenizer in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    alphabet = byte_alphabet()
    merges = learn_merges(list(words))
    tokens = alphabet + [c + END_OF_WORD for c in alphabet] + ["".join(m) for m in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (out / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(out, model_max_length=MODEL_MAX_LENGTH)
    tokenizer.save_pretrained(out)
    return tokenizer
