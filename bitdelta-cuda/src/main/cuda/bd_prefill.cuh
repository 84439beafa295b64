// bd_prefill.cuh -- multi-tenant W1A16 prefill: many rows (tokens) per tenant, on tensor cores. Included by
// bd_prefill_f16.cu and bd_prefill_bf16.cu, which instantiate it for one weight dtype each (two translation units
// that compile in parallel), and by bd_prefill.cu (the C entry points, the argument checks, the dispatch by dtype).
//
// run_prefill (end of this file) picks the kernel: on cc 9.0 with sm_90a code in the library, W and x 16-byte
// aligned and K % 8 == 0, the wgmma kernel of bd_prefill_wgmma.cuh (delta only; base + delta with F32 y as two
// passes); everything else runs prefill_kernel below (the path of cc 8.x and of newer GPUs through the PTX).
//
// prefill_kernel: block tile 128 (M) x 128 (rows of ONE segment, i.e. one tenant) x 64 (K) per stage; 8 warps as
// 4 (M) x 2 (rows); warp tile 32 x 64 = 2 m16 tiles x 8 n8 tiles, 16 mma.sync per k16 step and product.
//   x tile [128 rows][64 k] in shared memory, 4-stage cp.async pipeline (16-byte cp.async.cg, zero fill past the
//     segment's rows and past K; 16 KB a stage). Rows are 128 bytes; the 8 16-byte chunks of a row are XOR-swizzled
//     by row parity (ch ^ 4*(row & 1)), so a lane's 16-byte B-fragment read of row g is conflict-free.
//   signs: per warp and m16 tile one 32-bit device-layout word per k64 block (already the A fragment's bit order),
//     loaded from global one stage ahead, expanded to ±1 pairs in registers (shift + LOP3 per pair): per k32 step a
//     tile's 8 pair expansions feed 16 mma (8 n8 tiles x 2 k16), one ALU instruction per mma.
//   W (only when d_W != NULL): A fragments straight from global (16-byte loads of W[m][k0+8t..]) at each k32 step;
//     a second set of accumulators.
#pragma once

#include <cstdlib>
#include <cstring>

#include "bd_common.cuh"
#include "bd_prefill_wgmma.cuh"
#include "bd_tile.cuh"

