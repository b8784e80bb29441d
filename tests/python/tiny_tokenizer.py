#!/usr/bin/env python3
"""Builds a small byte-level BPE tokenizer offline with `tokenizers` itself (no download).

    tiny_tokenizer.py OUT_DIR [--vocab-size N] [--pair] [TEXT_OR_JSONL ...]

Trained on the given files (JSONL lines contribute their "prompt", "question", "problem" and
"completion" strings, other files their lines) plus fixed sentences; writes OUT_DIR/tokenizer.json,
or with --pair the GPT-2 style OUT_DIR/vocab.json and merges.txt. Special tokens: <|pad|> (id 0)
and <|endoftext|> (id 1).
"""
import argparse
import json
import os
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BASE_TEXT = [
    "The number of adult lions in Bundle Zoo equals 3 plus the number of adult owls in Hamilton.",
    "What is the average number of newborn children per adult bear in Jefferson?\nAnswer: 17",
    "Ünïcödé, emoji 🦉 and tabs\tare bytes too.",
]


def texts_of(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if path.endswith(".jsonl") and line.strip():
                obj = json.loads(line)
                for key in ("prompt", "question", "problem", "completion"):
                    if isinstance(obj.get(key), str):
                        yield obj[key]
            elif line:
                yield line


def build(out_dir, vocab_size=400, pair=False, files=()):
    texts = list(BASE_TEXT)
    for path in files:
        texts += list(texts_of(path))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|pad|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    os.makedirs(out_dir, exist_ok=True)
    if pair:
        tok.model.save(out_dir)  # vocab.json and merges.txt
    else:
        tok.save(os.path.join(out_dir, "tokenizer.json"))
    return tok


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out_dir")
    p.add_argument("--vocab-size", type=int, default=400)
    p.add_argument("--pair", action="store_true")
    p.add_argument("files", nargs="*")
    a = p.parse_args()
    build(a.out_dir, a.vocab_size, a.pair, a.files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
