#!/usr/bin/env python3
"""Text -> the token-id files of `hypnos score`, `hypnos sleep --context` and `hypnos answer --question`.

    .venv/bin/python scripts/tokenize_text.py --tokenizer MODEL_DIR [--lines] [--bos ID] TEXT_FILE [-o OUT]

Tokenises TEXT_FILE (UTF-8) with the model's own tokenizer (Hugging Face `tokenizers`, from
tokenizer.json or vocab.json + merges.txt in MODEL_DIR, as scripts/tokenize_gsm.py reads it) and
writes the ids separated by spaces: the whole file as one sequence (one line), or with --lines each
non-empty line as its own sequence (one line each; hypnos needs a batch's sequences to be of equal
length). No special tokens are added unless --bos names one. `hypnos answer` prints its answer as
text through the same tokenizer.

    .venv/bin/python scripts/tokenize_text.py --tokenizer MODEL_DIR document.txt -o context.ids
    .venv/bin/python scripts/tokenize_text.py --tokenizer MODEL_DIR question.txt -o question.ids
    build/hypnos sleep MODEL_DIR --context context.ids --out memory.safetensors
    build/hypnos answer MODEL_DIR --memory memory.safetensors --question question.ids --max-new 8
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenize_gsm import InputError, load_tokenizer  # noqa: E402


def token_lines(model_dir, text, per_line=False, bos=None):
    """The id lines for `text`: one for the whole text, or one per non-empty line."""
    tok = load_tokenizer(model_dir)
    pieces = [line for line in text.splitlines() if line.strip()] if per_line else [text]
    lines = []
    for piece in pieces:
        ids = tok.encode(piece, add_special_tokens=False).ids
        if bos is not None:
            ids = [bos] + ids
        if not ids:
            raise InputError("the text has no tokens" + (f": {piece!r}" if per_line else ""))
        lines.append(" ".join(map(str, ids)))
    if not lines:
        raise InputError("the text has no non-empty line")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True, help="model folder (tokenizer.json, or vocab.json + merges.txt)")
    ap.add_argument("--lines", action="store_true", help="one sequence per non-empty line (default: the whole file)")
    ap.add_argument("--bos", type=int, default=None, help="token id put before every sequence (default: none)")
    ap.add_argument("-o", "--out", default="-", help="output file (default: standard output)")
    ap.add_argument("text", help="UTF-8 text file")
    args = ap.parse_args(argv)
    try:
        try:
            with open(args.text, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"{args.text}: {e}")
        lines = token_lines(args.tokenizer, text, args.lines, args.bos)
    except InputError as e:
        print(f"tokenize_text: {e}", file=sys.stderr)
        return 2
    if args.out == "-":
        sys.stdout.write("\n".join(lines) + "\n")
    else:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