namespace bd {

// bd_prefill's arguments after its checks (bitdelta_cuda.h), for the entry point of one weight dtype.
struct PrefillArgs : ProductArgs {
  const int32_t* seg_offsets;  // I32 [S + 1] row offsets of the segments (runs of rows of one tenant)
  const int32_t* seg_tenant;   // I32 [S] tenant of each segment; < 0: no delta
  int S;
  int accumulate;              // 1: y += the product
};
int prefill_f16(const PrefillArgs& a);   // bd_prefill_f16.cu: W, x F16
int prefill_bf16(const PrefillArgs& a);  // bd_prefill_bf16.cu: W, x BF16

constexpr int PF_BM = 128, PF_BN = 128, PF_BK = 64, PF_STAGES = 4, PF_WARPS = 8;
constexpr int PF_SMEM_BYTES = PF_STAGES * PF_BN * PF_BK * 2;  // 64 KB dynamic (two blocks per SM on sm_80, sm_90)

template <typename T, typename TY, bool WITH_BASE, bool VEC>
__global__ void __launch_bounds__(PF_WARPS * 32) prefill_kernel(
    const T* __restrict__ W,                        // T [M, K] (WITH_BASE; VEC: 16-byte aligned), else unused
    const T* __restrict__ x,                        // T [R, K] (VEC: 16-byte aligned, K % 8 == 0)
    const int32_t* __restrict__ seg_offsets,        // I32 [S + 1] nondecreasing row offsets of the segments
    const int32_t* __restrict__ seg_tenant,         // I32 [S]     tenant of each segment; < 0: no delta
    int S,                                          //             1 .. 65535
    const uint32_t* const* __restrict__ tenant_signs,  // [num_tenants] -> U32 device layout of [M, K]
    const float* const* __restrict__ tenant_scales,    // [num_tenants] -> F32 [1] or [M]
    int num_tenants, int scale_per_row, int accumulate,  //        accumulate: y += product (y read in TY)
    TY* __restrict__ y,                             // TY [R, M]   rows of the segments written, others untouched
    int64_t M, int64_t K) {                         //             grid (ceil(M / 128), ceil(R / 128) + S), 256
                                                    //             threads, PF_SMEM_BYTES dynamic shared memory
  extern __shared__ __align__(16) unsigned char pf_smem[];
  T (*xs)[PF_BN][PF_BK] = reinterpret_cast<T (*)[PF_BN][PF_BK]>(pf_smem);  // [PF_STAGES][BN][BK]; reused by the epilogue

  // Which segment and which 128-row piece of it this block handles (grid.y is an upper bound).
  SegmentPiece piece;
  if (!segment_piece<PF_BN>(seg_offsets, seg_tenant, S, blockIdx.y, piece)) return;
  const int row0 = piece.row0, rows = piece.rows, tenant = piece.tenant;
  const bool has_delta = tenant >= 0 && tenant < num_tenants;
  const bool bad_tenant = tenant >= num_tenants;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int wm = warp & 3, wn = warp >> 2;
  const int64_t m_block = int64_t(blockIdx.x) * PF_BM;
  const int64_t K64 = (K + 63) / 64;
  const int64_t KT = (K + PF_BK - 1) / PF_BK;

  // Sign words of this warp's two m16 tiles.
  const uint32_t* sign_ptr[2] = {nullptr, nullptr};
  if (has_delta) {
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) {
      const int64_t mt = (m_block + wm * 32 + mi * 16) / 16;
      sign_ptr[mi] = tenant_signs[tenant] + mt * K64 * 32 + lane;
    }
  }
  const int64_t M16 = (M + 15) / 16;
  bool mt_ok[2];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi) mt_ok[mi] = (m_block + wm * 32 + mi * 16) / 16 < M16;

  // W rows of this lane (WITH_BASE).
  const T* w_row[2][2];
  bool w_ok[2][2];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t m = m_block + wm * 32 + mi * 16 + g + 8 * h;
      w_ok[mi][h] = WITH_BASE && m < M;
      w_row[mi][h] = WITH_BASE ? W + (m < M ? m : 0) * K : nullptr;
    }

  // Stage `st` <- x rows [row0, row0+rows) x columns [kt*64, kt*64+64): 1024 chunks of 16 B, 4 per thread.
  auto load_stage = [&](int st, int64_t kt) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int chunk = threadIdx.x + c * PF_WARPS * 32;
      const int r = chunk >> 3, ch = chunk & 7;
      const int64_t k = kt * PF_BK + ch * 8;
      T* dst = &xs[st][r][swz(ch, r) * 8];
      if (VEC) {
        const bool ok = r < rows && k < K;
        const T* src = ok ? x + int64_t(row0 + r) * K + k : x;
        cp_async16_zfill(dst, src, ok);
      } else {
        unsigned short* d = reinterpret_cast<unsigned short*>(dst);
        const unsigned short* xr = reinterpret_cast<const unsigned short*>(x) + int64_t(row0 + (r < rows ? r : 0)) * K;
#pragma unroll
        for (int i = 0; i < 8; ++i) d[i] = (r < rows && k + i < K) ? xr[k + i] : (unsigned short)0;
      }
    }
  };

  float acc_d[2][8][4], acc_b[WITH_BASE ? 2 : 1][WITH_BASE ? 8 : 1][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        acc_d[mi][n][i] = 0.f;
        if (WITH_BASE) acc_b[WITH_BASE ? mi : 0][WITH_BASE ? n : 0][i] = 0.f;
      }

  pipeline_start<PF_STAGES>(KT, load_stage);

  // Sign words: one per (m16 tile, k64 block) = per stage; prefetched one stage ahead.
  uint32_t sw_next[2] = {0u, 0u};
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
    if (has_delta && mt_ok[mi]) sw_next[mi] = __ldg(sign_ptr[mi]);

  for (int64_t kt = 0; kt < KT; ++kt) {
    pipeline_next<PF_STAGES>(kt, KT, load_stage);
    const int st = int(kt % PF_STAGES);
    uint32_t sw_cur[2];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) {
      sw_cur[mi] = sw_next[mi];
      sw_next[mi] = (has_delta && mt_ok[mi] && kt + 1 < K64) ? __ldg(sign_ptr[mi] + (kt + 1) * 32) : 0u;
    }
