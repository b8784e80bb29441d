"""hypnos_ops.chunk_gated_delta_rule (python/hypnos_ops) against transformers' pure-PyTorch
torch_chunk_gated_delta_rule (Qwen3-Next) and against hypnos's own per-step reference backend:
outputs, final states and gradients, on awkward shapes (T not a multiple of the chunk, K != V,
grouped value heads, packed sequences of different lengths); on a GPU also against fla when fla is
importable. Run by ctest (python.hypnos_ops) with HYPNOS_OPS_LIBRARY pointing at the build."""
import importlib.util

import pytest
import torch

from hypnos_ops import chunk_gated_delta_rule
from transformers.models.qwen3_next.modeling_qwen3_next import torch_chunk_gated_delta_rule


def relative_error(x, ref):
    x, ref = x.detach().double().cpu(), ref.detach().double().cpu()
    den = ref.norm().item()
    return (x - ref).norm().item() / den if den > 0 else (x - ref).norm().item()


def make_inputs(B, T, H, K, V, HV=None, dtype=torch.float32, device="cpu", seed=0):
    HV = HV or H
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=gen, dtype=torch.float64)
    k = torch.nn.functional.normalize(
        torch.randn(B, T, H, K, generator=gen, dtype=torch.float64), dim=-1)
    v = torch.randn(B, T, HV, V, generator=gen, dtype=torch.float64)
    g = -torch.rand(B, T, HV, generator=gen, dtype=torch.float64) * 0.5  # log decay <= 0
    beta = torch.rand(B, T, HV, generator=gen, dtype=torch.float64)
    h0 = torch.randn(B, HV, K, V, generator=gen, dtype=torch.float64) * 0.1
    state_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    return ([x.to(device=device, dtype=dtype) for x in (q, k, v, g, beta)] +
            [h0.to(device=device, dtype=state_dtype)])


def leaves(tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def loss_of(o, final, seed=1):
    gen = torch.Generator().manual_seed(seed)
    wo = torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o)
    ws = torch.randn(final.shape, generator=gen, dtype=torch.float64).to(final)
    return (o * wo).sum() + (final * ws).sum()


# (B, T, H, K, V, HV): T past one chunk and not a multiple of 64; K != V (Jet-Nemotron's 96 x 256
# scaled down); grouped value heads (HV = 2 H).
SHAPES = [(2, 37, 2, 16, 16, None), (1, 130, 3, 32, 16, None), (2, 70, 2, 24, 40, None),
          (1, 67, 2, 16, 32, 4)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("l2norm", [False, True])
def test_matches_transformers_forward_and_gradients(shape, l2norm):
    B, T, H, K, V, HV = shape
    inputs = make_inputs(B, T, H, K, V, HV)
    ours_in, theirs_in = leaves(inputs), leaves(inputs)
    o, final = chunk_gated_delta_rule(*ours_in[:5], initial_state=ours_in[5],
                                      output_final_state=True, use_qk_l2norm_in_kernel=l2norm)
    o_ref, final_ref = torch_chunk_gated_delta_rule(*theirs_in[:5], initial_state=theirs_in[5],
                                                    output_final_state=True,
                                                    use_qk_l2norm_in_kernel=l2norm)
    assert o.shape == o_ref.shape and final.shape == final_ref.shape
    assert final.dtype == torch.float32
    assert relative_error(o, o_ref) < 1e-5
    assert relative_error(final, final_ref) < 1e-5
    loss_of(o, final).backward()
    loss_of(o_ref.to(o.dtype), final_ref).backward()
    for name, ours, theirs in zip("q k v g beta h0".split(), ours_in, theirs_in):
        assert relative_error(ours.grad, theirs.grad) < 1e-4, name


def test_matches_the_reference_backend_in_double_with_gradients():
    inputs = make_inputs(2, 45, 2, 8, 12, 4, dtype=torch.float64)
    a, b = leaves(inputs), leaves(inputs)
    o, s = chunk_gated_delta_rule(*a[:5], initial_state=a[5], output_final_state=True,
                                  backend="chunked")
    o_ref, s_ref = chunk_gated_delta_rule(*b[:5], initial_state=b[5], output_final_state=True,
                                          backend="reference")
    assert relative_error(o, o_ref) < 1e-12 and relative_error(s, s_ref) < 1e-12
    loss_of(o, s).backward()
    loss_of(o_ref, s_ref).backward()
    for name, x, y in zip("q k v g beta h0".split(), a, b):
        assert relative_error(x.grad, y.grad) < 1e-10, name


def test_gradients_match_finite_differences():
    inputs = make_inputs(1, 9, 2, 4, 3, dtype=torch.float64)
    def f(q, k, v, g, beta, h0):
        o, s = chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                      scale=0.7)
        return o, s
    assert torch.autograd.gradcheck(f, tuple(leaves(inputs)), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", ["chunked", "reference"])
def test_packed_sequences_equal_each_sequence_alone(backend):
    lengths = [5, 70, 1, 33]
    T, H, K, V = sum(lengths), 2, 8, 16
    inputs = make_inputs(1, T, H, K, V)
    h0 = torch.randn(len(lengths), H, K, V, generator=torch.Generator().manual_seed(2))
    packed = leaves(inputs[:5] + [h0])
    cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)
    o, s = chunk_gated_delta_rule(*packed[:5], initial_state=packed[5], output_final_state=True,
                                  cu_seqlens=cu, backend=backend)
    assert o.shape == (1, T, H, V) and s.shape == (len(lengths), H, K, V)
    gen = torch.Generator().manual_seed(3)
    wo, ws = torch.randn(o.shape, generator=gen), torch.randn(s.shape, generator=gen)
    ((o * wo).sum() + (s * ws).sum()).backward()
    # Each sequence alone, under its slice of the same cotangents: equal outputs, final state and
    # gradients (the packed loss is a sum over the sequences).
    start = 0
    for i, n in enumerate(lengths):
        alone = leaves([x[:, start:start + n] for x in inputs[:5]] + [h0[i:i + 1]])
        o_i, s_i = chunk_gated_delta_rule(*alone[:5], initial_state=alone[5],
                                          output_final_state=True, backend=backend)
        assert relative_error(o[:, start:start + n], o_i) < 1e-6, i
        assert relative_error(s[i:i + 1], s_i) < 1e-6, i
        ((o_i * wo[:, start:start + n]).sum() + (s_i * ws[i:i + 1]).sum()).backward()
        for name, p, a in zip("q k v g beta".split(), packed[:5], alone[:5]):
            assert relative_error(p.grad[:, start:start + n], a.grad) < 1e-5, (name, i)
        assert relative_error(packed[5].grad[i:i + 1], alone[5].grad) < 1e-5, ("h0", i)
        start += n


