// Forward of the chunked gated delta rule: a chunk-parallel prep kernel (cumsum, K K^T, the
// unit-lower inverse, W, Ut, P) and a scan over chunks per (sequence, head, V-slice) that carries
// the fp32 state and writes the output in the same pass. This file holds the entry point, both
// prep kernels (CUDA-core fp32 and bf16 tensor-core) and the CUDA-core scan; bf16 inputs take the
// tensor-core scan of gdn_chunk_scan_tc.cu.
#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "gdn.h"
#include "gdn_common.cuh"
#include "gdn_dispatch.cuh"
#include "gdn_mma.cuh"
#include "gdn_stage.cuh"
#include "gdn_tc.h"

namespace hypnos::kernels {
namespace {

using detail::Frag;
using detail::kC;
using detail::kThreads;
using detail::load;
using detail::store_pair;

/// Row strides of the CUDA-core prep kernel's fp32 tiles: odd, so column walks hit distinct banks.
template <int D>
inline constexpr int kPrepLd = D + 1;
inline constexpr int kPrepLc = kC + 1;

template <int D>
constexpr size_t prep_smem_bytes() {
  return sizeof(float) * (2 * kC * kPrepLd<D> + 2 * kC * kPrepLc + 3 * kC);
}

/// The per-token gates of a prep CTA, [C] fp32 each in shared memory, one after another from the
/// base pointer: G (g, then its inclusive cumsum within the chunk), beta, and beta exp(G) (the row
/// scale of Z = diag(beta gamma) K).
struct PrepGates {
  float *g, *beta, *zs;
  __device__ explicit PrepGates(float* base) : g(base), beta(g + kC), zs(beta + kC) {}
};

/// The chunk's rows of q, k, v (row stride H D) as a prep kernel reads them.
template <typename T, int D>
struct PrepInputs {
  int64_t row_stride;
  const T *q, *k, *v;
  __device__ PrepInputs(const GdnParams& p, int64_t tok)
      : row_stride(p.heads * D),
        q(static_cast<const T*>(p.q) + tok),
        k(static_cast<const T*>(p.k) + tok),
        v(static_cast<const T*>(p.v) + tok) {}
};

/// g and beta of the chunk's tokens (zero past them) into gates.g, gates.beta; gates.g becomes the
/// inclusive cumsum G (one warp scans 64 values, two per lane), written to g_cum; gates.zs =
/// beta exp(G). Every thread calls it; it synchronises (the caller's shared writes before it are
/// ordered too).
__device__ void load_gates_and_cumsum(const GdnParams& p, const detail::ChunkCta& c,
                                      const PrepGates& gates) {
  float *s_g = gates.g, *s_beta = gates.beta, *s_zs = gates.zs;
  const int tid = threadIdx.x;
  if (tid < kC) {
    const bool ok = tid < c.n_valid;
    const int64_t gi = (c.b * p.seq_len + c.t0 + tid) * p.heads + c.h;
    s_g[tid] = ok ? p.g[gi] : 0.f;
    s_beta[tid] = ok ? p.beta[gi] : 0.f;
  }
  __syncthreads();
  if (tid < 32) {
    float lo = s_g[2 * tid], hi = s_g[2 * tid + 1];
    float s = lo + hi;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float t = __shfl_up_sync(0xffffffffu, s, o);
      if (tid >= o) s += t;
    }
    s_g[2 * tid + 1] = s;
    s_g[2 * tid] = s - hi;
  }
  __syncthreads();
  if (tid < kC) {
    p.g_cum[c.chunk * kC + tid] = s_g[tid];
    s_zs[tid] = s_beta[tid] * __expf(s_g[tid]);
  }
  __syncthreads();
}

/// a = I, a C x C fp32 tile of row stride LC.
template <int LC>
__device__ __forceinline__ void fill_identity(float* a) {
  for (int idx = threadIdx.x; idx < kC * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    a[i * LC + j] = i == j ? 1.f : 0.f;
  }
}

/// s_a = (I + L)^-1 for the strictly lower s_l (both [C][LC], s_a holding I on entry), by 16 x 16
/// blocks: the four diagonal blocks by forward substitution (64 threads, a 16-long column each),
/// then the blocks below them level by level (distance i - j = 1, 2, 3 between block row and
/// column), A_ij = -A_ii sum_{k = j}^{i - 1} L_ik A_kj, which needs only blocks of smaller
/// distance. A serial 64-step substitution per column would be a chain of 2016 dependent FMAs on
/// 64 of the 256 threads; here the longest chain is about 150. Block rows past the tokens are
/// skipped: their L rows are zero, so their A blocks stay those of I. Ends synchronised.
template <int LC>
__device__ void invert_unit_lower(const float* s_l, float* s_a, int n_valid, int tid) {
  constexpr int kB = 16, kBlocks = kC / kB;
  static_assert(kThreads >= (kBlocks - 1) * kB * kB / 4, "64 threads per block of a level");
  static_assert(LC % 4 == 0, "rows are read as float4");
  const int live_blocks = (n_valid + kB - 1) / kB;
  if (tid < kBlocks * kB && tid / kB < live_blocks) {
    const int base = (tid / kB) * kB, c = tid % kB;
    float x[kB];
#pragma unroll
    for (int i = 0; i < kB; ++i) x[i] = i == c ? 1.f : 0.f;
#pragma unroll
    for (int i = 1; i < kB; ++i) {
      float sum = x[i];
#pragma unroll
      for (int j = 0; j < i; ++j) sum = fmaf(-s_l[(base + i) * LC + base + j], x[j], sum);
      x[i] = sum;
    }
#pragma unroll
    for (int i = 0; i < kB; ++i) s_a[(base + i) * LC + base + c] = x[i];
  }
  __syncthreads();
  // Each level's blocks (i, j = i - dist), i = dist .. live_blocks - 1, by 64 threads each: a
  // thread owns four rows r0 .. r0 + 3 and column c of its block, so each A_kj (then T) element
  // it loads serves four sums, and it reads the rows of L (then A_ii) four elements at a time.
  const int strip = tid / kB % (kB / 4), cc = tid % kB;
  for (int dist = 1; dist < live_blocks; ++dist) {
    const int e = tid / (kB * kB / 4), bi = dist + e, bj = bi - dist;
    const bool active = bi < live_blocks;
    const int r0 = bi * kB + 4 * strip, c = bj * kB + cc;
    // sum_{m in [m0, m1)} rows(r0 + q, m) * s_a[m][c], q = 0 .. 3, m1 - m0 a multiple of 4.
    auto strip_product = [&](const float* rows, int m0, int m1, float(&sum)[4]) {
#pragma unroll 4
      for (int m = m0; m < m1; m += 4) {
        float a[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) a[k] = s_a[(m + k) * LC + c];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const float4 l = *reinterpret_cast<const float4*>(rows + (r0 + q) * LC + m);
          sum[q] = fmaf(l.x, a[0], fmaf(l.y, a[1], fmaf(l.z, a[2], fmaf(l.w, a[3], sum[q]))));
        }
      }
    };
    float t[4] = {0.f, 0.f, 0.f, 0.f};
    // T_ij = sum_k L_ik A_kj, written in place of A_ij (zero until now).
    if (active) strip_product(s_l, bj * kB, bi * kB, t);
    __syncthreads();
    if (active) {
#pragma unroll
      for (int q = 0; q < 4; ++q) s_a[(r0 + q) * LC + c] = t[q];
    }
    __syncthreads();
    // A_ij = -A_ii T_ij: A_ii holds a unit diagonal and zeros above it, so whole rows of the block
    // serve as they are.
    float x[4] = {0.f, 0.f, 0.f, 0.f};
    if (active) strip_product(s_a, bi * kB, (bi + 1) * kB, x);
    __syncthreads();
    if (active) {
#pragma unroll
      for (int q = 0; q < 4; ++q) s_a[(r0 + q) * LC + c] = -x[q];
    }
    __syncthreads();
  }
}

