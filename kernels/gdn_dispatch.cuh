// The one size check and the one dispatch of the gated-delta-rule launchers (gdn_chunk_fwd,
// gdn_chunk_bwd, and the tensor-core launchers behind them): which head dims the kernels are built
// for, whether a GdnParams is one they handle, and the head dims x element type x kernel family
// switch that picks the template instantiation.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "gdn.h"

namespace hypnos::kernels::detail {

/// The head dims of q, k (K) and of v, o (V) of one instantiation of the kernels.
template <int K, int V>
struct HeadDims {
  static constexpr int kK = K, kV = V;
};
template <class... Dims>
struct HeadDimList {};

/// Every (K, V) each kernel family is instantiated for: the size check accepts exactly these for
/// the family p selects (GdnParams::bf16_workspaces: the tensor-core kernels, else the CUDA-core
/// ones), and with_head_dims (so every launcher) instantiates exactly these.
/// Both families take every K in {64, 96, 128, 256} with every V in {64, 128, 256}; the lists
/// stay separate so that one family can leave out a pair its resources do not allow.
using GdnHeadDims =
    HeadDimList<HeadDims<64, 64>, HeadDims<64, 128>, HeadDims<64, 256>, HeadDims<96, 64>,
                HeadDims<96, 128>, HeadDims<96, 256>, HeadDims<128, 64>, HeadDims<128, 128>,
                HeadDims<128, 256>, HeadDims<256, 64>, HeadDims<256, 128>, HeadDims<256, 256>>;
using TensorCoreHeadDims = GdnHeadDims;
using CudaCoreHeadDims = GdnHeadDims;

template <class... Dims>
constexpr bool listed_head_dims(HeadDimList<Dims...>, int k, int v) {
  return ((k == Dims::kK && v == Dims::kV) || ...);
}

/// Calls launch(Dims{}) for the entry of the list that is p's (K, V) and returns its status;
/// cudaErrorInvalidValue for dims not in the list.
template <class Launch, class... Dims>
cudaError_t with_head_dims(const GdnParams& p, Launch&& launch, HeadDimList<Dims...>) {
  cudaError_t status = cudaErrorInvalidValue;
  (void)((p.head_dim_k == Dims::kK && p.head_dim_v == Dims::kV ? (status = launch(Dims{}), true)
                                                               : false) ||
         ...);
  return status;
}

/// bytes(Dims{}) for the entry of `list` that is p's (K, V), 0 for dims not in it: the shared
/// memory queries read the same layouts the launchers do through the same list.
template <class Bytes, class List>
size_t head_dims_bytes(const GdnParams& p, Bytes&& bytes, List list) {
  size_t out = 0;
  with_head_dims(
      p,
      [&](auto dims) {
        out = bytes(dims);
        return cudaSuccess;
      },
      list);
  return out;
}

/// The kernel families of GdnKernel, as types: the bf16 tensor-core kernels, or the CUDA-core fp32
/// ones (for fp32 inputs always, for bf16 inputs with GdnKernel::kFp32).
struct TensorCoreKernels {};
struct CudaCoreKernels {};

/// Calls launch(Dims{}, T{}, Family{}) for p's head dims, element type T (float or __nv_bfloat16)
/// and kernel family, and returns its status: the one place that maps GdnParams to an
/// instantiation. Instantiated: every TensorCoreHeadDims entry with (bf16, TensorCoreKernels),
/// every CudaCoreHeadDims entry with (bf16, CudaCoreKernels) and (float, CudaCoreKernels).
template <class Launch>
cudaError_t dispatch(const GdnParams& p, Launch&& launch) {
  if (p.bf16_workspaces()) {
    return with_head_dims(
        p, [&](auto dims) { return launch(dims, __nv_bfloat16{}, TensorCoreKernels{}); },
        TensorCoreHeadDims{});
  }
  return with_head_dims(
      p,
      [&](auto dims) {
        return p.dtype == GdnDtype::kBFloat16 ? launch(dims, __nv_bfloat16{}, CudaCoreKernels{})
                                              : launch(dims, float{}, CudaCoreKernels{});
      },
      CudaCoreHeadDims{});
}

/// Whether p's (K, V) is one the family p selects is built for.
inline bool head_dims_supported(const GdnParams& p) {
  return p.bf16_workspaces() ? listed_head_dims(TensorCoreHeadDims{}, p.head_dim_k, p.head_dim_v)
                             : listed_head_dims(CudaCoreHeadDims{}, p.head_dim_k, p.head_dim_v);
}

/// Sizes both passes handle: (K, V) in the family's list, B (or N packed sequences), T, H
/// positive, B * T (at least the tokens when packed) below 2^31 (detail::Sequence counts them in
/// 32 bits), heads_qk 0 or a divisor of H, B * H within a grid's y (65535), cu_seqlens and
/// chunk_offsets both set or neither, and a scan slice of 0 (the default), 32, 64 or 128.
inline bool sizes_supported(const GdnParams& p) {
  return head_dims_supported(p) && p.batch > 0 && p.seq_len > 0 && p.heads > 0 &&
         p.batch * p.seq_len < (int64_t(1) << 31) && p.heads_qk >= 0 &&
         (p.heads_qk == 0 || p.heads % p.heads_qk == 0) && p.batch * p.heads <= 65535 &&
         (p.cu_seqlens == nullptr) == (p.chunk_offsets == nullptr) &&
         (p.scan_slice == 0 || p.scan_slice == 32 || p.scan_slice == 64 || p.scan_slice == 128);
}

/// bytes(Dims{}, T{}, Family{}) for p's instantiation (dispatch's), 0 for sizes the kernels do not
/// take (sizes_supported): gdn_chunk_fwd_smem_bytes and gdn_chunk_bwd_smem_bytes.
template <class Bytes>
size_t dispatch_bytes(const GdnParams& p, Bytes&& bytes) {
  if (!sizes_supported(p)) return 0;
  size_t out = 0;
  dispatch(p, [&](auto dims, auto element, auto family) {
    out = bytes(dims, element, family);
    return cudaSuccess;
  });
  return out;
}

/// What gdn_chunk_fwd reads and writes is set: the inputs, o and the workspaces; u and
/// chunk_states both or neither, both when a backward follows (a_inv set) or o comes from the
/// separate output kernel.
inline bool forward_pointers_set(const GdnParams& p) {
  const bool states = p.u != nullptr && p.chunk_states != nullptr;
  return p.q && p.k && p.v && p.g && p.beta && p.o && p.g_cum && p.w && p.u_tilde && p.attn &&
         (p.u == nullptr) == (p.chunk_states == nullptr) && (p.a_inv == nullptr || states) &&
         (!p.separate_output() || states);
}

/// What gdn_chunk_bwd reads and writes is set: the forward's inputs and workspaces, grad_o, the
/// gradients (grad_initial_state may be null) and the backward's workspaces.
inline bool backward_pointers_set(const GdnParams& p) {
  return p.q && p.k && p.v && p.beta && p.g_cum && p.w && p.attn && p.a_inv && p.u &&
         p.chunk_states && p.grad_o && p.grad_q && p.grad_k && p.grad_v && p.grad_g &&
         p.grad_beta && p.grad_u && p.grad_chunk_states;
}

}  // namespace hypnos::kernels::detail
