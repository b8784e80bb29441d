"""scripts/tokenize_gsm.py on a tiny byte-level BPE tokenizer built offline (tiny_tokenizer.py):
records decode back to the rendered text (encoded a chunk at a time as in one batch), the index
describes the token file exactly, the hash is the tokenizer files', official and hypnos text
records are both read, and bad input names file and line. With HYPNOS_CLI set, the C++ rendering (`hypnos generate gsm_infinite --text`) is
compared with the script's rendering of the same problems."""
import array
import hashlib
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, HERE)

import tiny_tokenizer  # noqa: E402
import tokenize_gsm  # noqa: E402

OFFICIAL = [
    {
        "problem": "The number of adult lions in Bundle Zoo equals 3. The number of adult owls in "
        "Hamilton Farm equals 2 plus the number of adult lions in Bundle Zoo. ",
        "question": "How many adult owls does Hamilton Farm have?",
        "solution": "Define adult lions in Bundle Zoo as x; so x = 3. ... Answer: 5.",
        "op": "2",
        "mode": "normalforward",
        "template": "crazy_zootopia",
        "d": 2,
        "id": 7,
    },
    {
        "problem": "The number of adult bears in Jefferson Circus equals 4.",
        "question": "How many adult bears does Jefferson Circus have?",
        "solution": "Answer: 4",
        "op": 1,
        "mode": "forwardreverse",
    },
    {"problem": "x", "question": "y", "solution": "Answer: 2.5.", "op": 1},  # dropped
]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def read_token_file(out):
    index = out[: -len(".tokens")] + ".index.jsonl"
    with open(index, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    ids = array.array("I")
    with open(out, "rb") as f:
        ids.frombytes(f.read())
    if sys.byteorder != "little":
        ids.byteswap()
    return lines[0], lines[1:], list(ids)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    tiny_tokenizer.build(str(d))
    return str(d)


def test_official_records_round_trip(tok_dir, tmp_path):
    src = tmp_path / "official.jsonl"
    write_jsonl(src, OFFICIAL)
    out = str(tmp_path / "gsm.tokens")
    tokenize_gsm.tokenize(tok_dir, [str(src)], out)
    header, records, ids = read_token_file(out)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    with open(os.path.join(tok_dir, "tokenizer.json"), "rb") as f:
        assert header["tokenizer_sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert header["format"] == "hypnos-token-file" and header["version"] == 1
    assert header["n_records"] == 2 and header["dropped"] == 1
    assert header["n_tokens"] == len(ids) == sum(r["length"] for r in records)
    assert os.path.getsize(out) == 4 * len(ids)
    offset = 0
    for r, src_row in zip(records, OFFICIAL):
        assert r["offset"] == offset
        offset += r["length"]
        rec = ids[r["offset"] : r["offset"] + r["length"]]
        start, end = r["answer_start"], r["answer_start"] + r["answer_length"]
        prompt, answer = rec[:start], rec[start:end]
        assert r["answer_start"] + r["answer_length"] == r["length"]
        expected_prompt = src_row["question"] + "\n" + src_row["problem"].strip() + "\nAnswer:"
        assert tok.decode(prompt) == expected_prompt
        assert tok.decode(answer) == f" {r['answer']}"
    assert [r["answer"] for r in records] == [5, 4]
    assert [r["op"] for r in records] == [2, 1]
    assert [r["mode"] for r in records] == ["forward", "reverse"]
    assert records[0]["template"] == "zoo" and records[0]["d"] == 2
    assert records[0]["id"] == "official.jsonl:1"


def test_chunked_encoding_is_the_whole_batchs(tok_dir, tmp_path):
    """Records are encoded a chunk at a time (memory): chunks of 1 and 2 give the ids, in the order,
    that one batch of all gives."""
    src = tmp_path / "official.jsonl"
    write_jsonl(src, OFFICIAL[:2] * 3)
    records, _ = tokenize_gsm.read_problems(str(src))
    tok = tokenize_gsm.load_tokenizer(tok_dir)
    whole = [(p.ids, c.ids) for _, p, c in tokenize_gsm.encoded(tok, records, chunk=len(records))]
    assert len(whole) == 6 and whole[0] != whole[1]
    for chunk in (1, 2, 4):
        parts = [(p.ids, c.ids) for _, p, c in tokenize_gsm.encoded(tok, records, chunk=chunk)]
        assert parts == whole, chunk


def test_vocab_and_merges_hash_is_the_concatenation(tmp_path):
    d = tmp_path / "pair"
    tiny_tokenizer.build(str(d), pair=True)
    files = tokenize_gsm.tokenizer_files(str(d))
    assert [os.path.basename(f) for f in files] == ["vocab.json", "merges.txt"]
    data = b"".join(open(f, "rb").read() for f in files)
    assert tokenize_gsm.tokenizer_sha256(str(d)) == hashlib.sha256(data).hexdigest()
    src = tmp_path / "p.jsonl"
    write_jsonl(src, OFFICIAL[:1])
    out = str(tmp_path / "p.tokens")
    tokenize_gsm.tokenize(str(d), [str(src)], out, bos="<|endoftext|>")
    header, records, ids = read_token_file(out)
    assert ids[0] == 1 and header["bos"] == "<|endoftext|>"  # the BOS is part of the prompt
    assert records[0]["answer_start"] >= 2


def test_bad_input_names_file_and_line(tok_dir, tmp_path):
    src = tmp_path / "bad.jsonl"
    rows = [OFFICIAL[0], {"problem": "p", "solution": "Answer: 3", "op": 1}]
    write_jsonl(src, rows)
    with pytest.raises(tokenize_gsm.InputError, match=r"bad.jsonl:2: missing field 'question'"):
        tokenize_gsm.tokenize(tok_dir, [str(src)], str(tmp_path / "x.tokens"))
    write_jsonl(src, [OFFICIAL[0]])
    with open(src, "a") as f:
        f.write("{not json\n")
    with pytest.raises(tokenize_gsm.InputError, match=r"bad.jsonl:2: not JSON"):
        tokenize_gsm.tokenize(tok_dir, [str(src)], str(tmp_path / "x.tokens"))
    with pytest.raises(tokenize_gsm.InputError, match=r"expected a name ending in .tokens"):
        tokenize_gsm.tokenize(tok_dir, [str(src)], str(tmp_path / "x.bin"))
    with pytest.raises(tokenize_gsm.InputError, match=r"no tokenizer in"):
        tokenize_gsm.tokenize(str(tmp_path), [str(src)], str(tmp_path / "x.tokens"))
    args = ["--tokenizer", tok_dir, "--out", str(tmp_path / "y.tokens"), str(src)]
    assert tokenize_gsm.main(args) == 1


@pytest.mark.skipif(not os.environ.get("HYPNOS_CLI"), reason="HYPNOS_CLI (built hypnos) not set")
def test_hypnos_text_records_match_the_scripts_rendering(tok_dir, tmp_path):
    cli = os.environ["HYPNOS_CLI"]
    text = subprocess.run(
        [cli, "generate", "gsm_infinite", "--text", "--n", "4", "task.length=zero"]
        + ["task.op_max=3"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) == 4
    for row in rows:
        # The C++ rendering (tasks::gsm_prompt_text) and the script's agree.
        assert row["prompt"] == tokenize_gsm.prompt_text(row["question"], row["problem"])
        assert row["completion"] == f" {row['answer']}"
    src = tmp_path / "gen.jsonl"
    src.write_text(text)
    out = str(tmp_path / "gen.tokens")
    tokenize_gsm.tokenize(tok_dir, [str(src)], out)
    header, records, ids = read_token_file(out)
    assert header["n_records"] == 4
    assert [r["answer"] for r in records] == [row["answer"] for row in rows]
    assert [r["op"] for r in records] == [row["op"] for row in rows]