// ---- The CUDA-core prep kernel (fp32)

/// The CUDA-core prep kernel's shared memory by what it holds, one name per meaning; names of one
/// space are grouped, in the order prep_smem_bytes<D> counts the spaces.
template <int D>
struct PrepTiles {
  static constexpr int kLd = kPrepLd<D>, kLc = kPrepLc;
  // ---- [C][LD]: K, then Z = diag(beta gamma) K in place, then W = A Z (solved in place)
  float *k, *z, *w;
  // ---- [C][LD]: V, then Y = diag(beta) V in place, then Ut = A Y (solved in place)
  float *v, *y, *ut;
  // ---- [C][LC]: I, then A = (I + L)^-1 (solved in place)
  float* a;
  // ---- [C][LC]: L
  float* l;
  PrepGates gates;  // G, beta, beta exp(G)

  __device__ explicit PrepTiles(float* smem)
      : k(smem),
        z(k),
        w(k),
        v(k + kC * kLd),
        y(v),
        ut(v),
        a(v + kC * kLd),
        l(a + kC * kLc),
        gates(l + kC * kLc) {}
};

/// K and V (rows past the tokens zero) into their tiles, and A = I.
template <typename T, int D>
__device__ __forceinline__ void stage_prep_inputs(const PrepInputs<T, D>& in, int n_valid,
                                                  const PrepTiles<D>& t) {
  constexpr int LD = PrepTiles<D>::kLd;
  for (int idx = threadIdx.x; idx < kC * D; idx += kThreads) {
    const int i = idx / D, d = idx % D;
    const bool ok = i < n_valid;
    t.k[i * LD + d] = ok ? load(in.k + i * in.row_stride + d) : 0.f;
    t.v[i * LD + d] = ok ? load(in.v + i * in.row_stride + d) : 0.f;
  }
  fill_identity<PrepTiles<D>::kLc>(t.a);
}

