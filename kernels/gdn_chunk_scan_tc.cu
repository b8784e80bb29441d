// The two sequential scans of the gated delta rule on bf16 tensor cores (docs/delta_rule.md
// sections 2 and 3): the forward over chunks carrying the state S, and the backward in reverse
// carrying dS. One CTA walks every chunk of one (sequence, head) for a BV-column slice of the
// state, which it keeps in fp32 registers (accumulator layout); each chunk's operands (W, Q, K, P,
// and dO for the backward) are staged once in shared memory as bf16 by cp.async, in two groups that
// are refilled with the next chunk's as soon as a step is done with them, and every product is
// mma.sync m16n8k16 with ldmatrix operands, the state entering as a bf16 copy (as fla does).
#include <cuda_bf16.h>

#include <cstdint>

#include "gdn.h"
#include "gdn_common.cuh"
#include "gdn_dispatch.cuh"
#include "gdn_mma.cuh"
#include "gdn_stage.cuh"
#include "gdn_tc.h"

namespace hypnos::kernels {
namespace {

using bf16 = __nv_bfloat16;
using detail::kC;
using mma::rows_of;
using mma::transpose_of;
using Acc = mma::M16N8K8;  // accumulator layout (the same for m16n8k16)

/// Shared memory of both scans (bf16 strides 8 past the row: conflict-free ldmatrix): a chunk's W,
/// Q, K ([C][K]) and P ([C][C]), for the backward its dO slice ([C][BV]); gamma and decay of two
/// chunks (this step's and the next one's, by parity); then the state (or dS) slice [K][BV] as the
/// B operand and the [C][BV] tiles (forward: U, diag(decay) U; backward: scale diag(gamma) dO,
/// -dU). V enters only through the global strides and the grid (V / BV slices).
template <int K, int BV, bool kBackward>
struct ScanLayout {
  static constexpr int kLd = K + 8, kLc = kC + 8, kLs = BV + 8;
  static constexpr int kTileHalves = 3 * kC * kLd + kC * kLc + (kBackward ? kC * kLs : 0);
  static constexpr int kFloats = 2 * 2 * kC;
  static constexpr int kHalves = kTileHalves + K * kLs + 2 * kC * kLs;
  static constexpr size_t kBytes = sizeof(float) * kFloats + sizeof(bf16) * kHalves;
  /// CTAs per SM the scan's registers must allow (BV * 4 threads): as many as its shared memory
  /// does (e.g. 2 of 97 KB at (128, *) with BV = 64, 4 of 52 KB at K = 64 with BV = 32), but
  /// at least 128 registers per thread (a warp's C x 32 products, its Ut and its state tiles:
  /// fewer would spill), so 2 at BV = 64 where 3 would fit at K = 64.
  static constexpr int kMinBlocks =
      detail::min_blocks_for_smem(kBytes, BV * 4, /*min_registers=*/128);
};

/// A chunk's tiles; gamma and decay are those of the chunk of the given parity.
struct ChunkTiles {
  bf16 *w, *q, *k, *p, *d_o;
  float *gamma, *decay;
};
template <int K, int BV, bool kBackward>
__device__ __forceinline__ ChunkTiles chunk_tiles(float* smem, int64_t parity) {
  using L = ScanLayout<K, BV, kBackward>;
  ChunkTiles t;
  t.gamma = smem + (parity & 1) * 2 * kC;
  t.decay = t.gamma + kC;
  t.w = reinterpret_cast<bf16*>(smem + L::kFloats);
  t.q = t.w + kC * L::kLd;
  t.k = t.q + kC * L::kLd;
  t.p = t.k + kC * L::kLd;
  t.d_o = t.p + kC * L::kLc;  // backward only
  return t;
}
/// The tiles after the chunk's.
template <int K, int BV, bool kBackward>
__device__ __forceinline__ bf16* after_chunk_tiles(float* smem) {
  using L = ScanLayout<K, BV, kBackward>;
  return reinterpret_cast<bf16*>(smem + L::kFloats) + L::kTileHalves;
}

/// The warp split of a CTA of BV / 8 warps: warp w owns rows [16 (w % 4), + 16) of the C x BV
/// products (U, O, dU) and kStateMT 16-row tiles of the K x BV state, in both cases the 32 slice
/// columns [32 (w / 4), + 32). The state's K / 16 tiles go to the 4 warp rows w % 4 in turn:
/// contiguous where they divide evenly (K = 64, 128, 256: rows [(w % 4) K / 4, + K / 4)), else
/// tile w % 4 + 4 m (K = 96: 6 tiles, so warp rows 0 and 1 own two and rows 2 and 3 one; has_tile
/// says which). V is the row stride of the fp32 [K][V] states.
template <int K, int V>
struct ScanWarp {
  static constexpr int kTiles = K / 16;
  static constexpr bool kEven = kTiles % 4 == 0;
  static constexpr int kStateMT = (kTiles + 3) / 4;  // 16-row tiles of the state per warp, at most
  static_assert(K % 16 == 0, "the state splits into 16-row tiles");
  int lane, r0, wr, c0;
  __device__ ScanWarp() {
    const int warp = threadIdx.x / 32;
    lane = threadIdx.x % 32;
    wr = warp % 4;
    r0 = wr * 16;
    c0 = (warp / 4) * 32;
  }
  /// First state row of this warp's tile m, and whether the warp has a tile m.
  __device__ __forceinline__ int state_row0(int m) const {
    return kEven ? wr * (K / 4) + 16 * m : 16 * (wr + 4 * m);
  }
  __device__ __forceinline__ bool has_tile(int m) const { return kEven || wr + 4 * m < kTiles; }
  /// f(row, column, register) for the 4 n-tiles x 4 registers of a 16-row tile at row `row0`.
  template <class F>
  __device__ __forceinline__ void each(int row0, float (&x)[4][4], F f) const {
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
      for (int r = 0; r < 4; ++r)
        f(row0 + Acc::c_row(lane, r), c0 + nt * 8 + Acc::c_col(lane, r), x[nt][r]);
    }
  }
  /// The warp's part of a state slice (kMT 16-row tiles) from an fp32 [K][V] matrix at column v0,
  /// or zeros when src is null.
  template <int kMT>
  __device__ __forceinline__ void load(float (&x)[kMT][4][4], const float* src, int v0) const {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
      if (!has_tile(mt)) continue;
      each(state_row0(mt), x[mt],
           [&](int d, int j, float& v) { v = src ? src[d * V + v0 + j] : 0.f; });
    }
  }
  /// ... into an fp32 [K][V] matrix at column v0.
  template <int kMT>
  __device__ __forceinline__ void store(float (&x)[kMT][4][4], float* dst, int v0) const {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
      if (!has_tile(mt)) continue;
      each(state_row0(mt), x[mt], [&](int d, int j, float& v) { dst[d * V + v0 + j] = v; });
    }
  }
  /// ... as the bf16 operand copy [K][ld] in shared memory.
  template <int kMT>
  __device__ __forceinline__ void store_operand(float (&x)[kMT][4][4], bf16* tile, int ld) const {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) {
      if (!has_tile(mt)) continue;
      each_pair(state_row0(mt), x[mt], [&](int d, int j, float x0, float x1) {
        detail::store_bf16_pair(tile + d * ld + j, x0, x1);
      });
    }
  }
  /// Register pairs (r, r + 1: columns j, j + 1 of one row): f(row, column, x[r], x[r + 1]).
  template <class F>
  __device__ __forceinline__ void each_pair(int row0, float (&x)[4][4], F f) const {
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
      for (int r = 0; r < 4; r += 2) {
        f(row0 + Acc::c_row(lane, r), c0 + nt * 8 + Acc::c_col(lane, r), x[nt][r], x[nt][r + 1]);
      }
    }
  }
};

