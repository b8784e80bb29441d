#!/usr/bin/env python3
"""Parity helper for tests/sleep/parity_test.cpp: runs the model of the executable reference
bench/reference/sleep_reference.py (imported unchanged) on weights exported by hypnos, and compares
its logits with hypnos's.
    python3 sleep_parity.py IN.safetensors OUT.json [IN2.safetensors OUT2.json ...]
IN holds hypnos's parameters (HF-style names), `tokens` [B, T] and `logits` [B, T, vocab] (hypnos's
wake logits); its metadata gives pattern, n_heads, window and passes. The reference returns every
window's wake (first-pass) logits, so every position is compared, in the windows that sleep too.
OUT gets {"rel_err": ..., "positions": ...}.

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


# The reference model itself: bench/reference/sleep_reference.py, kept unchanged.
import os  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench",
                                "reference"))
from sleep_reference import HybridLM  # noqa: E402,F401


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
    a, b = ours.double(), ref.double()
    err = ((a - b).norm() / b.norm()).item()
    result = {"rel_err": err, "positions": T, "pattern": pattern, "passes": passes}
    json.dump(result, open(out_path, "w"))
    print(json.dumps(result))


def main():
    args = sys.argv[1:]
    for i in range(0, len(args), 2):
        compare(args[i], args[i + 1])


if __name__ == "__main__":
    main()
