#!/usr/bin/env python3
"""hypnos's gated delta rule against fla's chunk_gated_delta_rule, in one process on one device.

Both ops take fla's arguments and layout (python/hypnos_ops is a drop-in for fla's), so every row
times the same call on the same tensors: bf16 q, k (unit rows), v and beta, fp32 g; the forward
without autograd, the forward+backward with o.backward(dO). Each figure is the median of --reps
individually timed runs (CUDA events on a GPU) after three warm-up runs. The ratio column is
hypnos / fla: at or below 1 is at or below fla's time.

    python bench/fla_compare.py                 # the standard shapes, CUDA, fla required
    python bench/fla_compare.py --quick         # the two sleep-window shapes only
    python bench/fla_compare.py --device cpu --no-fla --shape 2,70,2,32,48   # a CPU check

fla on Hopper with the Triton of the torch wheel refuses its gated backward (fla issue 640: it
checks TRITON_ABOVE_3_7_1 in fla.ops.common.chunk_o); --fla-hopper-flag sets that flag to True for
the timing, and the header says so. fla comes from its wheels (fla-core, flash-linear-attention),
pure Python on the torch wheel's Triton: `pip install fla_core-*.whl flash_linear_attention-*.whl`.

hypnos's op picks its backend per call ("auto": the CUDA kernels where they take the shape, else
the chunked ATen form, with one log line naming why); --hypnos-backend forces one.
"""
import argparse
import statistics
import sys
import time

import torch

# (label, B, T, H, K, V): the shapes of the kernels issue, the sleep windows and Jet-Nemotron's
# JetBlock window.
STANDARD_SHAPES = [
    ("8x4096x16x128", 8, 4096, 16, 128, 128),
    ("1x16384x16x128", 1, 16384, 16, 128, 128),
    ("8x1024x16x128", 8, 1024, 16, 128, 128),
    ("512x24x4x64", 512, 24, 4, 64, 64),
    ("128x75x8x64", 128, 75, 8, 64, 64),
    ("8x2000x12x(96,256)", 8, 2000, 12, 96, 256),
]
QUICK_SHAPES = STANDARD_SHAPES[3:5]
# A packed batch (cu_seqlens, B = 1) of 8 GSM-Infinite-length sequences: (count, min, max, H, K, V).
STANDARD_PACKED = (8, 2000, 3300, 16, 128, 128)