/// L = strict_lower(diag(beta) K K^T * R) into its tile and P = scale (Q K^T * R) (R_ij =
/// exp(G_i - G_j) on and below the diagonal, 0 above) to attn, both from one pass over K.
template <typename T, int D>
__device__ __forceinline__ void kk_qk_stage(const GdnParams& p, const PrepInputs<T, D>& in,
                                            const detail::ChunkCta& c, const PrepTiles<D>& t) {
  constexpr int LD = PrepTiles<D>::kLd, LC = PrepTiles<D>::kLc;
  const int n_valid = c.n_valid;
  Frag<kC, kC> kk, qk;
  kk.fill(0.f);
  qk.fill(0.f);
  auto kt = [&](int d, int j) { return t.k[j * LD + d]; };
  kk.mma(
      D, [&](int i, int d) { return t.k[i * LD + d]; }, kt);
  qk.mma(
      D, [&](int i, int d) { return i < n_valid ? load(in.q + i * in.row_stride + d) : 0.f; }, kt);
#pragma unroll
  for (int r = 0; r < kk.kRegs; ++r) {
    const int i = kk.row(r), j = kk.col();
    const float decay = i >= j ? __expf(t.gates.g[i] - t.gates.g[j]) : 0.f;
    t.l[i * LC + j] = i > j ? t.gates.beta[i] * kk.x[r] * decay : 0.f;
    detail::as_f32(p.attn)[(c.chunk * kC + i) * kC + j] = p.scale * qk.x[r] * decay;
  }
}

/// Z = diag(beta gamma) K and Y = diag(beta) V, in place of K and V.
template <int D>
__device__ __forceinline__ void scale_rows_stage(const PrepTiles<D>& t) {
  constexpr int LD = PrepTiles<D>::kLd;
  for (int idx = threadIdx.x; idx < kC * D; idx += kThreads) {
    const int i = idx / D, d = idx % D;
    t.z[i * LD + d] *= t.gates.zs[i];
    t.y[i * LD + d] *= t.gates.beta[i];
  }
}

/// (I + L) X = [Z | Y | I] by forward substitution, one column per thread: X = [W | Ut | A] in
/// place. Past the tokens L's rows are zero: those rows of X are the right-hand side's, and an
/// identity column e_c with c past the tokens solves itself.
template <int D>
__device__ __forceinline__ void solve_unit_lower_stage(int n_valid, const PrepTiles<D>& t) {
  constexpr int LD = PrepTiles<D>::kLd, LC = PrepTiles<D>::kLc;
  for (int c = threadIdx.x; c < 2 * D + kC; c += kThreads) {
    if (c >= 2 * D + n_valid) continue;
    float* col = c < D ? t.z + c : c < 2 * D ? t.y + (c - D) : t.a + (c - 2 * D);
    const int ld = c < 2 * D ? LD : LC;
    float x[kC];
#pragma unroll
    for (int i = 0; i < kC; ++i) x[i] = col[i * ld];
#pragma unroll
    for (int i = 1; i < kC; ++i) {
      if (i >= n_valid) break;
      float s = x[i];
#pragma unroll
      for (int j = 0; j < i; ++j) s = fmaf(-t.l[i * LC + j], x[j], s);
      x[i] = s;
    }
#pragma unroll
    for (int i = 0; i < kC; ++i) col[i * ld] = x[i];
  }
}