/// A scan CTA's head h (of v) and q/k head qk_h, computed once (blockIdx.y = b H + h).
struct ScanHead {
  int h, qk_h;
  __device__ explicit ScanHead(const GdnParams& p)
      : h(int(blockIdx.y % p.heads)), qk_h(int(detail::qk_head(p, h))) {}
};

/// Issues one of the two cp.async groups of chunk n's operands and commits it (the caller waits).
/// A scan step needs its operands in two halves, and each group is refilled with the next chunk's
/// as soon as the step is done with it, so that its copies fly during the rest of the step and the
/// first half of the next (a second set of tiles would not leave two CTAs room on an SM). Forward:
/// group 0 is W and Q (U = Ut - W S and Q S), group 1 P and K (P U and the state update).
/// Backward: group 0 is K, P and the dO slice (dU), group 1 Q and W (the dS update). Group 0 also
/// computes the chunk's gamma and decay into t (plain stores, published by the same barriers).
/// Rows past the tokens are zero. A forward without output (kOutput false: o comes from the
/// separate output kernel) stages neither Q nor P.
template <int K, int V, int BV, bool kBackward, int kGroup, bool kOutput = true>
__device__ __forceinline__ void load_group(const GdnParams& p, const detail::Sequence& seq,
                                           const ScanHead& head, int64_t n, const ChunkTiles& t) {
  using L = ScanLayout<K, BV, kBackward>;
  constexpr int NT = BV * 4;
  const int64_t h = head.h;
  const int64_t t0 = n * kC, chunk = seq.chunk(p, h, n), row_stride = p.qk_heads() * K;
  const int n_valid = seq.valid_rows(p, t0);
  const int64_t tok = detail::qk_offset(p, seq, t0, head.qk_h, K);  // q and k
  auto stage_w = [&] {
    detail::stage_bf16_async<kC, K, NT>(t.w, L::kLd, detail::as_bf16(p.w) + chunk * kC * K, K,
                                        n_valid);
  };
  auto stage_q = [&] {
    detail::stage_bf16_async<kC, K, NT>(t.q, L::kLd, static_cast<const bf16*>(p.q) + tok,
                                        row_stride, n_valid);
  };
  auto stage_k = [&] {
    detail::stage_bf16_async<kC, K, NT>(t.k, L::kLd, static_cast<const bf16*>(p.k) + tok,
                                        row_stride, n_valid);
  };
  auto stage_p = [&] {
    detail::stage_bf16_async<kC, kC, NT>(t.p, L::kLc, detail::as_bf16(p.attn) + chunk * kC * kC, kC,
                                         n_valid);
  };
  if constexpr (kGroup == 0) {
    if constexpr (kBackward) {
      stage_k();
      stage_p();
      detail::stage_bf16_async<kC, BV, NT>(t.d_o, L::kLs,
                                           static_cast<const bf16*>(p.grad_o) +
                                               detail::token_offset(p, seq, t0, h, V) +
                                               blockIdx.x * BV,
                                           p.heads * V, n_valid);
    } else {
      stage_w();
      if constexpr (kOutput) stage_q();
    }
    if (threadIdx.x < kC) detail::store_chunk_decays(p, chunk, threadIdx.x, t.gamma, t.decay);
  } else if constexpr (kBackward) {
    stage_q();
    stage_w();
  } else {
    if constexpr (kOutput) stage_p();
    stage_k();
  }
  detail::cp_async_commit();
}

