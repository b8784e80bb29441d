"""The reference Muon (bench/reference/sleep_reference.py, class Muon, imported unchanged from bench/reference/) on
inputs defined by formulas that C++ evaluates identically; prints the parameters after 3 steps as
float64 text for tests/train/muon_test.cpp (Muon.MatchesThePythonReference)."""
import math
import os
import sys

import torch


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench",
                                "reference"))
from sleep_reference import Muon  # noqa: E402


def table(rows, cols, f):
    return torch.tensor([[f(i, j) for j in range(cols)] for i in range(rows)],
                        dtype=torch.float64).float()


SHAPES = [(5, 8), (9, 4)]
params = [table(m, n, lambda i, j, k=k: 0.1 * math.sin(1.3 * i + 0.7 * j + k)).requires_grad_()
          for k, (m, n) in enumerate(SHAPES)]
opt = Muon(params, lr=2e-2, momentum=0.95, wd=0.1)
for t in range(3):
    for k, p in enumerate(params):
        m, n = p.shape
        p.grad = table(m, n, lambda i, j: math.cos(0.9 * i - 0.4 * j + 1.7 * t + k) * (1 + 0.5 * i))
    opt.step()
print(" ".join(repr(float(x)) for p in params for x in p.detach().flatten()))
