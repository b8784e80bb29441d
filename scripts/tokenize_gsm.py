#!/usr/bin/env python3
"""GSM-Infinite problems -> a token file for a pretrained model (docs/tasks.md 3.5).

Reads JSONL problems, either hypnos's own text records (`hypnos generate gsm_infinite --text`:
"prompt" and "completion") or the official GSM-Infinite layout ("question", "problem",
"solution" ending "Answer: N.", "op", optionally "mode", "template", "d"), tokenises each problem
with the model's own tokenizer (Hugging Face `tokenizers`, from tokenizer.json or vocab.json +
merges.txt in the model folder) and writes

  NAME.tokens        the ids of every record back to back, little-endian uint32
  NAME.index.jsonl   a header line (format, n_records, n_tokens, tokenizer_sha256, pad_id, ...)
                     and one line per record: id, offset, length, answer_start, answer_length,
                     answer, op, mode, template, d

A record is prompt + completion; the answer span is the completion's tokens. Official records are
rendered as hypnos renders problems (tasks::gsm_prompt_text): question, newline, problem, newline,
"Answer:", then the completion " N". Answers that are not integers in 0..1000 are dropped and
counted, as tasks::read_gsm_official_jsonl does. hypnos checks tokenizer_sha256 against the model
folder's tokenizer before it reads a token.

  .venv/bin/python scripts/tokenize_gsm.py --tokenizer MODEL_DIR --out gsm.tokens problems.jsonl
"""
import argparse
import array
import hashlib
import json
import os
import sys

FORMAT = "hypnos-token-file"
VERSION = 1
MAX_ANSWER = 1000

MODES = {"normalforward": "forward", "forwardreverse": "reverse"}
TEMPLATES = {
    "crazy_zootopia": "zoo",
    "teachers_in_school": "teachers",
    "movie_festival_awards": "movies",
}


class InputError(Exception):
    """A problem with an input file, its message naming file and line."""


def tokenizer_files(model_dir):
    """tokenizer.json when present, else vocab.json and merges.txt (tasks::tokenizer_files)."""
    single = os.path.join(model_dir, "tokenizer.json")
    if os.path.isfile(single):
        return [single]
    pair = [os.path.join(model_dir, "vocab.json"), os.path.join(model_dir, "merges.txt")]
    if all(os.path.isfile(p) for p in pair):
        return pair
    raise InputError(
        f"no tokenizer in '{model_dir}': expected tokenizer.json, or vocab.json and merges.txt"
    )


