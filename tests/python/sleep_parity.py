#!/usr/bin/env python3
"""Parity helper for tests/sleep/parity_test.cpp: runs the model of /work/shared/reference/
sleep_reference.py (the classes below are copied verbatim from it) on weights exported by hypnos,
and compares its logits with hypnos's.
    python3 sleep_parity.py IN.safetensors OUT.json [IN2.safetensors OUT2.json ...]
IN holds hypnos's parameters (HF-style names), `tokens` [B, T] and `logits` [B, T, vocab] (hypnos's
wake logits); its metadata gives pattern, n_heads, window and passes. The reference returns each window's
last-pass logits, which equal the wake logits on windows that do not sleep: the comparison covers
all positions for N = 1 and the last window for N > 1. OUT gets {"rel_err": ..., "positions": ...}.

Name mapping, hypnos -> reference:
    embed.weight -> emb.weight;  norm.weight -> norm.w;  lm_head.weight -> head.weight
    blocks.i.mixer_norm.weight -> blocks.i.n1.w;  blocks.i.mlp_norm.weight -> blocks.i.n2.w
    blocks.i.mlp.up_proj.weight -> blocks.i.mlp.0.weight;  .down_proj -> blocks.i.mlp.2.weight
    attention: cat(q_proj, k_proj, v_proj) -> mix.qkv.weight;  o_proj -> mix.o.weight
    GDN: {q,k,v,g,a,b}_proj -> mix.{q,k,v,gate,a,b}.weight;  {q,k,v}_conv -> mix.conv.{0,1,2}.weight;
         A_log, dt_bias -> mix.A_log, mix.dt_bias;  o_norm.weight -> mix.norm.w;  o_proj -> mix.o.weight
"""
import json, math, struct, sys
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F


