"""Rewrites a kernels/ source for the CPU emulation (tests/emu/cuda_emu.h): every launch
`kernel<<<grid, block, smem, stream>>>(args);` becomes `::emu::launch(dim3(grid), dim3(block), smem,
[&] { kernel(args); });`, dynamic shared memory the emulation's buffer, the inline-PTX instructions
(mma.sync m16n8k16 bf16, ldmatrix x4, cp.async: an immediate copy, its commit and wait nothing) the
emulation's functions, and namespace hypnos::kernels becomes hypnos::kernels_emu (so the emulated kernels never collide with the real
ones). Usage: emulate_kernel_source.py IN OUT"""
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
    shared = config[2] if len(config) > 2 else "0"
    return (f"::emu::launch(dim3({config[0]}), dim3({config[1]}), size_t({shared}), "
            f"[&] {{ {kernel}({args}); }});")


source = open(sys.argv[1]).read()
launches = re.compile(
    r"([\w:]+(?:<[^;<>]*(?:<[^;<>]*>)?[^;<>]*>)?(?:\(tag\))?)\s*<<<(.*?)>>>\((.*?)\);", re.S)
source = launches.sub(launch, source)
if "<<<" in source:
    sys.exit(f"{sys.argv[1]}: a kernel launch this script cannot rewrite")
source = source.replace("extern __shared__ float smem[];", "float* smem = ::emu::dynamic_shared();")
source = source.replace("#if defined(__CUDACC__)", "#if 1  // emulated")
source = re.sub(r'asm volatile\(\s*"mma\.sync\.aligned\.m16n8k16.*?\);',
                "::emu::mma_m16n8k16_bf16<M16N8K16>(d, a, b0, b1);", source, flags=re.S)
source = re.sub(r'asm volatile\(\s*"cp\.async\.cg\.shared\.global.*?\);',
                "::emu::cp_async16(dst, src, src_size);", source, flags=re.S)
source = re.sub(r'asm volatile\(\s*"cp\.async\.(commit|wait)_group.*?\);', "(void)0;", source,
                flags=re.S)
source = re.sub(r'asm volatile\(\s*"ldmatrix\.sync\.aligned\.m8n8\.x4\.trans.*?\);',
                "::emu::ldmatrix_x4(r, row, true);", source, flags=re.S)
source = re.sub(r'asm volatile\(\s*"ldmatrix\.sync\.aligned\.m8n8\.x4\.shared.*?\);',
                "::emu::ldmatrix_x4(r, row, false);", source, flags=re.S)
if "asm" in re.sub(r"//.*", "", source).replace("emulated", ""):
    sys.exit(f"{sys.argv[1]}: inline assembly this script cannot emulate")
source = source.replace("namespace hypnos::kernels", "namespace hypnos::kernels_emu")
open(sys.argv[2], "w").write(source)
