#!/usr/bin/env python3
"""Baseline for `hypnos_bench train`: training tokens/s of bench/reference/sleep_reference.py (copied
beside this file unchanged) on the same configuration: Rule 110, AGAG, width 256, 4 heads, window 24,
T = 100, batch B, its Muon + AdamW and gradient clipping, N in a list. Eager PyTorch, TF32 matmuls as the
reference sets them; median of R steps after 3 warm-up steps.
    python3 bench/reference/train_bench.py [--batch 512] [--passes 1,2,4] [--repeats 10] [--device cuda]
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sleep_reference as ref  # noqa: E402


def profile(step, dev):
    """One step under torch.profiler, summarised like `hypnos_bench train --profile` (on stderr)."""
    acts = [torch.profiler.ProfilerActivity.CPU]
    if dev.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        t0 = time.perf_counter()
        step()
        wall = (time.perf_counter() - t0) * 1e3
    dev_events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    dev_ms = sum(e.time_range.elapsed_us() for e in dev_events) / 1e3
    print(f"PROFILE one step: wall {wall:.2f} ms, device work {dev_ms:.2f} ms in {len(dev_events)} "
          f"kernels/copies ({100 * dev_ms / wall:.0f}% of wall), {len(prof.events()) - len(dev_events)} "
          f"host events", file=sys.stderr)
    totals = {}
    for e in dev_events:
        c, t = totals.get(e.name[:100], (0, 0.0))
        totals[e.name[:100]] = (c + 1, t + e.time_range.elapsed_us() / 1e3)
    print(f"{'total ms':>10} {'count':>8} {'mean us':>10}  device work", file=sys.stderr)
    for name, (c, t) in sorted(totals.items(), key=lambda kv: -kv[1][1])[:30]:
        print(f"{t:>10.3f} {c:>8} {1e3 * t / c:>10.1f}  {name}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--passes", default="1,2,4")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--profile", action="store_true", help="profile one step per N (torch.profiler)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"reference (sleep_reference.py, eager PyTorch {torch.__version__}) on {dev}, batch {a.batch}")
    print(f"{'N':>4} {'step ms':>12} {'tokens/s':>14} {'peak MiB':>12}")
    for n in [int(x) for x in a.passes.split(",")]:
        torch.manual_seed(0)
        model = ref.HybridLM(vocab=6, d=256).to(dev)
        mats, rest = ref.muon_groups(model)
        opts = [ref.Muon(mats, lr=2e-3), torch.optim.AdamW(rest, lr=1e-3, weight_decay=0.0)]
        gen = torch.Generator(device=dev)
        gen.manual_seed(0)
        x, y = ref.rule110_batch(a.batch, 12, gen, dev)
        consolidate = [True, True, True, True, False]

        def step():
            logits = model(x, 24, n, consolidate)[:, 96:]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            for o in opts:
                o.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        for _ in range(3):
            step()
        if a.profile:
            profile(step, dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        times.sort()
        med = times[len(times) // 2]
        peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else float("nan")
        print(f"{n:>4} {med * 1e3:>12.2f} {a.batch * 100 / med:>14.4g} {peak:>12.1f}", flush=True)


if __name__ == "__main__":
    main()