/// W and Ut to their workspaces, and A to a_inv when a backward follows (a_inv set).
template <int D>
__device__ __forceinline__ void store_prep_outputs(const GdnParams& p, int64_t chunk,
                                                   const PrepTiles<D>& t) {
  constexpr int LD = PrepTiles<D>::kLd, LC = PrepTiles<D>::kLc;
  const int tid = threadIdx.x;
  for (int idx = tid; idx < kC * D; idx += kThreads) {
    const int i = idx / D, d = idx % D;
    detail::as_f32(p.w)[(chunk * kC + i) * D + d] = t.w[i * LD + d];
    detail::as_f32(p.u_tilde)[(chunk * kC + i) * D + d] = t.ut[i * LD + d];
  }
  if (p.a_inv == nullptr) return;  // no backward follows: A is not needed again
  for (int idx = tid; idx < kC * kC; idx += kThreads) {
    const int i = idx / kC, j = idx % kC;
    detail::as_f32(p.a_inv)[(chunk * kC + i) * kC + j] = t.a[i * LC + j];
  }
}

// grid (NC, B*H). Writes g_cum, w, u_tilde, attn and (for a backward) a_inv of one chunk, on CUDA
// cores in fp32 (the fallback and the fp32-input path; bf16 inputs take gdn_chunk_prep_tc_kernel):
// (I + L) X = [Z | Y | I] by forward substitution, one column per thread.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads) gdn_chunk_prep_kernel(GdnParams p) {
  extern __shared__ float smem[];
  const PrepTiles<D> t(smem);
  const detail::ChunkCta c(p);
  const PrepInputs<T, D> in(p, detail::token_offset(p, c.b, c.t0, c.h, D));

  stage_prep_inputs<T, D>(in, c.n_valid, t);
  load_gates_and_cumsum(p, c, t.gates);  // synchronises
  kk_qk_stage<T, D>(p, in, c, t);
  __syncthreads();
  scale_rows_stage<D>(t);
  __syncthreads();
  solve_unit_lower_stage<D>(c.n_valid, t);
  __syncthreads();
  store_prep_outputs<D>(p, c.chunk, t);
}

// ---- The tensor-core prep kernel (bf16 inputs)

/// Shared memory of the tensor-core prep kernel: fp32 A and L ([C][C + 8]: the float2 stores of a
/// half-warp's fragment hit distinct banks), G, beta, beta gamma; bf16 K, V, Q ([C][D + 8]). After
/// the inverse, L's space and then A's hold the bf16 splits hi + lo of A diag(beta gamma) and
/// A diag(beta) ([C][C + 8] each).
template <int D>
struct PrepTcLayout {
  static constexpr int kLd = D + 8, kLc = kC + 8;
  static constexpr size_t kBytes =
      sizeof(float) * (2 * kC * kLc + 3 * kC) + sizeof(__nv_bfloat16) * 3 * kC * kLd;
  static_assert(2 * sizeof(__nv_bfloat16) * kC * kLc == sizeof(float) * kC * kLc,
                "a hi and lo pair of tiles fills L's or A's space");
  /// CTAs per SM the registers must allow: as many as the shared memory does (3 of 64 KB for
  /// D = 64, 2 of 88 KB for D = 128), so that the compiler's register use never lowers occupancy.
  static constexpr int kMinBlocks = D == 64 ? 3 : 2;
};

