#!/usr/bin/env python3
"""CPU forward + backward time of the sleep_reference.py model (its copy in sleep_parity.py), the
reference of `hypnos_bench train --device cpu --batch 64 --passes 1,2,4 --repeats 3 --no-update`:
AGAG, width 256, 4 heads, batch 64, T = 100, window 24, N in {1, 2, 4}; forward + backward of the
query-position loss without an optimizer step, mean of 3 after a warm-up (hypnos_bench: median of 3
after 3). bench/reference/train_bench.py is the reference of the full training step.
    python3 bench_reference.py"""
import os, sys, time
import torch, torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sleep_parity import HybridLM  # noqa: E402

torch.manual_seed(0)
model = HybridLM(6, d=256, pattern="AGAG", heads=4)
x = torch.cat([torch.randint(0, 2, (64, 96)), torch.arange(2, 6).expand(64, 4)], 1)
y = torch.randint(0, 2, (64, 4))
for n in (1, 2, 4):
    def step():
        logits = model(x, 24, n, [True, True, True, True, False])[:, 96:]
        F.cross_entropy(logits.reshape(-1, 6), y.reshape(-1)).backward()
    step()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(3):
        step()
    print(f"[ bench ] reference AGAG d=256 B=64 T=100 L=24 N={n}: "
          f"{(time.perf_counter() - t0) / 3 * 1e3:.1f} ms wall, {(time.process_time() - c0) / 3 * 1e3:.1f} ms CPU "
          f"per forward+backward ({torch.get_num_threads()} threads)", flush=True)