// grid (V / BV, B*H), BV * 4 threads. Per chunk: U = Ut - W S; O = scale diag(gamma) Q S + P U
// (with kOutput; else the separate output kernel computes O from what this one saves);
// S <- gamma_C S + K^T diag(decay) U. Writes o, the final state and, where u and chunk_states are
// set, U and the state entering each chunk, both in bf16 as the MMAs used them. Ut comes straight
// from global memory into registers, one chunk ahead. Rows past the tokens: U = 0, no output, and
// the warps that own only such rows skip their products (a 24-token window does 2 of 4).
template <int K, int V, int BV, bool kOutput>
__global__ void __launch_bounds__(BV * 4, (ScanLayout<K, BV, false>::kMinBlocks))
    gdn_chunk_fwd_scan_tc_kernel(GdnParams p) {
  using L = ScanLayout<K, BV, false>;
  using Warp = ScanWarp<K, V>;
  constexpr int NT = BV * 4, LD = L::kLd, LC = L::kLc, LS = L::kLs, kMT = Warp::kStateMT;
  extern __shared__ float smem[];
  bf16* s_s = after_chunk_tiles<K, BV, false>(smem);  // [K][LS] the state slice
  bf16* s_u = s_s + K * LS;                           // [C][LS] U
  bf16* s_ud = s_u + kC * LS;                         // [C][LS] diag(decay) U

  const int v0 = blockIdx.x * BV;
  const int64_t bh = blockIdx.y;
  const ScanHead head(p);
  const int64_t h = head.h;
  const detail::Sequence seq(p, bh / p.heads);
  const int64_t n_chunks = seq.n_chunks(p), row_stride = p.heads * V;
  const Warp wp;
  // This warp's part of chunk n's Ut (zeros for a warp whose rows are all past the tokens).
  auto load_ut = [&](int64_t n, __nv_bfloat162(&x)[4][2]) {
    const bf16* ut = detail::as_bf16(p.u_tilde) + seq.chunk(p, h, n) * kC * V + v0;
    const bool has_tokens = wp.r0 < seq.valid_rows(p, n * kC);
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int i = wp.r0 + Acc::c_row(wp.lane, 2 * half),
                  j = wp.c0 + nt * 8 + Acc::c_col(wp.lane, 0);
        x[nt][half] = has_tokens ? __ldg(reinterpret_cast<const __nv_bfloat162*>(ut + i * V + j))
                                 : __floats2bfloat162_rn(0.f, 0.f);
      }
    }
  };

  float st[kMT][4][4];  // S[state_row0(mt) + .., v0 + c0 + ..] in fp32
  wp.load(st, p.initial_state ? p.initial_state + bh * K * V : nullptr, v0);
  wp.store_operand(st, s_s, LS);
  const ChunkTiles t = chunk_tiles<K, BV, false>(smem, 0);  // the tiles; gates by parity below
  load_group<K, V, BV, false, 0, kOutput>(p, seq, head, 0, t);
  load_group<K, V, BV, false, 1, kOutput>(p, seq, head, 0, t);
  __nv_bfloat162 ut[4][2];
  load_ut(0, ut);
  for (int64_t n = 0; n < n_chunks; ++n) {
    const int64_t t0 = n * kC, chunk = seq.chunk(p, h, n);
    const int n_valid = seq.valid_rows(p, t0);
    const int depth = detail::row_depth<16>(n_valid);
    const bool has_tokens = wp.r0 < n_valid, has_next = n + 1 < n_chunks;
    bf16* o = static_cast<bf16*>(p.o) + detail::token_offset(p, seq, t0, h, V);
    const ChunkTiles gates = chunk_tiles<K, BV, false>(smem, n);
    const float *s_gamma = gates.gamma, *s_decay = gates.decay;
    detail::cp_async_wait<1>();  // this chunk's group 0 (W, Q) is here; group 1 may still fly
    __syncthreads();             // ... for every thread; the state copy is complete
    if (p.chunk_states) {        // the state entering the chunk (its bf16 copy)
      detail::store_rows<K, BV, NT>(detail::as_bf16(p.chunk_states) + chunk * K * V + v0, V, s_s,
                                    LS, /*negate=*/false);
    }
    float acc_o[4][4] = {};
    {  // U = Ut - W S; the Q S part of O
      float acc[4][4] = {};
      if (has_tokens) {
        if constexpr (kOutput) {
          mma::warp_mma_bf16_shared_b<4>(acc, acc_o, wp.lane, wp.r0, wp.c0, 0, K, rows_of(t.w, LD),
                                         rows_of(t.q, LD), rows_of(s_s, LS));
        } else {
          mma::warp_mma_bf16<4>(acc, wp.lane, wp.r0, wp.c0, 0, K, rows_of(t.w, LD),
                                rows_of(s_s, LS));
        }
      }
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int i = wp.r0 + Acc::c_row(wp.lane, 2 * half);
          const int j = wp.c0 + nt * 8 + Acc::c_col(wp.lane, 0);
          const float2 u_tilde = __bfloat1622float2(ut[nt][half]);
          const float u0 = u_tilde.x - acc[nt][2 * half], u1 = u_tilde.y - acc[nt][2 * half + 1];
          detail::store_bf16_pair(s_u + i * LS + j, u0, u1);
          detail::store_bf16_pair(s_ud + i * LS + j, s_decay[i] * u0, s_decay[i] * u1);
        }
      }
    }
    if (has_next) load_ut(n + 1, ut);
    detail::cp_async_wait<0>();  // group 1 (P, K) is here too
    __syncthreads();             // U is complete; every warp is done with W and Q
    if (has_next) {
      load_group<K, V, BV, false, 0, kOutput>(p, seq, head, n + 1,
                                              chunk_tiles<K, BV, false>(smem, n + 1));
    }
    if (p.u) {
      detail::store_rows<kC, BV, NT>(detail::as_bf16(p.u) + chunk * kC * V + v0, V, s_u, LS,
                                     /*negate=*/false);
    }
    if (kOutput && has_tokens) {  // O = scale diag(gamma) Q S + P U (P is lower triangular)
      wp.each(wp.r0, acc_o, [&](int i, int, float& x) { x *= p.scale * s_gamma[i]; });
      mma::warp_mma_bf16<4>(acc_o, wp.lane, wp.r0, wp.c0, 0, min(wp.r0 + 16, depth),
                            rows_of(t.p, LC), rows_of(s_u, LS));
      wp.each_pair(wp.r0, acc_o, [&](int i, int j, float a0, float a1) {
        if (i < n_valid) detail::store_bf16_pair(o + i * row_stride + v0 + j, a0, a1);
      });
    }
    {  // S <- gamma_C S + K^T diag(decay) U
      const float gamma_last = s_gamma[kC - 1];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        if (!wp.has_tile(mt)) continue;
        wp.each(wp.state_row0(mt), st[mt], [&](int, int, float& x) { x *= gamma_last; });
        mma::warp_mma_bf16<4>(st[mt], wp.lane, wp.state_row0(mt), wp.c0, 0, depth,
                              transpose_of(t.k, LD), rows_of(s_ud, LS));
      }
    }
    __syncthreads();  // every warp is done with P, K, U and the state copy
    if (has_next) load_group<K, V, BV, false, 1, kOutput>(p, seq, head, n + 1, t);
    wp.store_operand(st, s_s, LS);  // the next step's first barrier orders it before any read
  }
  if (p.final_state) wp.store(st, p.final_state + bh * K * V, v0);
}