#pragma unroll
    for (int s = 0; s < 2; ++s) {  // k32 halves of the stage
      uint4 wa[2][2];
      if (WITH_BASE) {
#pragma unroll
        for (int mi = 0; mi < 2; ++mi)
#pragma unroll
          for (int h = 0; h < 2; ++h) wa[mi][h] = load8<VEC>(w_row[mi][h], kt * PF_BK + s * 32 + t * 8, K, w_ok[mi][h]);
      }
      // B fragments: row (wn*64 + n*8 + g) of the x tile, chunk 4s + t (both k16 steps of this k32).
      uint4 bx[8];
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        const int r = wn * 64 + n * 8 + g;
        bx[n] = *reinterpret_cast<const uint4*>(&xs[st][r][swz(4 * s + t, r) * 8]);
      }
      if (has_delta) {
#pragma unroll
        for (int mi = 0; mi < 2; ++mi) {
          const uint32_t w = sw_cur[mi];
          const int q = 8 * s;
          const uint32_t a0 = expand_pair<T>(w, q + 0), a1 = expand_pair<T>(w, q + 1);
          const uint32_t a2 = expand_pair<T>(w, q + 2), a3 = expand_pair<T>(w, q + 3);
          const uint32_t a4 = expand_pair<T>(w, q + 4), a5 = expand_pair<T>(w, q + 5);
          const uint32_t a6 = expand_pair<T>(w, q + 6), a7 = expand_pair<T>(w, q + 7);
#pragma unroll
          for (int n = 0; n < 8; ++n) {
            mma16816<T>(acc_d[mi][n], a0, a1, a2, a3, bx[n].x, bx[n].y);
            mma16816<T>(acc_d[mi][n], a4, a5, a6, a7, bx[n].z, bx[n].w);
          }
        }
      }
      if (WITH_BASE) {
#pragma unroll
        for (int mi = 0; mi < 2; ++mi)
#pragma unroll
          for (int n = 0; n < 8; ++n) {
            float* c = acc_b[WITH_BASE ? mi : 0][WITH_BASE ? n : 0];
            mma16816<T>(c, wa[mi][0].x, wa[mi][1].x, wa[mi][0].y, wa[mi][1].y, bx[n].x, bx[n].y);
            mma16816<T>(c, wa[mi][0].z, wa[mi][1].z, wa[mi][0].w, wa[mi][1].w, bx[n].z, bx[n].w);
          }
      }
    }
  }
  cp_async_wait_group<0>();

  // Epilogue: c0,c1 -> (m = g, rows 2t, 2t+1), c2,c3 -> (m = g+8, rows 2t, 2t+1).
  const float* scale = has_delta ? tenant_scales[tenant] : nullptr;
  auto value = [&](int mi, int n, int idx, int64_t m) {
    float v = has_delta ? scale[scale_per_row ? m : 0] * acc_d[mi][n][idx] : 0.f;
    if (WITH_BASE) v += acc_b[WITH_BASE ? mi : 0][WITH_BASE ? n : 0][idx];
    return v;
  };
  if (sizeof(TY) == 2 && (M % 8) == 0 && !accumulate) {
    // 16-bit y: stage the 128 x 128 tile in shared memory ([row][m], rows padded by 16 bytes), then write
    // 16-byte chunks along m (coalesced). (Not when accumulating: the staged tile is rounded to 16 bits, and
    // adding the old y to it would round twice; the path below adds in F32 and rounds once.)
    constexpr int LD = PF_BM + 8;
    TY* tile = reinterpret_cast<TY*>(pf_smem);
    __syncthreads();
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int ml = wm * 32 + mi * 16 + g + 8 * h;
        const int64_t m = m_block + ml;
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int r = wn * 64 + n * 8 + 2 * t + e;
            tile[r * LD + ml] = store_cast<TY>(m < M ? value(mi, n, 2 * h + e, m) : 0.f);
          }
      }
    __syncthreads();
    for (int c = threadIdx.x; c < PF_BN * (PF_BM / 8); c += PF_WARPS * 32) {
      const int r = c / (PF_BM / 8), ch = c % (PF_BM / 8);
      const int64_t m = m_block + ch * 8;
      if (r >= rows || m >= M) continue;
      uint4 v = *reinterpret_cast<const uint4*>(&tile[r * LD + ch * 8]);
      uint4* out = reinterpret_cast<uint4*>(y + int64_t(row0 + r) * M + m);
      if (bad_tenant) {
        TY nan8[8];
        for (int i = 0; i < 8; ++i) nan8[i] = store_cast<TY>(__int_as_float(0x7fc00000));
        v = *reinterpret_cast<const uint4*>(nan8);
      }
      *out = v;
    }
    return;
  }
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t m = m_block + wm * 32 + mi * 16 + g + 8 * h;
      if (m >= M) continue;