/// The tensor-core prep kernel's shared memory by what it holds, one name per meaning, in the
/// order PrepTcLayout<D> lays the spaces out.
template <int D>
struct PrepTcTiles {
  using bf16 = __nv_bfloat16;
  static constexpr int kLd = PrepTcLayout<D>::kLd, kLc = PrepTcLayout<D>::kLc;
  // ---- fp32 [C][LC]: I, then A = (I + L)^-1 until every thread holds its pieces of it; then
  // bf16 [C][LC] x 2: A diag(beta), split hi + lo
  float* a;
  bf16 *u_hi, *u_lo;
  // ---- fp32 [C][LC]: L until the inverse; then bf16 [C][LC] x 2: A diag(beta gamma), hi + lo
  float* l;
  bf16 *w_hi, *w_lo;
  PrepGates gates;  // G, beta, beta exp(G)
  // ---- bf16 [C][LD]
  bf16 *k, *v, *q;

  __device__ explicit PrepTcTiles(float* smem)
      : a(smem),
        u_hi(reinterpret_cast<bf16*>(a)),
        u_lo(u_hi + kC * kLc),
        l(a + kC * kLc),
        w_hi(reinterpret_cast<bf16*>(l)),
        w_lo(w_hi + kC * kLc),
        gates(l + kC * kLc),
        k(reinterpret_cast<bf16*>(gates.zs + kC)),
        v(k + kC * kLd),
        q(v + kC * kLd) {}
};

/// L = strict_lower(diag(beta) K K^T * R) into its tile and P = scale (Q K^T * R) to attn (bf16),
/// by one pass of mma.sync over K^T shared by both products.
template <int D>
__device__ __forceinline__ void kk_qk_tc_stage(const GdnParams& p, const detail::ChunkCta& c,
                                               const PrepTcTiles<D>& t) {
  using SqFrag = mma::Bf16Frag<kC, kC, kThreads>;
  constexpr int LD = PrepTcTiles<D>::kLd, LC = PrepTcTiles<D>::kLc;
  SqFrag kk, qk;
  kk.fill(0.f);
  qk.fill(0.f);
  kk.mma_rows_shared_b(qk, c.n_valid, D, mma::rows_of(t.k, LD), mma::rows_of(t.q, LD),
                       mma::transpose_of(t.k, LD));
  const float *s_g = t.gates.g, *s_beta = t.gates.beta;
#pragma unroll
  for (int r = 0; r < SqFrag::kRegs; r += 2) {  // registers r, r + 1: columns j, j + 1 of row i
    const int i = kk.row(r), j = kk.col(r);
    const float decay0 = i >= j ? __expf(s_g[i] - s_g[j]) : 0.f;
    const float decay1 = i >= j + 1 ? __expf(s_g[i] - s_g[j + 1]) : 0.f;
    store_pair(t.l + i * LC + j, i > j ? s_beta[i] * kk.x[r] * decay0 : 0.f,
               i > j + 1 ? s_beta[i] * kk.x[r + 1] * decay1 : 0.f);
    detail::store_bf16_pair(detail::as_bf16(p.attn) + (c.chunk * kC + i) * kC + j,
                            p.scale * qk.x[r] * decay0, p.scale * qk.x[r + 1] * decay1);
  }
}

/// This thread's pieces of A: kPieces row pieces of 8 elements, held in registers while A's and
/// L's spaces are rewritten with the splits of A diag(.).
struct APieces {
  static constexpr int kPieces = kC * kC / 8 / kThreads;
  static_assert(kPieces * kThreads * 8 == kC * kC, "A splits into whole pieces per thread");
  float x[kPieces][8];
  /// Row and first column of piece n.
  __device__ __forceinline__ static int row(int n) {
    return (threadIdx.x + n * kThreads) / (kC / 8);
  }
  __device__ __forceinline__ static int col(int n) {
    return 8 * ((threadIdx.x + n * kThreads) % (kC / 8));
  }
};

/// One pass over A: this thread's pieces into registers, and A's bf16 copy to a_inv when a
/// backward follows (a_inv set).
template <int D>
__device__ __forceinline__ APieces load_a_pieces(const GdnParams& p, int64_t chunk,
                                                 const PrepTcTiles<D>& t) {
  constexpr int LC = PrepTcTiles<D>::kLc;
  APieces a;
#pragma unroll
  for (int n = 0; n < APieces::kPieces; ++n) {
    const int i = APieces::row(n), j = APieces::col(n);
    *reinterpret_cast<float4*>(a.x[n]) = *reinterpret_cast<const float4*>(t.a + i * LC + j);
    *reinterpret_cast<float4*>(a.x[n] + 4) = *reinterpret_cast<const float4*>(t.a + i * LC + j + 4);
    if (p.a_inv != nullptr) {  // null: no backward follows, A is not needed again
      *reinterpret_cast<uint4*>(detail::as_bf16(p.a_inv) + (chunk * kC + i) * kC + j) =
          detail::pack8(a.x[n]);
    }
  }
  return a;
}