// grid (V / BV, B*H), BV * 4 threads. Reverse over chunks: dU = P^T dO + diag(decay) K dS;
// dS <- gamma_C dS + Q^T (scale diag(gamma) dO) - W^T dU. Writes dU and dS leaving each chunk in
// bf16, and d(initial state).
template <int K, int V, int BV>
__global__ void __launch_bounds__(BV * 4, (ScanLayout<K, BV, true>::kMinBlocks))
    gdn_chunk_bwd_scan_tc_kernel(GdnParams p) {
  using L = ScanLayout<K, BV, true>;
  using Warp = ScanWarp<K, V>;
  constexpr int NT = BV * 4, LD = L::kLd, LC = L::kLc, LS = L::kLs, kMT = Warp::kStateMT;
  extern __shared__ float smem[];
  bf16* s_ds = after_chunk_tiles<K, BV, true>(smem);  // [K][LS] the dS slice
  bf16* s_dog = s_ds + K * LS;                        // [C][LS] scale diag(gamma) dO
  bf16* s_dun = s_dog + kC * LS;                      // [C][LS] -dU

  const int v0 = blockIdx.x * BV;
  const int64_t bh = blockIdx.y;
  const ScanHead head(p);
  const int64_t h = head.h;
  const detail::Sequence seq(p, bh / p.heads);
  const int64_t n_chunks = seq.n_chunks(p);
  const Warp wp;

  float ds[kMT][4][4];
  wp.load(ds, p.grad_final_state ? p.grad_final_state + bh * K * V : nullptr, v0);
  wp.store_operand(ds, s_ds, LS);
  const ChunkTiles t = chunk_tiles<K, BV, true>(smem, 0);  // the tiles; gates by parity below
  load_group<K, V, BV, true, 0>(p, seq, head, n_chunks - 1, t);
  load_group<K, V, BV, true, 1>(p, seq, head, n_chunks - 1, t);
  for (int64_t step = 0; step < n_chunks; ++step) {
    const int64_t n = n_chunks - 1 - step;
    const int64_t chunk = seq.chunk(p, h, n);
    const int n_valid = seq.valid_rows(p, n * kC);
    const int depth = detail::row_depth<16>(n_valid);
    const bool has_next = n > 0;
    const ChunkTiles gates = chunk_tiles<K, BV, true>(smem, step);
    const float *s_gamma = gates.gamma, *s_decay = gates.decay;
    detail::cp_async_wait<1>();  // this chunk's group 0 (K, P, dO) is here; group 1 may fly
    __syncthreads();             // ... for every thread; the dS copy is complete
    // scale diag(gamma) dO (read only after the next barrier); rows past the tokens are zero.
    for (int idx = threadIdx.x; idx < kC * (BV / 8); idx += NT) {
      const int i = idx / (BV / 8), c = (idx % (BV / 8)) * 8;
      float x[8];
      detail::unpack8(*reinterpret_cast<const uint4*>(t.d_o + i * LS + c), x);
      const float scale_i = p.scale * s_gamma[i];
#pragma unroll
      for (int e = 0; e < 8; ++e) x[e] *= scale_i;
      *reinterpret_cast<uint4*>(s_dog + i * LS + c) = detail::pack8(x);
    }
    // dS leaving this chunk (its bf16 copy)
    detail::store_rows<K, BV, NT>(detail::as_bf16(p.grad_chunk_states) + chunk * K * V + v0, V,
                                  s_ds, LS, /*negate=*/false);
    {  // dU = P^T dO + diag(decay) K dS; P^T is upper triangular: rows i need m >= 16 (i / 16)
      const bool has_tokens = wp.r0 < n_valid;
      float kds[4][4] = {}, du[4][4] = {};
      if (has_tokens) {
        mma::warp_mma_bf16<4>(kds, wp.lane, wp.r0, wp.c0, 0, K, rows_of(t.k, LD),
                              rows_of(s_ds, LS));
        mma::warp_mma_bf16<4>(du, wp.lane, wp.r0, wp.c0, wp.r0, depth, transpose_of(t.p, LC),
                              rows_of(t.d_o, LS));
      }
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
        for (int r = 0; r < 4; ++r)
          du[nt][r] += s_decay[wp.r0 + Acc::c_row(wp.lane, r)] * kds[nt][r];
      }
      wp.each_pair(wp.r0, du, [&](int i, int j, float x0, float x1) {
        detail::store_bf16_pair(s_dun + i * LS + j, -x0, -x1);
      });
    }
    detail::cp_async_wait<0>();  // group 1 (Q, W) is here too
    __syncthreads();  // -dU is complete; every warp is done with K, P, dO and the dS copy
    if (has_next) {
      load_group<K, V, BV, true, 0>(p, seq, head, n - 1, chunk_tiles<K, BV, true>(smem, step + 1));
    }
    detail::store_rows<kC, BV, NT>(detail::as_bf16(p.grad_u) + chunk * kC * V + v0, V, s_dun, LS,
                                   /*negate=*/true);
    {  // dS <- gamma_C dS + Q^T (scale diag(gamma) dO) + W^T (-dU)
      const float gamma_last = s_gamma[kC - 1];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        if (!wp.has_tile(mt)) continue;
        wp.each(wp.state_row0(mt), ds[mt], [&](int, int, float& x) { x *= gamma_last; });
        mma::warp_mma_bf16<4>(ds[mt], wp.lane, wp.state_row0(mt), wp.c0, 0, depth,
                              transpose_of(t.q, LD), rows_of(s_dog, LS));
        mma::warp_mma_bf16<4>(ds[mt], wp.lane, wp.state_row0(mt), wp.c0, 0, depth,
                              transpose_of(t.w, LD), rows_of(s_dun, LS));
      }
    }
    __syncthreads();  // every warp is done with Q, W and this chunk's dO and dU tiles
    if (has_next) load_group<K, V, BV, true, 1>(p, seq, head, n - 1, t);
    wp.store_operand(ds, s_ds, LS);
  }
  if (p.grad_initial_state) wp.store(ds, p.grad_initial_state + bh * K * V, v0);
}

