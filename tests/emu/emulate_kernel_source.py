"""Rewrites a kernels/ source for the CPU emulation (tests/emu/cuda_emu.h): every launch
`kernel<<<grid, block, smem, stream>>>(args);` becomes `::emu::launch(dim3(grid), dim3(block),
[&] { kernel(args); });`, and namespace hypnos::kernels becomes hypnos::kernels_emu (so the
emulated kernels never collide with the real ones). Usage: emulate_kernel_source.py IN OUT"""
import re
import sys


def split_top_level(text):
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "({<":
            depth += 1
        elif ch in ")}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    parts.append(current.strip())
    return parts


def launch(match):
    kernel, config, args = match.group(1), split_top_level(match.group(2)), match.group(3)
    return f"::emu::launch(dim3({config[0]}), dim3({config[1]}), [&] {{ {kernel}({args}); }});"


source = open(sys.argv[1]).read()
launches = re.compile(
    r"([\w:]+(?:<[^;<>]*(?:<[^;<>]*>)?[^;<>]*>)?(?:\(tag\))?)\s*<<<(.*?)>>>\((.*?)\);", re.S)
source = launches.sub(launch, source)
if "<<<" in source:
    sys.exit(f"{sys.argv[1]}: a kernel launch this script cannot rewrite")
source = source.replace("namespace hypnos::kernels", "namespace hypnos::kernels_emu")
open(sys.argv[2], "w").write(source)
