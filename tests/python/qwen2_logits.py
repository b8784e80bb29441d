#!/usr/bin/env python3
"""Logits of a Jet-Nemotron checkpoint whose layers are all `attn`, computed by transformers' own
Qwen2ForCausalLM (eager attention, CPU, fp32): such a Jet-Nemotron is the Qwen2 decoder.
    python3 qwen2_logits.py CKPT_DIR TOKENS.txt OUT.safetensors
CKPT_DIR: config.json plus model.safetensors or a sharded index (bench/reference/pretrained_reference.py
--make-tiny jet_nemotron_attn writes one). The config maps field by field to a Qwen2Config; the
checkpoint's tensor names must be exactly Qwen2ForCausalLM's parameter names (a tied lm_head.weight may be
absent), and each tensor's shape the parameter's. Writes `logits` [B, T, vocab] fp32 and `tokens`."""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

ckpt, tokens_path, out = sys.argv[1:4]
with open(os.path.join(ckpt, "config.json")) as f:
    cfg = json.load(f)
if cfg.get("model_type") != "jet_nemotron" or set(cfg["layer_types"]) != {"attn"}:
    sys.exit(f"{ckpt}: expected a jet_nemotron config whose layer_types are all attn")
qcfg = Qwen2Config(
    vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
    intermediate_size=cfg["intermediate_size"], num_hidden_layers=cfg["num_hidden_layers"],
    num_attention_heads=cfg["num_attention_heads"], num_key_value_heads=cfg["num_key_value_heads"],
    hidden_act=cfg["hidden_act"], max_position_embeddings=cfg["max_position_embeddings"],
    rms_norm_eps=cfg["rms_norm_eps"], tie_word_embeddings=cfg["tie_word_embeddings"],
    rope_parameters={"rope_type": "default", "rope_theta": cfg["rope_theta"]},
    use_sliding_window=False, layer_types=["full_attention"] * cfg["num_hidden_layers"])
qcfg._attn_implementation = "eager"
model = Qwen2ForCausalLM(qcfg).eval()

index = os.path.join(ckpt, "model.safetensors.index.json")
if os.path.exists(index):
    with open(index) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
else:
    files = ["model.safetensors"]
sd = {}
for name in files:
    sd.update(load_file(os.path.join(ckpt, name)))
want = {k: v for k, v in model.state_dict().items()}
tied = cfg["tie_word_embeddings"]
missing = sorted(k for k in want if k not in sd and not (tied and k == "lm_head.weight"))
unexpected = sorted(k for k in sd if k not in want)
shapes = sorted(k for k in sd if k in want and sd[k].shape != want[k].shape)
if missing or unexpected or shapes:
    sys.exit(f"names differ from Qwen2ForCausalLM's: missing {missing}, unexpected {unexpected}, "
             f"shape mismatch {shapes}")
model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
if tied:
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "head not tied"

with open(tokens_path) as f:
    ids = torch.tensor([[int(x) for x in line.split()] for line in f if line.strip()], dtype=torch.int64)
with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
save_file({"logits": logits.float().contiguous(), "tokens": ids.to(torch.int32)}, out)
print(f"wrote {out}: logits {list(logits.shape)} from {len(sd)} tensors in {len(files)} file(s)")