def test_final_state_is_none_unless_asked_and_scale_defaults_to_k_to_the_minus_half():
    q, k, v, g, beta, _ = make_inputs(1, 10, 2, 16, 8)
    o, s = chunk_gated_delta_rule(q, k, v, g, beta)
    assert s is None
    o2, _ = chunk_gated_delta_rule(q, k, v, g, beta, scale=16 ** -0.5)
    assert torch.equal(o, o2)
    o3, _ = chunk_gated_delta_rule(q, k, v, g, beta, scale=1.0)
    assert not torch.allclose(o, o3)


@pytest.mark.parametrize("bad, message", [
    (lambda a: (a[0][..., :-1],) + tuple(a[1:]), "q"),
    (lambda a: a[:2] + (a[2][:, :, :1],) + a[3:], "multiple"),
])
def test_bad_shapes_name_the_argument(bad, message):
    args = tuple(make_inputs(1, 8, 2, 8, 8)[:5])
    with pytest.raises((RuntimeError, ValueError), match=message):  # ValueError: the op's own check
        chunk_gated_delta_rule(*bad(args))


def test_bad_cu_seqlens_are_refused_naming_them():
    # The C++ op validates cu_seqlens: its std::invalid_argument reaches Python as ValueError.
    q, k, v, g, beta, _ = make_inputs(1, 10, 2, 8, 8)
    for cu, message in [([0, 4, 9], "end at T = 10"), ([0, 4, 4, 10], "is empty"),
                        ([1, 10], "start at 0")]:
        with pytest.raises((RuntimeError, ValueError), match=message):
            chunk_gated_delta_rule(q, k, v, g, beta, cu_seqlens=torch.tensor(cu))
    q2, k2, v2, g2, b2, _ = make_inputs(2, 10, 2, 8, 8)
    with pytest.raises((RuntimeError, ValueError), match="batch must be 1"):
        chunk_gated_delta_rule(q2, k2, v2, g2, b2, cu_seqlens=torch.tensor([0, 10]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.skipif(importlib.util.find_spec("fla") is None, reason="needs fla (fla-core)")
def test_matches_fla_on_a_gpu():
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule as fla_chunk
    inputs = make_inputs(2, 300, 4, 64, 64, dtype=torch.bfloat16, device="cuda")
    o, s = chunk_gated_delta_rule(*inputs[:5], initial_state=inputs[5], output_final_state=True)
    o_ref, s_ref = fla_chunk(*inputs[:5], initial_state=inputs[5], output_final_state=True)
    assert relative_error(o, o_ref) < 2e-2 and relative_error(s, s_ref) < 2e-2