/// Whether a scan of 128 state columns (a whole V = 128 head, or half of V = 256, on 16 warps) is
/// built for (K, V): where V has them and K <= 128 (at K = 256 its backward needs 233,472 bytes,
/// past an H100's 232,448 per block). Elsewhere a forced 128 runs 64 (and only the instantiations
/// the dispatch can reach are compiled).
template <int K, int V>
inline constexpr bool kWholeHeadSlice = V >= 128 && K <= 128;

/// The slice width unless params.scan_slice sets it: 64 columns on 8 warps, or 32 on 4 when that
/// would leave fewer than 128 CTAs (most of an H100's 132 SMs idle). Measured on an H100 with each
/// width forced (bench/RESULTS.md, the bf16 tensor-core record, run f): 64 is fastest at 8 x 4096
/// and 8 x 1024 (x 16 heads, D = 128; 4.12 ms forward+backward at 8 x 4096 against 4.29 for 128
/// and 4.71 for 32), 32 at 1 x 16384 (4.06 against 4.44 for 64); the sleep-regime shapes are within
/// noise. 128 is kept selectable where kWholeHeadSlice: with two full sets of tiles its backward
/// scan was the fastest measured at D = 128 (0.54 ms at 8 x 4096), its forward scan was not.
int scan_slice(const GdnParams& p) {
  if (p.scan_slice != 0) return p.scan_slice;
  return p.batch * p.heads * (p.head_dim_v / 64) >= 128 ? 64 : 32;
}