#pragma unroll
      for (int n = 0; n < 8; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int r = wn * 64 + n * 8 + 2 * t + e;
          if (r >= rows) continue;
          float v = value(mi, n, 2 * h + e, m);
          TY* out = y + int64_t(row0 + r) * M + m;
          if (accumulate) v += load_float<TY>(out);
          if (bad_tenant) v = __int_as_float(0x7fc00000);
          *out = store_cast<TY>(v);
        }
    }
}

template <typename T, typename TY, bool WITH_BASE>
static int launch_prefill(bool vec, const T* W, const T* x, int64_t R, const int32_t* offs, const int32_t* tens,
                          int S, const uint32_t* const* signs, const float* const* scales, int num_tenants,
                          int per_row, int accumulate, TY* y, int64_t M, int64_t K, cudaStream_t stream) {
  const int64_t grid_y = (R + PF_BN - 1) / PF_BN + S;  // upper bound of sum over segments of ceil(len/128)
  if (grid_y > 65535) return BD_ERR_BAD_SHAPE;
  const dim3 grid(unsigned((M + PF_BM - 1) / PF_BM), unsigned(grid_y)), block(PF_WARPS * 32);
  static bool attribute_set[2] = {false, false};  // per VEC instantiation
  auto kernel = vec ? prefill_kernel<T, TY, WITH_BASE, true> : prefill_kernel<T, TY, WITH_BASE, false>;
  const cudaError_t e = set_smem_limit(kernel, PF_SMEM_BYTES, &attribute_set[vec]);
  if (e != cudaSuccess) return record_cuda_error(e);
  kernel<<<grid, block, PF_SMEM_BYTES, stream>>>(W, x, offs, tens, S, signs, scales, num_tenants, per_row, accumulate,
                                                 y, M, K);
  BD_CHECK_LAUNCH();
  return BD_OK;
}

// The wgmma kernel runs when the library holds sm_90a code (BD_HAVE_SM90A, set by build.sh) and the current
// device is cc 9.0 (Hopper). In the experiment build, BD_PREFILL_KERNEL=mma_sync in the environment forces
// prefill_kernel (the path of cc 8.x), so that the harness checks and times it on a Hopper GPU.
inline bool use_wgmma() {
#ifdef BD_HAVE_SM90A
#if BD_EXPERIMENTS
  const char* force = std::getenv("BD_PREFILL_KERNEL");
  if (force != nullptr && std::strcmp(force, "mma_sync") == 0) return false;
#endif
  DeviceInfo device;
  if (device_info(&device) != cudaSuccess) return false;
  return device.major == 9 && device.minor == 0;
#else
  return false;
#endif
}

