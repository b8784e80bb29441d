#!/usr/bin/env python3
"""Baseline for `hypnos bench train`: training tokens/s of ../shared/reference/sleep_reference.py (copied
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--passes", default="1,2,4")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
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