/// A diag(beta gamma) into w_hi + w_lo (L's space) and A diag(beta) into u_hi + u_lo (A's space),
/// each split into bf16 hi = bf16(x) and lo = bf16(x - hi); once every thread holds its pieces.
template <int D>
__device__ __forceinline__ void split_a_stage(const APieces& a, const PrepTcTiles<D>& t) {
  using bf16 = __nv_bfloat16;
  constexpr int LC = PrepTcTiles<D>::kLc;
#pragma unroll
  for (int n = 0; n < APieces::kPieces; ++n) {
    const int i = APieces::row(n), j = APieces::col(n);
    auto split = [&](const float* scale, bf16* hi, bf16* lo) {
      float x[8], rest[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) x[e] = a.x[n][e] * scale[j + e];
      const uint4 hi_bits = detail::pack8(x);
      float hi_x[8];
      detail::unpack8(hi_bits, hi_x);
#pragma unroll
      for (int e = 0; e < 8; ++e) rest[e] = x[e] - hi_x[e];
      *reinterpret_cast<uint4*>(hi + i * LC + j) = hi_bits;
      *reinterpret_cast<uint4*>(lo + i * LC + j) = detail::pack8(rest);
    };
    split(t.gates.zs, t.w_hi, t.w_lo);
    split(t.gates.beta, t.u_hi, t.u_lo);
  }
}

/// out = (hi + lo) X (bf16, [C][D] of the chunk): W = A diag(beta gamma) K, Ut = A diag(beta) V.
/// Rows of A past the tokens are identity rows against zero rows of X and zero scales: zero rows.
template <int D>
__device__ __forceinline__ void split_product(const __nv_bfloat16* hi, const __nv_bfloat16* lo,
                                              const __nv_bfloat16* x, int n_valid, int depth,
                                              int64_t chunk, void* out) {
  using RowFrag = mma::Bf16Frag<kC, D, kThreads>;
  RowFrag f;
  f.fill(0.f);
  f.mma_rows_shared_b(f, n_valid, depth, mma::rows_of(hi, PrepTcTiles<D>::kLc),
                      mma::rows_of(lo, PrepTcTiles<D>::kLc), mma::rows_of(x, PrepTcTiles<D>::kLd));
#pragma unroll
  for (int r = 0; r < RowFrag::kRegs; r += 2) {
    detail::store_bf16_pair(detail::as_bf16(out) + (chunk * kC + f.row(r)) * D + f.col(r), f.x[r],
                            f.x[r + 1]);
  }
}

// grid (NC, B*H), 256 threads. The prep kernel on bf16 tensor cores: K K^T and Q K^T by mma.sync
// m16n8k16 from bf16 tiles (exact inputs, fp32 accumulation); the inverse A = (I + L)^-1 in fp32
// by 16 x 16 blocks; W = A diag(beta gamma) K and Ut = A diag(beta) V with A diag(.) split into
// bf16 hi + lo (two MMAs: about 16 mantissa bits, where one bf16 operand would round A to 8).
// Writes W, Ut, P and A in bf16 (GdnParams::bf16_workspaces: W, P and A are the other kernels'
// bf16 MMA operands; Ut enters U = Ut - W S, whose result is rounded to bf16 as the next operand,
// as fla stores it) and g_cum in fp32.
template <int D>
__global__ void __launch_bounds__(kThreads, PrepTcLayout<D>::kMinBlocks)
    gdn_chunk_prep_tc_kernel(GdnParams p) {
  using bf16 = __nv_bfloat16;
  constexpr int LD = PrepTcTiles<D>::kLd;
  extern __shared__ float smem[];
  const PrepTcTiles<D> t(smem);
  const detail::ChunkCta c(p);
  const int n_valid = c.n_valid;
  const int depth = detail::row_depth<16>(n_valid);
  const int64_t row_stride = p.heads * D, tok = detail::token_offset(p, c.b, c.t0, c.h, D);

  detail::stage_bf16<kC, D, kThreads>(t.k, LD, static_cast<const bf16*>(p.k) + tok, row_stride,
                                      n_valid);
  detail::stage_bf16<kC, D, kThreads>(t.v, LD, static_cast<const bf16*>(p.v) + tok, row_stride,
                                      n_valid);
  detail::stage_bf16<kC, D, kThreads>(t.q, LD, static_cast<const bf16*>(p.q) + tok, row_stride,
                                      n_valid);
  fill_identity<PrepTcTiles<D>::kLc>(t.a);
  load_gates_and_cumsum(p, c, t.gates);  // synchronises
  kk_qk_tc_stage<D>(p, c, t);
  __syncthreads();
  invert_unit_lower<PrepTcTiles<D>::kLc>(t.l, t.a, n_valid, threadIdx.x);  // ends synchronised
  const APieces a = load_a_pieces<D>(p, c.chunk, t);
  __syncthreads();  // every thread holds its pieces: A's space is free
  split_a_stage<D>(a, t);
  __syncthreads();
  split_product<D>(t.w_hi, t.w_lo, t.k, n_valid, depth, c.chunk, p.w);        // W
  split_product<D>(t.u_hi, t.u_lo, t.v, n_valid, depth, c.chunk, p.u_tilde);  // Ut
}