def tokenizer_sha256(model_dir):
    """SHA-256 of the concatenated tokenizer files (tasks::tokenizer_sha256)."""
    h = hashlib.sha256()
    for path in tokenizer_files(model_dir):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def load_tokenizer(model_dir):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    files = tokenizer_files(model_dir)
    if len(files) == 1:
        return Tokenizer.from_file(files[0])
    # GPT-2 convention for a bare vocab.json + merges.txt: byte-level BPE.
    tok = Tokenizer(models.BPE.from_file(files[0], files[1]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def official_answer(solution):
    """The integer after the last "Answer: " if plain and in 0..1000, else None."""
    at = solution.rfind("Answer: ")
    if at < 0:
        return None
    rest = solution[at + 8 :].rstrip(". \n")
    if not rest or len(rest) > 4 or not all("0" <= c <= "9" for c in rest):
        return None
    value = int(rest)
    return value if value <= MAX_ANSWER else None


def prompt_text(question, problem):
    """tasks::gsm_prompt_text."""
    return question.strip(" \t\r\n") + "\n" + problem.strip(" \t\r\n") + "\nAnswer:"


def int_field(obj, key, where, required):
    if key not in obj:
        if required:
            raise InputError(f"{where}: missing field '{key}'")
        return 0
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise InputError(f"{where}: field '{key}' = {json.dumps(v)[:80]} is not an integer")
    try:
        return int(v)
    except ValueError:
        raise InputError(
            f"{where}: field '{key}' = {json.dumps(v)[:80]} is not an integer"
        ) from None


def str_field(obj, key, where, required):
    if key not in obj:
        if required:
            raise InputError(f"{where}: missing field '{key}'")
        return ""
    if not isinstance(obj[key], str):
        raise InputError(f"{where}: field '{key}' is not a string")
    return obj[key]


def read_problems(path):
    """(records, dropped): each record {id, prompt, completion, answer, op, mode, template, d}."""
    records, dropped = [], 0
    name = os.path.basename(path)
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(
                    f"{where}: not JSON ({e.msg}), line starting {line[:60]!r}"
                ) from None
            if not isinstance(obj, dict):
                raise InputError(f"{where}: not a JSON object")
            if "prompt" in obj and "completion" in obj:  # hypnos generate --text
                prompt = str_field(obj, "prompt", where, True)
                completion = str_field(obj, "completion", where, True)
                answer = int_field(obj, "answer", where, True)
            else:  # official GSM-Infinite
                question = str_field(obj, "question", where, True)
                problem = str_field(obj, "problem", where, True)
                if "solution" in obj or "answer" not in obj:
                    answer = official_answer(str_field(obj, "solution", where, True))
                else:
                    answer = int_field(obj, "answer", where, True)
                    answer = answer if 0 <= answer <= MAX_ANSWER else None
                if answer is None:
                    dropped += 1
                    continue
                prompt, completion = prompt_text(question, problem), f" {answer}"
            mode = str_field(obj, "mode", where, False)
            template = str_field(obj, "template", where, False)
            records.append(
                {
                    "id": f"{name}:{line_no}",
                    "prompt": prompt,
                    "completion": completion,
                    "answer": answer,
                    "op": int_field(obj, "op", where, True),
                    "mode": MODES.get(mode, mode),
                    "template": TEMPLATES.get(template, template),
                    "d": int_field(obj, "d", where, False),
                }
            )
    return records, dropped


def special_id(tok, token, what):
    if token is None:
        return None
    i = tok.token_to_id(token)
    if i is None:
        raise InputError(f"{what} '{token}' is not a token of the tokenizer")
    return i


def encoded(tok, records, chunk=2048):
    """(record, prompt encoding, completion encoding), encoded a chunk at a time: the encodings of
    128,000 problems of 3,000 tokens at once would take tens of GB (offsets and token strings)."""
    for start in range(0, len(records), chunk):
        part = records[start : start + chunk]
        prompts = tok.encode_batch([r["prompt"] for r in part], add_special_tokens=False)
        completions = tok.encode_batch([r["completion"] for r in part], add_special_tokens=False)
        yield from zip(part, prompts, completions)


def tokenize(model_dir, inputs, out, bos=None, pad_token=None):
    """Writes OUT (NAME.tokens) and NAME.index.jsonl; returns the header written."""
    if not out.endswith(".tokens") or len(out) <= len(".tokens"):
        raise InputError(f"--out '{out}': expected a name ending in .tokens")
    index_path = out[: -len(".tokens")] + ".index.jsonl"
    tok = load_tokenizer(model_dir)
    bos_id = special_id(tok, bos, "--bos")
    pad_id = special_id(tok, pad_token, "--pad-token") or 0
    records, dropped = [], 0
    for path in inputs:
        r, d = read_problems(path)
        records += r
        dropped += d
    if not records:
        raise InputError(f"no problems in {', '.join(inputs)} ({dropped} dropped)")
    ids = array.array("I")
    assert ids.itemsize == 4
    lines = []
    for r, p, c in encoded(tok, records):
        prompt_ids = ([bos_id] if bos_id is not None else []) + p.ids
        if not prompt_ids or not c.ids:
            raise InputError(f"{r['id']}: the prompt or the completion tokenises to nothing")
        line = {
            "id": r["id"],
            "offset": len(ids),
            "length": len(prompt_ids) + len(c.ids),
            "answer_start": len(prompt_ids),
            "answer_length": len(c.ids),
        }
        line.update({k: r[k] for k in ("answer", "op", "mode", "template", "d")})
        ids.extend(prompt_ids)
        ids.extend(c.ids)
        lines.append(line)
    if sys.byteorder != "little":
        ids.byteswap()
    lengths = [line["length"] for line in lines]
    header = {
        "format": FORMAT,
        "version": VERSION,
        "tokens": os.path.basename(out),
        "n_records": len(lines),
        "n_tokens": len(ids),
        "tokenizer_files": [os.path.basename(p) for p in tokenizer_files(model_dir)],
        "tokenizer_sha256": tokenizer_sha256(model_dir),
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "pad_id": pad_id,
        "bos": bos,
        "sources": [os.path.basename(p) for p in inputs],
        "dropped": dropped,
        "min_length": min(lengths),
        "max_length": max(lengths),
    }
    # Written beside and renamed, so that a reader never sees half a file.
    with open(out + ".tmp", "wb") as f:
        ids.tofile(f)
    with open(index_path + ".tmp", "w", encoding="utf-8") as f:
        f.write(json.dumps(header) + "\n")
        for line in lines:
            f.write(json.dumps(line) + "\n")
    os.replace(out + ".tmp", out)
    os.replace(index_path + ".tmp", index_path)
    return header


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tokenizer",
        required=True,
        help="model folder (tokenizer.json, or vocab.json + merges.txt)",
    )
    parser.add_argument("--out", required=True, help="NAME.tokens (the index: NAME.index.jsonl)")
    parser.add_argument("--bos", help="token put before every prompt (default: none)")
    parser.add_argument("--pad-token", help="token that pads batches (default: id 0; never scored)")
    parser.add_argument(
        "inputs", nargs="+", help="JSONL problems (hypnos --text or official GSM-Infinite)"
    )
    args = parser.parse_args(argv)
    try:
        h = tokenize(args.tokenizer, args.inputs, args.out, args.bos, args.pad_token)
    except InputError as e:
        print(f"tokenize_gsm: {e}", file=sys.stderr)
        return 1
    print(
        f"{args.out}: {h['n_records']} records, {h['n_tokens']} tokens, lengths {h['min_length']}-"
        f"{h['max_length']}, {h['dropped']} dropped; tokenizer sha256 {h['tokenizer_sha256']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
