"""The reference Muon (shared/reference/sleep_reference.py, class Muon, copied verbatim below) on
inputs defined by formulas that C++ evaluates identically; prints the parameters after 3 steps as
float64 text for tests/train/muon_test.cpp (Muon.MatchesThePythonReference)."""
import math
import torch


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr=2e-3, momentum=0.95, wd=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, wd=wd))
    @torch.no_grad()
    def step(self):
        for gr in self.param_groups:
            for p in gr["params"]:
                if p.grad is None: continue
                st = self.state[p]
                if "m" not in st: st["m"] = torch.zeros_like(p)
                m = st["m"]; m.mul_(gr["momentum"]).add_(p.grad)
                u = p.grad.add(m, alpha=gr["momentum"])          # nesterov
                X = u / (u.norm() + 1e-7); tr = X.shape[0] > X.shape[1]
                if tr: X = X.T
                for _ in range(5):
                    A = X @ X.T; X = 3.4445 * X + (-4.7750 * A + 2.0315 * A @ A) @ X
                if tr: X = X.T
                p.mul_(1 - gr["lr"] * gr["wd"]).add_(X, alpha=-gr["lr"] * 0.2 * math.sqrt(max(p.shape)))  # noqa: E501


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