template <int D, int BV>
constexpr size_t scan_smem_bytes() {
  return sizeof(float) * (D * (BV + 1) + kC * (BV + 1) + 2 * kC);
}

// grid (D / BV, B*H). The state slice S[:, v0:v0+BV] lives in shared memory across all chunks.
template <typename T, int D, int BV>
__global__ void __launch_bounds__(kThreads) gdn_chunk_fwd_kernel(GdnParams p) {
  constexpr int LS = BV + 1;
  extern __shared__ float smem[];
  float* s_state = smem;           // [D][LS]  S (k rows, v columns of this slice)
  float* s_u = s_state + D * LS;   // [C][LS]  U
  float* s_gamma = s_u + kC * LS;  // [C]      exp(G_i)
  float* s_decay = s_gamma + kC;   // [C]      exp(G_C - G_i)

  const int v0 = blockIdx.x * BV;
  const int64_t bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const int64_t n_chunks = p.n_chunks(), row_stride = p.heads * D;
  const int tid = threadIdx.x;

  for (int idx = tid; idx < D * BV; idx += kThreads) {
    const int d = idx / BV, j = idx % BV;
    s_state[d * LS + j] = p.initial_state ? p.initial_state[(bh * D + d) * D + v0 + j] : 0.f;
  }
  __syncthreads();  // the chunk loop reads the whole slice, written by other threads
  for (int64_t n = 0; n < n_chunks; ++n) {
    const int64_t t0 = n * kC, chunk = bh * n_chunks + n;
    const int n_valid = detail::valid_rows(p, t0);
    const T* q = static_cast<const T*>(p.q) + detail::token_offset(p, b, t0, h, D);
    const T* k = static_cast<const T*>(p.k) + detail::token_offset(p, b, t0, h, D);
    T* o = static_cast<T*>(p.o) + detail::token_offset(p, b, t0, h, D);
    const float* w = detail::as_f32(p.w) + chunk * kC * D;
    const float* ut = detail::as_f32(p.u_tilde) + chunk * kC * D;
    const float* attn = detail::as_f32(p.attn) + chunk * kC * kC;
    if (tid < kC) detail::store_chunk_decays(p, chunk, tid, s_gamma, s_decay);
    if (p.chunk_states) {
      float* st = detail::as_f32(p.chunk_states) + chunk * D * D;
      for (int idx = tid; idx < D * BV; idx += kThreads) {
        const int d = idx / BV, j = idx % BV;
        st[d * D + v0 + j] = s_state[d * LS + j];
      }
    }
    __syncthreads();
    auto state = [&](int d, int j) { return s_state[d * LS + j]; };
    Frag<kC, BV> fu;  // U = Ut - W S
#pragma unroll
    for (int r = 0; r < fu.kRegs; ++r) fu.x[r] = ut[fu.row(r) * D + v0 + fu.col()];
    fu.mma(
        D, [&](int i, int d) { return -w[i * D + d]; }, state);
#pragma unroll
    for (int r = 0; r < fu.kRegs; ++r) {
      s_u[fu.row(r) * LS + fu.col()] = fu.x[r];
      if (p.u) detail::as_f32(p.u)[(chunk * kC + fu.row(r)) * D + v0 + fu.col()] = fu.x[r];
    }
    __syncthreads();
    Frag<kC, BV> fo;  // O = scale diag(gamma) Q S + P U
    fo.fill(0.f);
    fo.mma(
        D, [&](int i, int d) { return i < n_valid ? load(q + i * row_stride + d) : 0.f; }, state);
#pragma unroll
    for (int r = 0; r < fo.kRegs; ++r) fo.x[r] *= p.scale * s_gamma[fo.row(r)];
    fo.mma(
        kC, [&](int i, int m) { return attn[i * kC + m]; },
        [&](int m, int j) { return s_u[m * LS + j]; });
#pragma unroll
    for (int r = 0; r < fo.kRegs; ++r) {
      if (fo.row(r) < n_valid) {
        o[fo.row(r) * row_stride + v0 + fo.col()] = detail::from_float<T>(fo.x[r]);
      }
    }
    Frag<D, BV> fs;  // S <- gamma_C S + K^T diag(decay) U
    const float gamma_last = s_gamma[kC - 1];
#pragma unroll
    for (int r = 0; r < fs.kRegs; ++r) fs.x[r] = gamma_last * s_state[fs.row(r) * LS + fs.col()];
    fs.mma(
        kC,
        [&](int d, int i) { return i < n_valid ? s_decay[i] * load(k + i * row_stride + d) : 0.f; },
        [&](int i, int j) { return s_u[i * LS + j]; });
    __syncthreads();
#pragma unroll
    for (int r = 0; r < fs.kRegs; ++r) s_state[fs.row(r) * LS + fs.col()] = fs.x[r];
    __syncthreads();
  }
  if (p.final_state) {
    for (int idx = tid; idx < D * BV; idx += kThreads) {
      const int d = idx / BV, j = idx % BV;
      p.final_state[(bh * D + d) * D + v0 + j] = s_state[d * LS + j];
    }
  }
}

