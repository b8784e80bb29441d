// Framework-free CUDA kernels of the chunked gated delta rule (docs/delta_rule.md sections 2, 3 and
// 5): a plain params struct and two launchers that return a status; LibTorch never appears on this
// side.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace hypnos::kernels {

/// Chunk length C of every kernel (fla's default).
inline constexpr int kGdnChunk = 64;

/// Element type of q, k, v, o and of grad_o, grad_q, grad_k, grad_v.
enum class GdnDtype : int { kFloat32 = 0, kBFloat16 = 1 };

/// Which kernels run. kTensorCore (bf16 inputs only; fp32 inputs always use kFp32) does every
/// matmul with mma.sync m16n8k16 on bf16 operands staged in shared memory (fp32 accumulation,
/// state and decays); kFp32 is the first, CUDA-core version in fp32, kept selectable as the
/// known-correct fallback.
enum class GdnKernel : int { kTensorCore = 0, kFp32 = 1 };

/// Where the tensor-core forward computes o (GdnParams::forward_output).
enum class GdnForwardOutput : int {
  kAuto = 0,     ///< kInScan (until GPU measurements place the switch: docs/kernels.md)
  kInScan = 1,   ///< in the scan's step: Q S and P U beside W S and K^T U, one pass
  kSeparate = 2  ///< a scan carrying only the state, then a chunk-parallel output kernel
};

/// Everything both passes need. Layouts are contiguous, like fla:
///   q, k: [B, T, H, K] (H = heads_qk when set); v, o: [B, T, H, V]; g, beta: [B, T, H] fp32 (g is
///   a log decay, <= 0);
///   states: [B, H, K, V] fp32. Workspaces are chunk-major per (batch, head), with
///   NC = ceil(T / C): g_cum [B, H, NC, C]; w, u_tilde, u, grad_u [B, H, NC, C, V or K];
///   attn, a_inv [B, H, NC, C, C]; chunk_states, grad_chunk_states [B, H, NC, K, V] (the state's
///   own layout).
///   Packed sequences (cu_seqlens set) change only where rows are: see cu_seqlens below.
///   g_cum is fp32; the others ("typed workspaces", void*) are bf16 where
///   bf16_workspaces() (the tensor-core kernels, which use them only as bf16 MMA operands and so
///   lose nothing by storing them rounded) and fp32 otherwise.
/// Padded tokens of the last chunk behave as g = 0, beta = 0 (exact: they change nothing).
struct GdnParams {
  // ---- forward inputs
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const float* g = nullptr;
  const float* beta = nullptr;
  const float* initial_state = nullptr;  ///< may be null: zeros
  // ---- forward outputs
  void* o = nullptr;
  float* final_state = nullptr;  ///< may be null: not written
  // ---- workspaces written by the forward (and read by the backward)
  float* g_cum = nullptr;        ///< within-chunk inclusive cumsum of g
  void* w = nullptr;             ///< W = A diag(beta gamma) K
  void* u_tilde = nullptr;       ///< Ut = A diag(beta) V (forward only)
  void* attn = nullptr;          ///< P = scale (Q K^T) * R, lower triangular incl. diagonal
  void* a_inv = nullptr;         ///< A = (I + L)^-1; null with u when no backward follows
  void* u = nullptr;             ///< U = Ut - W S; null with chunk_states when no backward follows
  void* chunk_states = nullptr;  ///< the state entering each chunk
  // ---- backward inputs
  const void* grad_o = nullptr;
  const float* grad_final_state = nullptr;  ///< may be null: zeros
  // ---- backward outputs
  void* grad_q = nullptr;
  void* grad_k = nullptr;
  void* grad_v = nullptr;
  float* grad_g = nullptr;
  float* grad_beta = nullptr;
  float* grad_initial_state = nullptr;  ///< may be null: not written
  // ---- backward workspaces
  void* grad_u = nullptr;             ///< dU
  void* grad_chunk_states = nullptr;  ///< gradient w.r.t. the state leaving each chunk
  // ---- packed sequences (fla's cu_seqlens convention); both null for B sequences of T tokens
  /// N + 1 token offsets [0, ..., total], strictly increasing, on the device: q, k, v, o, g, beta
  /// and their gradients hold N = batch sequences one after another ([1, total, H, D]), sequence b
  /// being rows [cu_seqlens[b], cu_seqlens[b + 1]); seq_len is then the longest sequence's length
  /// (it sizes the chunk-parallel grids, whose CTAs past a shorter sequence's chunks return).
  /// States (initial, final and their gradients) are [N, H, K, V].
  const int64_t* cu_seqlens = nullptr;
  /// N + 1 chunk offsets on the device: chunk_offsets[b] = the sum over sequences before b of
  /// ceil(length / C). Every sequence has its own chunks (its last one partial), and the
  /// chunk-major workspaces hold H * chunk_offsets[N] of them, sequence by sequence, then head by
  /// head (the uniform batch's [B, H, NC] order when every sequence has NC chunks).
  const int64_t* chunk_offsets = nullptr;
  // ---- sizes
  int64_t batch = 0;  ///< B, or N packed sequences
  int64_t seq_len = 0;
  int64_t heads = 0;  ///< H: the heads of v, o, g, beta and the states
  /// Heads of q and k: 0 for `heads`, or a divisor of it (grouped value heads, as Qwen3-Next's
  /// layers have: value head h reads q and k head h / (heads / heads_qk); q, k are then
  /// [B, T, heads_qk, K]). grad_q and grad_k stay per value head, [B, T, heads, K]: the caller
  /// sums each group.
  int64_t heads_qk = 0;
  int head_dim_k = 0;  ///< K and V: a pair of the kernel family's list (gdn_dispatch.cuh)
  int head_dim_v = 0;
  float scale = 0.f;
  GdnDtype dtype = GdnDtype::kBFloat16;
  GdnKernel kernel = GdnKernel::kTensorCore;
  /// State columns per CTA of the tensor-core scans: 32, 64 or 128 (built where V >= 128 and
  /// K <= 128; elsewhere 128 runs 64), or 0 for the default (64, or 32 when 64 would give fewer
  /// than 128 CTAs). Tests and benchmarks set it to cover or compare the widths.
  int scan_slice = 0;
  /// Where the tensor-core forward computes o. kSeparate halves the products on the scans'
  /// sequential path (for batches of few long sequences, whose scans leave most SMs idle) at the
  /// cost of writing U and the chunk states, which a forward without backward must then be given
  /// (u, chunk_states) too. The CUDA-core kernels always compute o in the scan.
  GdnForwardOutput forward_output = GdnForwardOutput::kAuto;