template <typename T, typename TY, bool BASE>
static int launch_prefill_wgmma_ws(const T* W, const T* x, int64_t R, const int32_t* offs, const int32_t* tens, int S,
                                   const uint32_t* const* signs, const float* const* scales, int num_tenants,
                                   int per_row, int accumulate, TY* y, int64_t M, int64_t K, cudaStream_t stream) {
  const int64_t grid_y = (R + PW_BR - 1) / PW_BR + S;  // upper bound of the sum over segments of ceil(len / 128)
  if (grid_y > 65535) return BD_ERR_BAD_SHAPE;
  const dim3 grid(unsigned((M + 255) / 256), unsigned(grid_y)), block(PWS_THREADS);
  static bool attribute_set = false;
  const cudaError_t e = set_smem_limit(prefill_wgmma_ws_kernel<T, TY, BASE>, PwCfg<256>::SMEM_BYTES, &attribute_set);
  if (e != cudaSuccess) return record_cuda_error(e);
  prefill_wgmma_ws_kernel<T, TY, BASE><<<grid, block, PwCfg<256>::SMEM_BYTES, stream>>>(
      W, x, offs, tens, S, signs, scales, num_tenants, per_row, accumulate, y, M, K);
  BD_CHECK_LAUNCH();
  return BD_OK;
}

template <typename T, typename TY>
static int run_prefill(const void* W, const void* x, int64_t R, const int32_t* offs, const int32_t* tens, int S,
                       const uint32_t* const* signs, const float* const* scales, int num_tenants, int per_row,
                       int accumulate, void* y, int64_t M, int64_t K, cudaStream_t stream) {
  const bool vec = (K % 8 == 0) && aligned16(x) && (W == nullptr || aligned16(W));
  const T* Wt = static_cast<const T*>(W);
  const T* xt = static_cast<const T*>(x);
  TY* yt = static_cast<TY*>(y);
  if (vec && use_wgmma()) {
    if (!W)
      return launch_prefill_wgmma_ws<T, TY, false>(nullptr, xt, R, offs, tens, S, signs, scales, num_tenants, per_row,
                                                    accumulate, yt, M, K, stream);
    // Base + delta with F32 y: the base product, then the delta added to it, both on the wgmma kernel (the F32 sum
    // in y between the two passes loses nothing). 16-bit y would be rounded twice that way: it takes the fused
    // mma.sync kernel below.
    if constexpr (sizeof(TY) == 4) {
      const int status = launch_prefill_wgmma_ws<T, TY, true>(Wt, xt, R, offs, tens, S, signs, scales, num_tenants,
                                                             per_row, accumulate, yt, M, K, stream);
      if (status != BD_OK) return status;
      return launch_prefill_wgmma_ws<T, TY, false>(nullptr, xt, R, offs, tens, S, signs, scales, num_tenants, per_row,
                                                   1, yt, M, K, stream);
    }
  }
  if (W)
    return launch_prefill<T, TY, true>(vec, Wt, xt, R, offs, tens, S, signs, scales, num_tenants, per_row, accumulate,
                                       yt, M, K, stream);
  return launch_prefill<T, TY, false>(vec, nullptr, xt, R, offs, tens, S, signs, scales, num_tenants, per_row,
                                      accumulate, yt, M, K, stream);
}

// The entry point of one weight dtype T (y: T or F32).
template <typename T>
int prefill_dtype(const PrefillArgs& a) {
  return with_y_dtype<T>(a.y_dtype, [&](auto output) {
    return run_prefill<T, typename decltype(output)::type>(a.W, a.x, a.R, a.seg_offsets, a.seg_tenant, a.S, a.signs,
                                                            a.scales, a.num_tenants, a.per_row, a.accumulate, a.y,
                                                            a.M, a.K, a.stream);
  });
}

}  // namespace bd