def read_safetensors(path):
    """Minimal safetensors reader (struct + json + numpy)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
    out = {}
    meta = header.get("__metadata__", {})
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        arr = np.frombuffer(data[b:end], dtype=dtypes[e["dtype"]]).reshape(e["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out, meta


# ---- copied from sleep_reference.py -------------------------------------------------------------
def gdn_chunk(q, k, v, g, beta, S0):
    """One chunk of the gated delta rule. q,k [B,H,C,K] (k l2-normed), v [B,H,C,V], g,beta [B,H,C],
    S0 [B,H,K,V]. Returns o [B,H,C,V], S_C [B,H,K,V]."""
    C = q.shape[2]
    G = torch.cumsum(g, dim=-1)                                   # log gamma
    diff = G.unsqueeze(-1) - G.unsqueeze(-2)                      # [B,H,C,C] G_i - G_j
    incl = torch.tril(torch.ones(C, C, dtype=torch.bool, device=q.device))
    strict = torch.tril(torch.ones(C, C, dtype=torch.bool, device=q.device), -1)
    decay = torch.exp(diff.masked_fill(~incl, -1e30))            # gamma_i/gamma_j for i>=j else 0
    A = (beta.unsqueeze(-1) * (k @ k.transpose(-1, -2)) * decay).masked_fill(~strict, 0.0)
    I = torch.eye(C, device=q.device, dtype=q.dtype).expand_as(A)
    rhs = beta.unsqueeze(-1) * (v - torch.exp(G).unsqueeze(-1) * (k @ S0))   # beta (v - gamma k S0)
    u = torch.linalg.solve_triangular(I + A, rhs, upper=False, unitriangular=True)
    o = torch.exp(G).unsqueeze(-1) * (q @ S0) + ((q @ k.transpose(-1, -2)) * decay) @ u
    GC = G[..., -1:]
    S = torch.exp(GC).unsqueeze(-1) * S0 + (torch.exp(GC - G).unsqueeze(-1) * k).transpose(-1, -2) @ u
    return o, S


def gdn_naive(q, k, v, g, beta, S0):
    """Per-step recurrence, the oracle for gdn_chunk."""
    S = S0
    outs = []
    for t in range(q.shape[2]):
        kt, vt, qt = k[:, :, t], v[:, :, t], q[:, :, t]
        a = torch.exp(g[:, :, t])[..., None, None]
        S = a * S
        u = beta[:, :, t, None] * (vt - (kt.unsqueeze(-2) @ S).squeeze(-2))
        S = S + kt.unsqueeze(-1) * u.unsqueeze(-2)
        outs.append((qt.unsqueeze(-2) @ S).squeeze(-2))
    return torch.stack(outs, 2), S


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__(); self.w = nn.Parameter(torch.ones(d)); self.eps = eps
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w


def rope(x):  # x [B,H,T,D]
    T, D = x.shape[2], x.shape[3]
    inv = 1.0 / (10000 ** (torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D))
    ang = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * inv[None]
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)


class Attn(nn.Module):
    def __init__(self, d, h):
        super().__init__(); self.h = h; self.qkv = nn.Linear(d, 3 * d, bias=False); self.o = nn.Linear(d, d, bias=False)
    def forward(self, x, state):
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)  # cache = this window only
        else:
            q, k = rope(q), rope(k); att = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), 1), float("-inf"))
            y = att.softmax(-1) @ v
        return self.o(y.transpose(1, 2).reshape(B, T, D)), state


class GDN(nn.Module):
    def __init__(self, d, h, dk, dv, conv=4):
        super().__init__()
        self.h, self.dk, self.dv = h, dk, dv
        self.q, self.k = nn.Linear(d, h * dk, bias=False), nn.Linear(d, h * dk, bias=False)
        self.v, self.gate = nn.Linear(d, h * dv, bias=False), nn.Linear(d, h * dv, bias=False)
        self.a, self.b = nn.Linear(d, h, bias=False), nn.Linear(d, h, bias=False)
        self.conv = nn.ModuleList([nn.Conv1d(c, c, conv, groups=c, padding=conv - 1, bias=False) for c in (h * dk, h * dk, h * dv)])
        A = torch.empty(h).uniform_(1, 16); self.A_log = nn.Parameter(torch.log(A))
        dt = torch.exp(torch.rand(h) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.norm = RMSNorm(dv); self.o = nn.Linear(h * dv, d, bias=False)
    def forward(self, x, S0):
        B, T, _ = x.shape
        def cv(i, y): return F.silu(self.conv[i](y.transpose(1, 2))[..., :T].transpose(1, 2))
        q = cv(0, self.q(x)).view(B, T, self.h, self.dk).transpose(1, 2)
        k = cv(1, self.k(x)).view(B, T, self.h, self.dk).transpose(1, 2)
        v = cv(2, self.v(x)).view(B, T, self.h, self.dv).transpose(1, 2)
        q = F.normalize(q, dim=-1) * self.dk ** -0.5; k = F.normalize(k, dim=-1)
        beta = torch.sigmoid(self.b(x)).transpose(1, 2)
        g = (-self.A_log.exp() * F.softplus(self.a(x) + self.dt_bias)).transpose(1, 2)
        if S0 is None: S0 = x.new_zeros(B, self.h, self.dk, self.dv)
        o, S = gdn_chunk(q, k, v, g, beta, S0)
        o = self.norm(o.transpose(1, 2)) * F.silu(self.gate(x).view(B, T, self.h, self.dv))
        return self.o(o.reshape(B, T, -1)), S


class Block(nn.Module):
    def __init__(self, d, mixer):
        super().__init__(); self.n1, self.n2 = RMSNorm(d), RMSNorm(d); self.mix = mixer
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d, bias=False), nn.GELU(), nn.Linear(4 * d, d, bias=False))
    def forward(self, x, S):
        y, S = self.mix(self.n1(x), S); x = x + y
        return x + self.mlp(self.n2(x)), S


class HybridLM(nn.Module):
    def __init__(self, vocab, d=256, pattern="AGAG", heads=4):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList([Block(d, Attn(d, heads) if c == "A" else GDN(d, heads, d // heads, d // heads)) for c in pattern])
        self.norm, self.head = RMSNorm(d), nn.Linear(d, vocab, bias=False)
    def forward(self, x, window, passes, consolidate_mask):
        """x [B,T]; windows of `window` tokens; a window whose loss mask is empty gets `passes` passes."""
        S = [None] * len(self.blocks); logits = []
        for c0 in range(0, x.shape[1], window):
            h = self.emb(x[:, c0:c0 + window])
            n = passes if consolidate_mask[c0 // window] else 1
            for _ in range(n):                       # h and S thread through the passes
                for i, b in enumerate(self.blocks):
                    h, S[i] = b(h, S[i])
            logits.append(self.head(self.norm(h)))   # KV cache (this window's attention) is dropped here
        return torch.cat(logits, 1)


# ---- end of the copy ----------------------------------------------------------------------------


def reference_state_dict(hyp, pattern):
    sd = {"emb.weight": hyp["embed.weight"], "norm.w": hyp["norm.weight"],
          "head.weight": hyp["lm_head.weight"]}
    for i, kind in enumerate(pattern):
        p, r = f"blocks.{i}.", f"blocks.{i}."
        sd[r + "n1.w"] = hyp[p + "mixer_norm.weight"]
        sd[r + "n2.w"] = hyp[p + "mlp_norm.weight"]
        sd[r + "mlp.0.weight"] = hyp[p + "mlp.up_proj.weight"]
        sd[r + "mlp.2.weight"] = hyp[p + "mlp.down_proj.weight"]
        m = p + "mixer."
        if kind == "A":
            sd[r + "mix.qkv.weight"] = torch.cat([hyp[m + "q_proj.weight"], hyp[m + "k_proj.weight"],
                                                  hyp[m + "v_proj.weight"]], 0)
        else:
            for a, b in (("q", "q"), ("k", "k"), ("v", "v"), ("g", "gate"), ("a", "a"), ("b", "b")):
                sd[r + f"mix.{b}.weight"] = hyp[m + f"{a}_proj.weight"]
            for j, c in enumerate("qkv"):
                sd[r + f"mix.conv.{j}.weight"] = hyp[m + f"{c}_conv.weight"]
            sd[r + "mix.A_log"] = hyp[m + "A_log"]
            sd[r + "mix.dt_bias"] = hyp[m + "dt_bias"]
            sd[r + "mix.norm.w"] = hyp[m + "o_norm.weight"]
        sd[r + "mix.o.weight"] = hyp[m + "o_proj.weight"]
    return sd


def compare(in_path, out_path):
    t, meta = read_safetensors(in_path)
    tokens, ours = t["tokens"], t["logits"]
    window, passes, pattern = int(meta["window"]), int(meta["passes"]), meta["pattern"]
    vocab, d = t["embed.weight"].shape
    model = HybridLM(vocab, d=d, pattern=pattern, heads=int(meta["n_heads"]))
    model.load_state_dict(reference_state_dict(t, pattern), strict=True)
    T = tokens.shape[1]
    n_windows = (T + window - 1) // window
    with torch.no_grad():
        ref = model(tokens, window, passes, [w < n_windows - 1 for w in range(n_windows)])
    first = 0 if passes == 1 else (n_windows - 1) * window
    a, b = ours[:, first:].double(), ref[:, first:].double()
    err = ((a - b).norm() / b.norm()).item()
    result = {"rel_err": err, "positions": T - first, "pattern": pattern, "passes": passes}
    json.dump(result, open(out_path, "w"))
    print(json.dumps(result))


def main():
    args = sys.argv[1:]
    for i in range(0, len(args), 2):
        compare(args[i], args[i + 1])


if __name__ == "__main__":
    main()