def packed_lengths(count, lo, hi):
    """`count` lengths evenly spaced from lo to hi (rounded): the packed batch `hypnos_bench
    kernels` times too."""
    if count == 1:
        return [lo]
    return [lo + ((hi - lo) * i + (count - 1) // 2) // (count - 1) for i in range(count)]


def positive_ints(text, count, what):
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{what} expects {count} positive integers separated by "
                                         f"commas, got '{text}'")
    return values


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--reps", type=int, default=20, help="timed runs per figure (default 20)")
    ap.add_argument("--quick", action="store_true", help="the two sleep-window shapes only")
    ap.add_argument("--shape", action="append", default=[], metavar="B,T,H,K,V",
                    type=lambda s: positive_ints(s, 5, "--shape"),
                    help="this shape instead of the standard list (repeatable)")
    ap.add_argument("--packed", action="append", default=[], metavar="N,MIN,MAX,H,K,V",
                    type=lambda s: positive_ints(s, 6, "--packed"),
                    help="a packed batch of N sequences of MIN-MAX tokens instead of the standard "
                         "one (repeatable)")
    ap.add_argument("--no-fla", action="store_true",
                    help="time hypnos only (fla's columns say 'not measured')")
    ap.add_argument("--fla-hopper-flag", action="store_true",
                    help="set fla.ops.common.chunk_o.TRITON_ABOVE_3_7_1 = True (fla issue 640)")
    ap.add_argument("--hypnos-backend", default="auto",
                    choices=["auto", "cuda", "chunked", "reference"])
    args = ap.parse_args(argv)
    if args.reps < 1:
        ap.error(f"--reps must be at least 1, got {args.reps}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device (use --device cpu for a CPU check)")
    return args


def load_fla(args):
    """fla's chunk_gated_delta_rule, or None with --no-fla; exits 2 naming the fix when missing."""
    if args.no_fla:
        return None
    try:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    except ImportError as e:
        sys.exit(f"fla_compare: fla is not importable ({e}); install the fla-core and "
                 "flash-linear-attention wheels, or pass --no-fla to time hypnos alone")
    if args.fla_hopper_flag:
        import fla.ops.common.chunk_o as chunk_o
        chunk_o.TRITON_ABOVE_3_7_1 = True
    return chunk_gated_delta_rule


def make_inputs(lengths, packed, heads, dk, dv, device, seed):
    """q, k, v, g, beta, dO for sequences of `lengths` tokens: packed along T with B = 1 and
    cu_seqlens, or (all lengths equal) [B, T, H, .] with B = len(lengths)."""
    gen = torch.Generator().manual_seed(seed)
    batch, total = (1, sum(lengths)) if packed else (len(lengths), lengths[0])

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    def unit_rows(x):
        return x / x.norm(dim=-1, keepdim=True)

    bf16 = dict(device=device, dtype=torch.bfloat16)
    x = {
        "q": unit_rows(randn(batch, total, heads, dk)).to(**bf16),
        "k": unit_rows(randn(batch, total, heads, dk)).to(**bf16),
        "v": randn(batch, total, heads, dv).to(**bf16),
        "g": torch.nn.functional.logsigmoid(randn(batch, total, heads)).to(device),
        "beta": torch.sigmoid(randn(batch, total, heads)).to(**bf16),
    }
    d_o = randn(batch, total, heads, dv).to(**bf16)
    cu = None
    if packed:
        offsets = [0]
        for n in lengths:
            offsets.append(offsets[-1] + n)
        cu = torch.tensor(offsets, dtype=torch.long, device=device)
    return x, d_o, cu


def median_ms(fn, reps, device):
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def time_op(op, x, d_o, cu, reps, device):
    """(forward ms, forward+backward ms) of op(q, k, v, g, beta, cu_seqlens=cu)."""
    def forward():
        with torch.no_grad():
            op(x["q"], x["k"], x["v"], x["g"], x["beta"], cu_seqlens=cu)

    leaves = {n: t.detach().requires_grad_(True) for n, t in x.items()}

    def forward_backward():
        o, _ = op(leaves["q"], leaves["k"], leaves["v"], leaves["g"], leaves["beta"],
                  cu_seqlens=cu)
        o.backward(d_o)
        for t in leaves.values():
            t.grad = None

    return median_ms(forward, reps, device), median_ms(forward_backward, reps, device)


def ratio(ours, theirs):
    return f"{ours / theirs:.2f}" if theirs else "-"


def ms(value):
    return f"{value:.3f}" if value is not None else "not measured"


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import hypnos_ops
    fla_op = load_fla(args)

    def hypnos_op(*a, **kw):
        return hypnos_ops.chunk_gated_delta_rule(*a, backend=args.hypnos_backend, **kw)

    cases = []  # (label, lengths, packed, H, K, V)
    for b, t, h, dk, dv in args.shape:
        cases.append((f"{b}x{t}x{h}x({dk},{dv})", [t] * b, False, h, dk, dv))
    for n, lo, hi, h, dk, dv in args.packed:
        if lo > hi:
            sys.exit(f"fla_compare: --packed wants MIN <= MAX, got {lo} > {hi}")
        lengths = packed_lengths(n, lo, hi)
        cases.append((f"packed {n} x {lo}-{hi} ({sum(lengths)} tokens) x{h}x({dk},{dv})",
                      lengths, True, h, dk, dv))
    if not cases:
        for label, b, t, h, dk, dv in QUICK_SHAPES if args.quick else STANDARD_SHAPES:
            cases.append((label, [t] * b, False, h, dk, dv))
        if not args.quick:
            n, lo, hi, h, dk, dv = STANDARD_PACKED
            lengths = packed_lengths(n, lo, hi)
            cases.append((f"packed {n} x {lo}-{hi} ({sum(lengths)} tokens) x{h}x128", lengths,
                          True, h, dk, dv))

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    fla_note = ("fla not measured (--no-fla)" if fla_op is None else
                "fla " + getattr(sys.modules.get("fla"), "__version__", "?") +
                (", TRITON_ABOVE_3_7_1 set to True (fla issue 640)" if args.fla_hopper_flag else ""))
    print(f"fla_compare on {device_name}: torch {torch.__version__}; hypnos backend "
          f"{args.hypnos_backend}; {fla_note}; median of {args.reps} after 3 warm-up")
    print("| shape | hypnos fwd ms | fla fwd ms | hypnos/fla | hypnos fwd+bwd ms | "
          "fla fwd+bwd ms | hypnos/fla |")
    print("|---|---|---|---|---|---|---|")
    for seed, (label, lengths, packed, h, dk, dv) in enumerate(cases):
        x, d_o, cu = make_inputs(lengths, packed, h, dk, dv, args.device, seed)
        ours = time_op(hypnos_op, x, d_o, cu, args.reps, args.device)
        theirs = (None, None)
        if fla_op is not None:
            theirs = time_op(fla_op, x, d_o, cu, args.reps, args.device)
        print(f"| {label} | {ms(ours[0])} | {ms(theirs[0])} | {ratio(ours[0], theirs[0])} | "
              f"{ms(ours[1])} | {ms(theirs[1])} | {ratio(ours[1], theirs[1])} |", flush=True)
        del x, d_o, cu
        if args.device == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