constexpr int kFwdSlice = 32;

/// The CUDA-core prep and scan in fp32 (fp32 inputs, or bf16 with GdnKernel::kFp32).
template <int D, typename T>
cudaError_t launch_fwd(const GdnParams& p, cudaStream_t stream, detail::CudaCoreKernels) {
  const unsigned bh = unsigned(p.batch * p.heads);
  const cudaError_t err =
      detail::launch_with_smem(gdn_chunk_prep_kernel<T, D>, dim3(unsigned(p.n_chunks()), bh),
                               kThreads, prep_smem_bytes<D>(), stream, p);
  if (err != cudaSuccess) return err;
  return detail::launch_with_smem(gdn_chunk_fwd_kernel<T, D, kFwdSlice>, dim3(D / kFwdSlice, bh),
                                  kThreads, scan_smem_bytes<D, kFwdSlice>(), stream, p);
}

/// The tensor-core prep and scan (bf16 inputs).
template <int D, typename T>
cudaError_t launch_fwd(const GdnParams& p, cudaStream_t stream, detail::TensorCoreKernels) {
  static_assert(std::is_same_v<T, __nv_bfloat16>, "the tensor-core kernels take bf16 inputs");
  const cudaError_t err = detail::launch_with_smem(
      gdn_chunk_prep_tc_kernel<D>, dim3(unsigned(p.n_chunks()), unsigned(p.batch * p.heads)),
      kThreads, PrepTcLayout<D>::kBytes, stream, p);
  if (err != cudaSuccess) return err;
  return detail::launch_gdn_chunk_fwd_scan_tc(p, stream);
}

}  // namespace

cudaError_t gdn_chunk_fwd(const GdnParams& p, cudaStream_t stream) {
  if (!detail::sizes_supported(p) || !detail::forward_pointers_set(p)) {
    return cudaErrorInvalidValue;
  }
  return detail::dispatch(p, [&](auto dims, auto element, auto family) {
    return launch_fwd<detail::square_dim<decltype(dims)>(), decltype(element)>(p, stream, family);
  });
}

}  // namespace hypnos::kernels
