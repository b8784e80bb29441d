"""scripts/kernel_resources.py: its readings of ptxas's report and of cuobjdump's SASS, and the
comparison that tells a refactor of kernels/ (the same work instructions) from a change of the work.
On canned compiler output, so it runs without nvcc (docs/kernels.md has a measured comparison)."""
import json
import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import kernel_resources  # noqa: E402

PTXAS = """\
ptxas info    : Compiling entry function '_Z3fooILi64EEvv' for 'sm_90'
ptxas info    : Function properties for _Z3fooILi64EEvv
    16 bytes stack frame, 24 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 128 registers, used 1 barriers, 1024 bytes smem
ptxas info    : Compiling entry function '_Z3barv' for 'sm_90'
ptxas info    : Function properties for _Z3barv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers
"""

SASS = """\
        Function : _Z3fooILi64EEvv
        /*0000*/                   MOV R1, c[0x0][0x28] ;                 /* 0x00000a0000017a02 */
        /*0010*/                   HFMA2.MMA R2, -RZ, RZ, 0, 0 ;          /* 0x000000ffff027435 */
        /*0020*/              @!P0 FFMA R3, R4, R5, R6 ;                  /* 0x0000000504037223 */
        /*0030*/                   LDS.128 R8, [R2] ;                     /* 0x0000000002087984 */
        /*0040*/                   HMMA.16816.F32.BF16 R12, R8, R10, R12 ; /* 0x0000000a080c723c */
        /*0050*/                   EXIT ;                                 /* 0x000000000000794d */
        Function : _Z3barv
        /*0000*/                   FADD R0, R1, R2 ;                      /* 0x0000000201007221 */
"""


def test_ptxas_report_is_read_per_entry_function():
    got = kernel_resources.parse_ptxas(PTXAS)
    assert got["_Z3fooILi64EEvv"] == dict(stack=16, spill_stores=24, spill_loads=12, registers=128,
                                          static_smem=1024)
    assert got["_Z3barv"] == dict(stack=0, spill_stores=0, spill_loads=0, registers=32,
                                  static_smem=0)


def test_sass_is_counted_per_opcode_with_predicates_and_modifiers_dropped():
    got = kernel_resources.parse_sass(SASS)
    assert dict(got["_Z3fooILi64EEvv"]) == {"MOV": 1, "HFMA2.MMA": 1, "FFMA": 1, "LDS": 1,
                                             "HMMA": 1, "EXIT": 1}
    assert dict(got["_Z3barv"]) == {"FADD": 1}


def write(directory, kernels):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "resources.json"), "w") as f:
        json.dump(kernels, f)


def kernel(opcodes, registers=128):
    return dict(registers=registers, spill_stores=0, spill_loads=0, stack=0, static_smem=0,
                sass=sum(opcodes.values()), opcodes=opcodes)


def test_compare_accepts_fewer_moves_and_refuses_other_work(tmp_path, capsys):
    before = {"k<64>": kernel({"FFMA": 10, "IMAD": 8, "MOV": 4, "HFMA2.MMA": 2})}
    write(tmp_path / "before", before)
    # A refactor: fewer integer and move instructions, two more registers, the same work.
    write(tmp_path / "refactor", {"k<64>": kernel({"FFMA": 10, "IMAD": 5, "MOV": 2}, 130)})
    assert kernel_resources.compare(tmp_path / "before", tmp_path / "refactor") == 0
    out = capsys.readouterr().out
    assert "registers 128 -> 130" in out and "same work instructions" in out
    # One FFMA more is a change of the work, named with both counts.
    write(tmp_path / "changed", {"k<64>": kernel({"FFMA": 11, "IMAD": 8, "MOV": 4})})
    assert kernel_resources.compare(tmp_path / "before", tmp_path / "changed") == 1
    assert "WORK DIFFERS {'FFMA': (10, 11)}" in capsys.readouterr().out
    # A kernel that appears or disappears is a difference too.
    write(tmp_path / "renamed", {"k2<64>": before["k<64>"]})
    assert kernel_resources.compare(tmp_path / "before", tmp_path / "renamed") == 1


@pytest.mark.skipif(shutil.which("c++filt") is None, reason="c++filt (binutils) is not installed")
def test_kernel_names_are_demangled_and_shortened():
    name = "_ZN6hypnos7kernels12_GLOBAL__N_120gdn_chunk_fwd_kernelIfLi128ELi32EEEvNS0_9GdnParamsE"
    short = kernel_resources.demangle([name])[name]
    assert short == "gdn_chunk_fwd_kernel<float, 128, 32>", short
