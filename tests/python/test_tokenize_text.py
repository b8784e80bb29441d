"""scripts/tokenize_text.py on a tiny byte-level BPE tokenizer built offline (tiny_tokenizer.py): the
ids decode back to the text (whole file or line by line), --bos comes first, and a folder without a
tokenizer, an empty text or an unreadable file stop with exit 2 and a message naming the cause."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, HERE)

import tiny_tokenizer  # noqa: E402
import tokenize_text  # noqa: E402

TEXT = "The number of adult owls in Hamilton Farm equals 2.\n\nHow many adult owls does Hamilton Farm have?\n"


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    tiny_tokenizer.build(str(d))
    return str(d)


def run(tmp_path, tok_dir, text, *flags):
    src = tmp_path / "in.txt"
    src.write_text(text, encoding="utf-8")
    out = tmp_path / "out.ids"
    code = tokenize_text.main(["--tokenizer", tok_dir, *flags, str(src), "-o", str(out)])
    return code, out.read_text().splitlines() if code == 0 else None


def test_the_whole_file_is_one_sequence_that_decodes_back(tmp_path, tok_dir):
    from tokenizers import Tokenizer

    code, lines = run(tmp_path, tok_dir, TEXT)
    assert code == 0 and len(lines) == 1
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    assert tok.decode([int(x) for x in lines[0].split()]) == TEXT


def test_lines_give_one_sequence_per_non_empty_line_and_bos_comes_first(tmp_path, tok_dir):
    from tokenizers import Tokenizer

    code, lines = run(tmp_path, tok_dir, TEXT, "--lines", "--bos", "1")
    assert code == 0 and len(lines) == 2
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    for line, want in zip(lines, [t for t in TEXT.splitlines() if t]):
        ids = [int(x) for x in line.split()]
        assert ids[0] == 1 and tok.decode(ids[1:]) == want


@pytest.mark.parametrize(
    "case, message",
    [("no_tokenizer", "no tokenizer in"), ("empty", "no non-empty line"), ("missing", "No such file")],
)
def test_bad_input_stops_with_exit_2_naming_the_cause(tmp_path, tok_dir, capsys, case, message):
    if case == "no_tokenizer":
        code, _ = run(tmp_path, str(tmp_path), TEXT)
    elif case == "empty":
        code, _ = run(tmp_path, tok_dir, "\n \n", "--lines")
    else:
        code = tokenize_text.main(["--tokenizer", tok_dir, str(tmp_path / "absent.txt")])
    assert code == 2
    assert message in capsys.readouterr().err