template <bool kBackward, int K, int V, int BV>
cudaError_t launch_scan(const GdnParams& p, cudaStream_t stream) {
  void (*kernel)(GdnParams) = kBackward             ? gdn_chunk_bwd_scan_tc_kernel<K, V, BV>
                              : p.separate_output() ? gdn_chunk_fwd_scan_tc_kernel<K, V, BV, false>
                                                    : gdn_chunk_fwd_scan_tc_kernel<K, V, BV, true>;
  const cudaError_t err = detail::prefer_max_shared(kernel);
  if (err != cudaSuccess) return err;
  return detail::launch_with_smem(kernel, dim3(V / BV, unsigned(p.batch * p.heads)), BV * 4,
                                  ScanLayout<K, BV, kBackward>::kBytes, stream, p);
}

/// Calls f(ScanShape<K, V, BV>{}) for p's head dims (gdn_dispatch.cuh) and slice width (32 or 64
/// columns, or 128 where kWholeHeadSlice) and returns its status.
template <int K, int V, int BV>
struct ScanShape {
  static constexpr int kK = K, kV = V, kBV = BV;
};
template <class F>
cudaError_t with_scan_shape(const GdnParams& p, F f) {
  return detail::with_head_dims(
      p,
      [&](auto dims) {
        constexpr int K = decltype(dims)::kK, V = decltype(dims)::kV;
        const int slice = scan_slice(p);
        if (slice == 32) return f(ScanShape<K, V, 32>{});
        if constexpr (kWholeHeadSlice<K, V>) {
          if (slice == 128) return f(ScanShape<K, V, 128>{});
        }
        return f(ScanShape<K, V, 64>{});
      },
      detail::TensorCoreHeadDims{});
}

template <bool kBackward>
cudaError_t launch_scan(const GdnParams& p, cudaStream_t stream) {
  return with_scan_shape(p, [&](auto shape) {
    using S = decltype(shape);
    return launch_scan<kBackward, S::kK, S::kV, S::kBV>(p, stream);
  });
}

}  // namespace

namespace detail {

cudaError_t launch_gdn_chunk_fwd_scan_tc(const GdnParams& p, cudaStream_t stream) {
  return launch_scan</*kBackward=*/false>(p, stream);
}

cudaError_t launch_gdn_chunk_bwd_scan_tc(const GdnParams& p, cudaStream_t stream) {
  return launch_scan</*kBackward=*/true>(p, stream);
}

size_t gdn_chunk_scan_tc_smem_bytes(const GdnParams& p, bool backward) {
  size_t bytes = 0;
  with_scan_shape(p, [&](auto shape) {
    using S = decltype(shape);
    bytes = backward ? ScanLayout<S::kK, S::kBV, true>::kBytes
                     : ScanLayout<S::kK, S::kBV, false>::kBytes;
    return cudaSuccess;
  });
  return bytes;
}

}  // namespace detail
}  // namespace hypnos::kernels
