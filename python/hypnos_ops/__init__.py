"""hypnos's gated delta rule for Python: a drop-in for fla's ``chunk_gated_delta_rule``.

    from hypnos_ops import chunk_gated_delta_rule
    o, final_state = chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0,
                                            output_final_state=True)

Same arguments, layout and results as fla (q, k: [B, T, H, K]; v: [B, T, HV, V] with HV a multiple
of H; g (log decay, <= 0) and beta: [B, T, HV]; states [N, HV, K, V] in fp32), CPU and CUDA tensors,
differentiable in every tensor input. The op runs in C++ (torch.ops.hypnos.chunk_gated_delta_rule,
from the library the hypnos build makes: libhypnos_ops_python.so); its backend is chosen per call
with ``backend`` ("auto", "chunked", "reference" or "cuda"; "auto" takes the CUDA kernels for CUDA
tensors of the shapes they support, else the chunked ATen form).
"""
import os
import pathlib

import torch

__all__ = ["chunk_gated_delta_rule", "library_path"]

_LIBRARY = "libhypnos_ops_python.so"


def library_path() -> pathlib.Path:
    """HYPNOS_OPS_LIBRARY if set, else the build folder of the checkout this package lives in
    (HYPNOS_BUILD_DIR, default ``build``)."""
    explicit = os.environ.get("HYPNOS_OPS_LIBRARY")
    if explicit:
        return pathlib.Path(explicit)
    root = pathlib.Path(__file__).resolve().parents[2]
    return root / os.environ.get("HYPNOS_BUILD_DIR", "build") / _LIBRARY


def _load() -> None:
    path = library_path()
    if not path.is_file():
        raise ImportError(
            f"hypnos_ops: {path} does not exist; build hypnos first (scripts/setup.sh) or set "
            "HYPNOS_OPS_LIBRARY to the built libhypnos_ops_python.so")
    torch.ops.load_library(str(path))


_load()


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None,
                           output_final_state=False, cu_seqlens=None,
                           use_qk_l2norm_in_kernel=False, backend="auto"):
    """S_t = exp(g_t) S_{t-1} + k_t u_t^T, u_t = beta_t (v_t - exp(g_t) S_{t-1}^T k_t),
    o_t = scale S_t^T q_t; scale defaults to K ** -0.5.

    cu_seqlens (int32/int64 offsets [0, ..., T], B = 1) packs sequences along T: each starts from
    its own initial state (initial_state [N, HV, K, V]) and returns its own final state.
    Returns (o [B, T, HV, V] in v's dtype, final_state [N, HV, K, V] fp32 or None).
    """
    o, final_state = torch.ops.hypnos.chunk_gated_delta_rule(
        q, k, v, g, beta, -1.0 if scale is None else float(scale), initial_state, cu_seqlens,
        bool(use_qk_l2norm_in_kernel), backend)
    return o, (final_state if output_final_state else None)
