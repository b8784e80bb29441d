"""bench/fla_compare.py on the CPU: the table's rows for a plain and a packed shape with hypnos
timed and fla's columns marked as not measured, and the refusals (fla missing without --no-fla,
a malformed --shape) with messages that say what to do."""
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "bench" / "fla_compare.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=300)


def test_cpu_rows_for_a_plain_and_a_packed_shape():
    r = run("--device", "cpu", "--no-fla", "--reps", "1", "--shape", "2,70,2,32,48",
            "--packed", "3,5,40,2,32,48")
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| shape |")
    body = rows[1:]
    assert len(body) == 2, r.stdout
    assert body[0].startswith("| 2x70x2x(32,48) |")
    assert body[1].startswith("| packed 3 x 5-40 (")
    for row in body:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[4]) > 0, row  # hypnos fwd, fwd+bwd
        assert cells[2] == "not measured" and cells[5] == "not measured", row
        assert cells[3] == "-" and cells[6] == "-", row
    assert "fla not measured (--no-fla)" in r.stdout


def test_missing_fla_is_an_error_naming_the_fix():
    try:
        import fla  # noqa: F401
        pytest.skip("fla is installed in this environment: there is no missing fla to refuse")
    except ImportError:
        pass
    r = run("--device", "cpu", "--reps", "1", "--shape", "1,8,1,16,16")
    assert r.returncode != 0
    assert "fla is not importable" in r.stderr and "--no-fla" in r.stderr, r.stderr


def test_malformed_shape_names_the_flag_and_the_value():
    r = run("--device", "cpu", "--no-fla", "--shape", "2,70,2,32")
    assert r.returncode == 2
    assert "--shape expects 5 positive integers" in r.stderr and "'2,70,2,32'" in r.stderr