  /// Chunks per sequence (of the longest one, when packed).
  __host__ __device__ int64_t n_chunks() const { return (seq_len + kGdnChunk - 1) / kGdnChunk; }
  __host__ __device__ bool packed() const { return cu_seqlens != nullptr; }
  __host__ __device__ int64_t qk_heads() const { return heads_qk != 0 ? heads_qk : heads; }
  /// Whether o comes from the separate output kernel (kSeparate on the tensor-core kernels).
  __host__ __device__ bool separate_output() const {
    return bf16_workspaces() && forward_output == GdnForwardOutput::kSeparate;
  }
  /// Whether the typed workspaces are bf16 (bf16 inputs on the tensor-core kernels) or fp32.
  __host__ __device__ bool bf16_workspaces() const {
    return dtype == GdnDtype::kBFloat16 && kernel == GdnKernel::kTensorCore;
  }
};

/// Forward: g_cum, w, u_tilde, attn, o, final_state and, when u, chunk_states and a_inv are set,
/// what the backward needs. Returns cudaSuccess or the first error (cudaErrorInvalidValue for bad
/// sizes or missing pointers).
cudaError_t gdn_chunk_fwd(const GdnParams& params, cudaStream_t stream);

/// The most dynamic shared memory (bytes) one CTA of the forward's kernels (prep and scan) asks for
/// at p's sizes, dtype, kernel family and scan slice; 0 when the kernels do not take p's sizes.
/// The caller compares it with the device's limit per block
/// (cudaDevAttrMaxSharedMemoryPerBlockOptin: 227 KB on sm_90, 163 KB on sm_80) before choosing the
/// kernels.
size_t gdn_chunk_fwd_smem_bytes(const GdnParams& params);

/// The same for the backward's kernels (reverse scan and chunk backward).
size_t gdn_chunk_bwd_smem_bytes(const GdnParams& params);

/// Backward: needs the forward's workspaces (g_cum, w, attn, a_inv, u, chunk_states) and grad_o;
/// writes grad_q, grad_k, grad_v, grad_g, grad_beta, grad_initial_state. Deterministic (no
/// atomics).
cudaError_t gdn_chunk_bwd(const GdnParams& params, cudaStream_t stream);

}  // namespace hypnos::kernels
