#!/usr/bin/env python3
"""Resources and machine code of every kernel instantiation, to show that a change to kernels/ that
means to leave the code as it was (a refactor) does: docs/kernels.md, "How a change is checked".

  scripts/kernel_resources.py OUT_DIR [--source ROOT] [--files gdn_chunk_fwd,...] [--archs 80,90]
  scripts/kernel_resources.py --compare BEFORE_DIR AFTER_DIR

The first form compiles each kernels/<file>.cu of ROOT (default: this checkout; e.g. a `git worktree`
of the parent commit) for each architecture with `nvcc -Xptxas -v`, disassembles the objects with
`cuobjdump -sass` (from the CUDA toolkit, else the copy the triton wheel in .venv ships), and writes
OUT_DIR/resources.json: per file, architecture and kernel, the registers, spill bytes, stack, static
shared memory, and the SASS instruction count per opcode. The second form prints, per kernel, what
changed between two such directories, and whether the instructions that do the work (floating point,
MMA, shared/global/local memory, barriers, shuffles, special functions) are the same in number:
a refactor should change at most integer and move instructions.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FILES = ["gdn_chunk_fwd", "gdn_chunk_scan_tc", "gdn_chunk_bwd", "gdn_chunk_bwd_tc"]
# The work a kernel does, by SASS opcode: a refactor keeps these counts.
WORK = re.compile(r"^(F[A-Z0-9]*|H[A-Z0-9]*|D(MUL|ADD|FMA)|MUFU|LDS|STS|LDG|STG|LD|ST|LDSM|LDL|STL|"
                  r"LDGSTS|LDGDEPBAR|DEPBAR|BAR|SHFL|RED|ATOM|ATOMS)$")


def find_tool(name):
    found = shutil.which(name)
    if found:
        return found
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    candidates = [os.path.join(cuda_home, "bin", name)]
    candidates += glob.glob(os.path.join(ROOT, ".venv/lib/python3*/site-packages/triton/backends/"
                                         "nvidia/bin", name))
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    sys.exit(f"kernel_resources: {name} not found (PATH, $CUDA_HOME/bin, or the triton wheel)")


def demangle(names):
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                         check=True).stdout.splitlines()
    short = []
    for d in out:
        d = re.sub(r"hypnos::kernels::(\(anonymous namespace\)::)?", "", d)
        d = d.replace("__nv_bfloat16", "bf16").replace("(GdnParams)", "")
        short.append(re.sub(r"\(.*\)$", "", d).removeprefix("void "))
    return dict(zip(names, short))


def compile_one(nvcc, root, name, arch, out_dir):
    obj = os.path.join(out_dir, f"{name}_sm{arch}.o")
    cmd = [nvcc, "-I" + os.path.join(root, "kernels"), "-gencode",
           f"arch=compute_{arch},code=sm_{arch}", "--expt-relaxed-constexpr",
           "--expt-extended-lambda", "-O3", "-DNDEBUG", "-Xcompiler=-fPIC", "-lineinfo",
           "--use_fast_math", "-Xptxas", "-v", "-std=c++17", "-x", "cu", "-c",
           os.path.join(root, "kernels", name + ".cu"), "-o", obj]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"kernel_resources: nvcc failed on {name}.cu (sm_{arch}):\n{run.stderr}")
    return obj, run.stderr


def parse_ptxas(text):
    kernels, current = {}, None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\w+)' for 'sm_\d+'", line)
        if m:
            current = kernels.setdefault(m.group(1), {})
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                      line)
        if m:
            current.update(stack=int(m.group(1)), spill_stores=int(m.group(2)),
                           spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["registers"] = int(m.group(1))
            smem = re.search(r"(\d+) bytes smem", line)
            current["static_smem"] = int(smem.group(1)) if smem else 0
    return kernels


def parse_sass(text):
    opcodes, current = {}, None
    for line in text.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            current = opcodes.setdefault(m.group(1), Counter())
            continue
        m = re.match(r"\s+/\*[0-9a-f]{4,}\*/\s+(.*?)\s*/\*", line)
        if current is not None and m:
            op = re.sub(r"^@!?U?P\w+ ", "", m.group(1)).split()[0].rstrip(";")
            # HFMA2.MMA with zero operands is how ptxas moves constants into registers: a move.
            current["HFMA2.MMA" if op.startswith("HFMA2.MMA") else op.split(".")[0]] += 1
    return opcodes


def measure(args):
    nvcc, cuobjdump = find_tool("nvcc"), find_tool("cuobjdump")
    os.makedirs(args.out_dir, exist_ok=True)
    jobs = [(f, a) for f in args.files.split(",") for a in args.archs.split(",")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        built = list(pool.map(lambda j: compile_one(nvcc, args.source, j[0], j[1], args.out_dir),
                              jobs))
    result = {}
    for (name, arch), (obj, ptxas) in zip(jobs, built):
        sass = subprocess.run([cuobjdump, "-sass", obj], capture_output=True, text=True,
                              check=True).stdout
        resources, opcodes = parse_ptxas(ptxas), parse_sass(sass)
        names = demangle(sorted(resources))
        for mangled, res in resources.items():
            key = f"{name}.cu sm_{arch} {names[mangled]}"
            result[key] = dict(res, sass=sum(opcodes.get(mangled, {}).values()),
                               opcodes=dict(opcodes.get(mangled, {})))
    path = os.path.join(args.out_dir, "resources.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    print(f"{'kernel':<78} {'regs':>4} {'spill st/ld':>11} {'stack':>5} {'sass':>6}")
    for key, r in sorted(result.items()):
        print(f"{key:<78} {r['registers']:>4} {r['spill_stores']:>5}/{r['spill_loads']:<5} "
              f"{r['stack']:>5} {r['sass']:>6}")
    print(f"wrote {path}")


def compare(before_dir, after_dir):
    load = lambda d: json.load(open(os.path.join(d, "resources.json")))
    before, after = load(before_dir), load(after_dir)
    same_work = True
    for key in sorted(set(before) | set(after)):
        if key not in before or key not in after:
            print(f"{key}: only {'after' if key in after else 'before'}")
            same_work = False
            continue
        b, a = before[key], after[key]
        fields = [f"{k} {b[k]} -> {a[k]}" for k in
                  ("registers", "spill_stores", "spill_loads", "stack", "static_smem", "sass")
                  if b[k] != a[k]]
        ops = set(b["opcodes"]) | set(a["opcodes"])
        work = {op: (b["opcodes"].get(op, 0), a["opcodes"].get(op, 0)) for op in sorted(ops)
                if WORK.match(op) and b["opcodes"].get(op, 0) != a["opcodes"].get(op, 0)}
        same_work &= not work
        if fields or work:
            print(f"{key}: {', '.join(fields) or 'same resources'}"
                  + (f"; WORK DIFFERS {work}" if work else "; same work instructions"))
    print("every kernel does the same work instructions" if same_work else
          "some kernel's work instructions differ (see above)")
    return 0 if same_work else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", nargs="?", help="where to write resources.json and the objects")
    parser.add_argument("--source", default=ROOT, help="the checkout whose kernels/ to compile")
    parser.add_argument("--files", default=",".join(DEFAULT_FILES), help="kernels/<file>.cu names")
    parser.add_argument("--archs", default="80,90", help="compute capabilities, e.g. 80,90")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE_DIR", "AFTER_DIR"))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if not args.out_dir:
        parser.error("OUT_DIR is required (or --compare BEFORE_DIR AFTER_DIR)")
    measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
