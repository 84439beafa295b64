// bd_decode.cuh -- multi-tenant W1A16 decode: a few rows of x (one token per tenant), base product fused, so W is
// read once per launch for all rows. Included by bd_decode_f16.cu and bd_decode_bf16.cu, which instantiate it for
// one weight dtype each (two translation units that compile in parallel), and by bd_decode.cu (the C entry points,
// the argument checks, the dispatch by dtype). Three kernel versions (bitdelta_cuda.h lists the instantiations):
//   version 1  decode_kernel (this file): 8 warps split K; the delta on f16/bf16 tensor cores, signs expanded to ±1
//              in registers. One launch, no workspace: the automatic choice for up to 8 rows.
//   version 2  decode2_kernel (this file): a cp.async pipeline of W, x and sign tiles; warps split the rows. The
//              fallback for more than 8 rows when the caller gives no (large enough) workspace.
//   version 3  xplanes_kernel + decode3_kernel / decode3_lean_kernel (bd_decode3.cuh): the delta on the binary
//              tensor cores against bit-planes of x. The automatic choice for more than 8 rows.
// run_decode (end of this file) picks the version. The forms that only bd_debug_set_decode_variant selects (M32
// blocks, version 1 above 8 rows) are compiled only with -DBD_EXPERIMENTS=1 (bench/build.sh, harness build).
//
// Version 1 work split: one block per 16 rows of M (an m16 mma tile); its 8 warps split K into 8 contiguous ranges
// of k64 blocks; every warp covers all R (<= 8 * NT) rows of x. Per k64 block a lane loads
//   W:     rows m0+g and m0+g+8, columns k0+8t .. k0+8t+7 of both k32 halves: 4 x 16 B  (streaming, read once)
//   x:     row 8n+g of every n8 tile, same columns: 2 x 16 B per tile (L2-resident, read by every block)
//   signs: one 32-bit device-layout word per row (tenant), holding its 32 A-fragment signs (streaming)
// and issues, per k16 step, NT base mma (A = W, B = x) and one delta mma per valid row i of each n8 tile,
// A = the row's tenant's signs expanded to ±1 in registers, B = the x fragment masked to column i (lanes
// with g != i give zeros), so all 8 rows of a tile accumulate into one fragment, each in its own column.
// The 8 warps' partial sums meet in shared memory (added in a fixed warp order: deterministic), then the block
// writes y = base + a_t[m] * delta.
#pragma once

#include <type_traits>

#include "bd_common.cuh"
#include "bd_tile.cuh"

namespace bd {

// bd_decode's arguments after its checks (bitdelta_cuda.h), for the entry point of one weight dtype.
struct DecodeArgs : ProductArgs {
  const int32_t* row_tenant;  // I32 [R] tenant of each row; < 0: base only
  void* ws;                   // the version-3 workspace (bd_decode_workspace_bytes), or NULL
  size_t ws_bytes;
};
int decode_f16(const DecodeArgs& a);   // bd_decode_f16.cu: W, x F16
int decode_bf16(const DecodeArgs& a);  // bd_decode_bf16.cu: W, x BF16

// Benchmark and check settings, process-wide (bd_decode.cu): the forced kernel version (a bd_decode_variant), and
// whether the lean form may run persistent blocks (1, the default).
extern int g_decode_variant;
extern int g_decode_persistent;

constexpr int DECODE_WARPS = 8;
constexpr int DECODE_MAX_ROWS = 32;  // rows of x per launch of any version (NT, RW <= 4)
// Rows of x per launch of version 1: the release build instantiates NT = 1 only (the automatic choice's range).
constexpr int SPLIT_K_MAX_ROWS = BD_EXPERIMENTS ? 32 : 8;

// The block's fixed costs overlap the stream: each warp prefetches its first W lines to L2 before the dependent
// tenant lookups, the epilogue's scales are loaded before the main loop, and the 8 warps' partial sums meet in one
// shared-memory pass (one barrier instead of eight). Measured on an H100: 0.4-2.2 us less per call at 1-8 rows,
// 0.1-0.4 us more at 4096x4096 with one row. (Also measured and removed: k64 blocks interleaved over the warps, W
// in a tiled layout with each warp's 16 x 64 piece contiguous -- no faster; 16 warps per block at two blocks per
// SM, 64 registers -- 6-20% slower at 1-8 rows.)
__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p)); }

template <typename T, typename TY, int NT, bool VEC>
__global__ void __launch_bounds__(DECODE_WARPS * 32) decode_kernel(
    const T* __restrict__ W,                       // T [M, K]   (VEC: 16-byte aligned, K % 8 == 0)
    const T* __restrict__ x,                       // T [R, K]   rows of this launch, R <= 8 * NT
    const int32_t* __restrict__ row_tenant,        // I32 [R]    tenant of each row; < 0: base only
    int R,                                         //            1 .. 8 * NT
    const uint32_t* const* __restrict__ tenant_signs,  // [num_tenants] -> U32 device layout of [M, K]
    const float* const* __restrict__ tenant_scales,    // [num_tenants] -> F32 [1] or [M]
    int num_tenants, int scale_per_row,            //            scale_per_row: BD_SCALE_PER_MATRIX / _ROW
    TY* __restrict__ y,                            // TY [R, M]  every element written
    int64_t M, int64_t K) {                        //            grid: ceil(M / 16) blocks of 256 threads
  constexpr int ROWS = NT * 8;
  constexpr int EPI = (16 * ROWS + DECODE_WARPS * 32 - 1) / (DECODE_WARPS * 32);  // epilogue items per thread
  __shared__ const uint32_t* s_signs[ROWS];
  __shared__ const float* s_scales[ROWS];
  __shared__ int s_tenant[ROWS];
  __shared__ float s_acc[DECODE_WARPS][2][16][ROWS + 1];  // [warp][base/delta][m in tile][row]

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t mt = blockIdx.x, m0 = mt * 16;
  const int64_t K64 = (K + 63) / 64;
  const int64_t kb_begin = K64 * warp / DECODE_WARPS, kb_end = K64 * (warp + 1) / DECODE_WARPS;

  const bool w_ok0 = m0 + g < M, w_ok1 = m0 + g + 8 < M;
  const T* w_row0 = W + (w_ok0 ? (m0 + g) : 0) * K;
  const T* w_row1 = W + (w_ok1 ? (m0 + g + 8) : 0) * K;
  {  // the first two k64 blocks of this warp's W, requested before the dependent tenant lookups
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int64_t kb = kb_begin + u;
      if (kb >= kb_end) break;
#pragma unroll
      for (int s = 0; s < 2; ++s) {
        const int64_t k = kb * 64 + s * 32 + t * 8;
        if (k < K) {
          if (w_ok0) prefetch_l2(w_row0 + k);
          if (w_ok1) prefetch_l2(w_row1 + k);
        }
      }
    }
  }

  if (threadIdx.x < ROWS) {
    const int r = threadIdx.x;
    const int ten = r < R ? row_tenant[r] : -1;
    const bool valid = ten >= 0 && ten < num_tenants;
    s_tenant[r] = ten;
    s_signs[r] = valid ? tenant_signs[ten] + mt * K64 * 32 : nullptr;
    s_scales[r] = valid ? tenant_scales[ten] : nullptr;
  }
  __syncthreads();

  // This thread's epilogue scales, loaded now so that their latency hides behind the main loop.
  float pre_scale[EPI];
#pragma unroll
  for (int j = 0; j < EPI; ++j) {
    pre_scale[j] = 0.f;
    const int idx = threadIdx.x + j * DECODE_WARPS * 32;
    if (idx < 16 * R) {
      const int r = idx >> 4;
      const int64_t m = m0 + (idx & 15);
      const float* sp = s_scales[r];
      if (sp != nullptr && m < M) pre_scale[j] = __ldg(sp + (scale_per_row ? m : 0));
    }
  }

  float acc_base[NT][4], acc_delta[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc_base[n][i] = acc_delta[n][i] = 0.f;

  const T* x_row[NT];
  bool x_ok[NT];
#pragma unroll
  for (int n = 0; n < NT; ++n) {
    x_ok[n] = n * 8 + g < R;
    x_row[n] = x + (x_ok[n] ? (n * 8 + g) : 0) * K;
  }

  // Few rows: unrolled twice so that the next block's loads are issued before this block's mma (more bytes
  // in flight); with more rows the registers are needed for the rows.
#pragma unroll(NT == 1 ? 2 : 1)
  for (int64_t kb = kb_begin; kb < kb_end; ++kb) {
    // All loads of this k64 block first (several independent 16-byte loads in flight per lane).
    uint32_t sw[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const uint32_t* p = s_signs[r];
      sw[r] = p ? __ldcs(p + kb * 32 + lane) : 0u;
    }
    uint4 a[2][2], b[2][NT];
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      const int64_t k = kb * 64 + s * 32 + t * 8;
      a[s][0] = load8_stream<VEC>(w_row0, k, K, w_ok0);
      a[s][1] = load8_stream<VEC>(w_row1, k, K, w_ok1);
#pragma unroll
      for (int n = 0; n < NT; ++n) b[s][n] = load8<VEC>(x_row[n], k, K, x_ok[n]);
    }
#pragma unroll
    for (int s = 0; s < 2; ++s) {
      // Base: A = W (rows g / g+8), B = x.
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        mma16816<T>(acc_base[n], a[s][0].x, a[s][1].x, a[s][0].y, a[s][1].y, b[s][n].x, b[s][n].y);
        mma16816<T>(acc_base[n], a[s][0].z, a[s][1].z, a[s][0].w, a[s][1].w, b[s][n].z, b[s][n].w);
      }
      // Delta: one mma pair per valid row, B masked to that row's column.
#pragma unroll
      for (int n = 0; n < NT; ++n) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const int r = n * 8 + i;
          if (s_signs[r] == nullptr) continue;  // warp-uniform: row absent, base-only or invalid tenant
          const uint32_t w = sw[r];
          const bool mine = (g == i);
          const uint32_t b0 = mine ? b[s][n].x : 0u, b1 = mine ? b[s][n].y : 0u;
          const uint32_t b2 = mine ? b[s][n].z : 0u, b3 = mine ? b[s][n].w : 0u;
          const int q = 8 * s;
          mma16816<T>(acc_delta[n], expand_pair<T>(w, q + 0), expand_pair<T>(w, q + 1), expand_pair<T>(w, q + 2),
                      expand_pair<T>(w, q + 3), b0, b1);
          mma16816<T>(acc_delta[n], expand_pair<T>(w, q + 4), expand_pair<T>(w, q + 5), expand_pair<T>(w, q + 6),
                      expand_pair<T>(w, q + 7), b2, b3);
        }
      }
    }
  }

  // Every warp stores its partial sums (accumulator fragment: c0,c1 -> (m = g, rows 2t, 2t+1), c2,c3 ->
  // (m = g+8, ...)); one barrier; the epilogue adds the 8 warps in a fixed order (deterministic).
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int mm = g + 8 * (i >> 1), col = n * 8 + 2 * t + (i & 1);
      s_acc[warp][0][mm][col] = acc_base[n][i];
      s_acc[warp][1][mm][col] = acc_delta[n][i];
    }
  __syncthreads();
  // Epilogue: y[r, m] = base + a_t[m] * delta. 16 consecutive m per row r.
#pragma unroll
  for (int j = 0; j < EPI; ++j) {
    const int idx = threadIdx.x + j * DECODE_WARPS * 32;
    if (idx >= 16 * R) break;
    const int r = idx >> 4, mm = idx & 15;
    const int64_t m = m0 + mm;
    if (m >= M) continue;
    float base = 0.f, delta = 0.f;
#pragma unroll
    for (int w = 0; w < DECODE_WARPS; ++w) {
      base += s_acc[w][0][mm][r];
      delta += s_acc[w][1][mm][r];
    }
    const float v = tenant_output(base, s_tenant[r], num_tenants, [&] { return pre_scale[j]; }, delta);
    y[int64_t(r) * M + m] = store_cast<TY>(v);
  }
}


// ------------------------------------------------------------------------------------------------------
// Version 2: block-cooperative cp.async pipeline, warps split the ROWS (tenants), not K.
//
// Block: MT m16 tiles (BM = 16*MT rows of M; MT = 1 in the release build), ROWS = 8*RW rows of x, all of K,
// 8 warps. Per stage (k128):
//   Ws [BM][128]  T      the base tile  (the 16 16-byte chunks of a 256-byte row XOR-swizzled by row parity,
//                                        ch ^ 4*(row & 1): conflict-free LDS.128)
//   Xs [ROWS][128] T     x rows         (same swizzle)
//   Ss [ROWS][MT][2][32] U32  sign words of each row's tenant, exactly the device layout's 128-byte lines
// STAGES - 1 stages in flight, every load a 16-byte cp.async.cg (L2 only: each byte is used once by this block).
// Warp w owns rows w*RW .. w*RW+RW-1 (one n8 tile), one accumulator per (row, m16 tile): no masking and short
// mma dependency chains. The base product of n8 tile j is computed by the first MT warps owning rows of j.
// Epilogue: base accumulators -> shared memory -> the row's warp adds a_t[m] * delta and writes y.
template <int RW, int MT>
struct Decode2Shape {
  static constexpr int ROWS = 8 * RW, BM = 16 * MT, KC = 128;
  static constexpr int W_BYTES = BM * KC * 2, X_BYTES = ROWS * KC * 2, S_BYTES = ROWS * MT * 2 * 128;
  static constexpr int STAGE_BYTES = W_BYTES + X_BYTES + S_BYTES;
  // As many stages as fit in 96 KB (3 to 12; two blocks per SM on Hopper): few rows -> small stages -> a deep
  // pipeline, so that enough bytes are in flight per SM (about 40-60 KB) for the memory system to run at full rate.
  static constexpr int STAGES = (98304 / STAGE_BYTES) < 3 ? 3 : (98304 / STAGE_BYTES) > 12 ? 12 : (98304 / STAGE_BYTES);
  static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES;
};

template <typename T, typename TY, int RW, int MT, bool VEC>
__global__ void __launch_bounds__(256) decode2_kernel(
    const T* __restrict__ W,                       // T [M, K]   (VEC: 16-byte aligned, K % 8 == 0)
    const T* __restrict__ x,                       // T [R, K]   rows of this launch (VEC: 16-byte aligned)
    const int32_t* __restrict__ row_tenant,        // I32 [R]    tenant of each row; < 0: base only
    int R,                                         //            1 .. 8 * RW
    const uint32_t* const* __restrict__ tenant_signs,  // [num_tenants] -> U32 device layout (16-byte aligned)
    const float* const* __restrict__ tenant_scales,    // [num_tenants] -> F32 [1] or [M]
    int num_tenants, int scale_per_row,
    TY* __restrict__ y,                            // TY [R, M]  every element written
    int64_t M, int64_t K) {                        //            grid: ceil(M / (16 * MT)) blocks of 256 threads,
                                                   //            Decode2Shape::SMEM_BYTES dynamic shared memory
  using Shape = Decode2Shape<RW, MT>;
  constexpr int ROWS = Shape::ROWS, BM = Shape::BM, KC = Shape::KC, STAGES = Shape::STAGES;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ const uint32_t* s_signs[ROWS];
  __shared__ int s_tenant[ROWS];
  __shared__ float s_base[BM][ROWS + 1];

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t m0 = int64_t(blockIdx.x) * BM, mt0 = m0 / 16;
  const int64_t K64 = (K + 63) / 64, M16 = (M + 15) / 16;
  const int64_t KCH = (K + KC - 1) / KC;

  if (threadIdx.x < ROWS) {
    const int r = threadIdx.x;
    const int ten = r < R ? row_tenant[r] : -1;
    s_tenant[r] = ten;
    s_signs[r] = (ten >= 0 && ten < num_tenants) ? tenant_signs[ten] : nullptr;
  }
  __syncthreads();

  auto stage_ptr = [&](int st) { return smem + st * Shape::STAGE_BYTES; };
  auto load_stage = [&](int st, int64_t kc) {
    unsigned char* base = stage_ptr(st);
    T* Ws = reinterpret_cast<T*>(base);
    T* Xs = reinterpret_cast<T*>(base + Shape::W_BYTES);
    uint32_t* Ss = reinterpret_cast<uint32_t*>(base + Shape::W_BYTES + Shape::X_BYTES);
    const int64_t k0 = kc * KC;
    // W tile: BM rows x 16 chunks.
    for (int c = threadIdx.x; c < BM * 16; c += 256) {
      const int row = c >> 4, ch = c & 15;
      const int64_t m = m0 + row, k = k0 + ch * 8;
      T* dst = Ws + row * KC + swz(ch, row) * 8;
      if (VEC) {
        const bool ok = m < M && k < K;
        cp_async16_zfill(dst, ok ? W + m * K + k : W, ok);
      } else {
        unsigned short* d = reinterpret_cast<unsigned short*>(dst);
        const unsigned short* src = reinterpret_cast<const unsigned short*>(W) + (m < M ? m : 0) * K;
#pragma unroll
        for (int i = 0; i < 8; ++i) d[i] = (m < M && k + i < K) ? __ldg(src + k + i) : (unsigned short)0;
      }
    }
    // x rows: ROWS x 16 chunks.
    for (int c = threadIdx.x; c < ROWS * 16; c += 256) {
      const int row = c >> 4, ch = c & 15;
      const int64_t k = k0 + ch * 8;
      T* dst = Xs + row * KC + swz(ch, row) * 8;
      if (VEC) {
        const bool ok = row < R && k < K;
        cp_async16_zfill(dst, ok ? x + int64_t(row) * K + k : x, ok);
      } else {
        unsigned short* d = reinterpret_cast<unsigned short*>(dst);
        const unsigned short* src = reinterpret_cast<const unsigned short*>(x) + int64_t(row < R ? row : 0) * K;
#pragma unroll
        for (int i = 0; i < 8; ++i) d[i] = (row < R && k + i < K) ? __ldg(src + k + i) : (unsigned short)0;
      }
    }
    // Sign lines: ROWS x MT x 2 (k64 blocks) x 8 chunks of 16 bytes.
    for (int c = threadIdx.x; c < ROWS * MT * 16; c += 256) {
      const int row = c / (MT * 16), rem = c % (MT * 16), mi = rem >> 4, kb2 = (rem >> 3) & 1, ch = rem & 7;
      const uint32_t* p = s_signs[row];
      const int64_t mt = mt0 + mi, kb = 2 * kc + kb2;
      const bool ok = p != nullptr && mt < M16 && kb < K64;
      cp_async16_zfill(Ss + ((row * MT + mi) * 2 + kb2) * 32 + ch * 4, ok ? static_cast<const void*>(p + (mt * K64 + kb) * 32 + ch * 4) : static_cast<const void*>(W), ok);
    }
  };

  // Roles of this warp.
  const int nt = (warp * RW) / 8;                  // its n8 tile
  const int xrow = nt * 8 + g;                     // x row this lane feeds into the B fragment
  const int base_mi = warp - nt * (8 / RW);        // which m16 tile's base product it computes, if < MT
  const bool do_base = base_mi < MT && nt * 8 < R;
  bool row_on[RW];
#pragma unroll
  for (int i = 0; i < RW; ++i) row_on[i] = (warp * RW + i < R) && s_signs[warp * RW + i] != nullptr;

  float acc_b[4] = {0.f, 0.f, 0.f, 0.f};
  float acc_d[RW][MT][4];
#pragma unroll
  for (int i = 0; i < RW; ++i)
#pragma unroll
    for (int mi = 0; mi < MT; ++mi)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc_d[i][mi][e] = 0.f;

  pipeline_start<STAGES>(KCH, load_stage);
  for (int64_t kc = 0; kc < KCH; ++kc) {
    pipeline_next<STAGES>(kc, KCH, load_stage);
    const unsigned char* base = stage_ptr(int(kc % STAGES));
    const T* Ws = reinterpret_cast<const T*>(base);
    const T* Xs = reinterpret_cast<const T*>(base + Shape::W_BYTES);
    const uint32_t* Ss = reinterpret_cast<const uint32_t*>(base + Shape::W_BYTES + Shape::X_BYTES);
#pragma unroll
    for (int kb2 = 0; kb2 < 2; ++kb2) {
      uint32_t sw[RW][MT];
#pragma unroll
      for (int i = 0; i < RW; ++i)
#pragma unroll
        for (int mi = 0; mi < MT; ++mi)
          sw[i][mi] = Ss[(((warp * RW + i) * MT + mi) * 2 + kb2) * 32 + lane];
#pragma unroll
      for (int s = 0; s < 2; ++s) {
        const int ch = (kb2 * 2 + s) * 4 + t;
        const uint4 bx = *reinterpret_cast<const uint4*>(Xs + xrow * KC + swz(ch, xrow) * 8);
        if (do_base) {
          const int r0 = base_mi * 16 + g, r1 = r0 + 8;
          const uint4 a0 = *reinterpret_cast<const uint4*>(Ws + r0 * KC + swz(ch, r0) * 8);
          const uint4 a1 = *reinterpret_cast<const uint4*>(Ws + r1 * KC + swz(ch, r1) * 8);
          mma16816<T>(acc_b, a0.x, a1.x, a0.y, a1.y, bx.x, bx.y);
          mma16816<T>(acc_b, a0.z, a1.z, a0.w, a1.w, bx.z, bx.w);
        }
#pragma unroll
        for (int i = 0; i < RW; ++i) {
          if (!row_on[i]) continue;  // warp-uniform
#pragma unroll
          for (int mi = 0; mi < MT; ++mi) {
            const uint32_t w = sw[i][mi];
            const int q = 8 * s;
            mma16816<T>(acc_d[i][mi], expand_pair<T>(w, q + 0), expand_pair<T>(w, q + 1), expand_pair<T>(w, q + 2),
                        expand_pair<T>(w, q + 3), bx.x, bx.y);
            mma16816<T>(acc_d[i][mi], expand_pair<T>(w, q + 4), expand_pair<T>(w, q + 5), expand_pair<T>(w, q + 6),
                        expand_pair<T>(w, q + 7), bx.z, bx.w);
          }
        }
      }
    }
  }
  cp_async_wait_group<0>();

  // Base products to shared memory: c0,c1 -> (m = g, columns 2t, 2t+1), c2,c3 -> (m = g+8, ...).
  if (do_base) {
#pragma unroll
    for (int e = 0; e < 4; ++e) s_base[base_mi * 16 + g + 8 * (e >> 1)][nt * 8 + 2 * t + (e & 1)] = acc_b[e];
  }
  __syncthreads();
  // Each row's owner writes y[r, m0 .. m0+BM). The row's column is c = r & 7: lanes with t == c/2 hold it.
#pragma unroll
  for (int i = 0; i < RW; ++i) {
    const int r = warp * RW + i;
    if (r >= R) continue;
    const int ten = s_tenant[r];
    const int col = r & 7;
    if (t != (col >> 1)) continue;
    const int e = col & 1;
#pragma unroll
    for (int mi = 0; mi < MT; ++mi)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int mm = mi * 16 + g + 8 * h;
        const int64_t m = m0 + mm;
        if (m >= M) continue;
        const float d = e ? acc_d[i][mi][2 * h + 1] : acc_d[i][mi][2 * h];  // constant indices: stays in registers
        const float v = tenant_output(s_base[mm][r], ten, num_tenants,
                                      [&] { return tenant_scales[ten][scale_per_row ? m : 0]; }, d);
        y[int64_t(r) * M + m] = store_cast<TY>(v);
      }
  }
}

}  // namespace bd
#include "bd_decode3.cuh"
namespace bd {

// ------------------------------------------------------------------------------------------------------
// Host side: the workspace, the launchers, and run_decode (the automatic choice).

// The pre-pass's output in the workspace, each part 256-byte aligned (decode3_workspace).
struct XPlanes {
  uint32_t* xb;       // U32 [R][K256][128]  bit-plane B fragments
  float* scale;       // F32 [R]             max|x_r| / 32767
  long long* q_sums;  // I64 [R][XP_PARTS]   part sums of the quantized rows
};
inline size_t align256(size_t v) { return (v + 255) / 256 * 256; }
inline size_t decode3_workspace(int64_t K, int64_t R) {
  const size_t K256 = size_t((K + 255) / 256);
  return align256(size_t(R) * K256 * 512) + align256(size_t(R) * 4) + align256(size_t(R) * XP_PARTS * 8);
}
inline XPlanes decode3_carve(void* ws, int64_t K, int64_t R) {
  const size_t K256 = size_t((K + 255) / 256);
  char* p = static_cast<char*>(ws);
  XPlanes xp;
  xp.xb = reinterpret_cast<uint32_t*>(p);
  xp.scale = reinterpret_cast<float*>(p + align256(size_t(R) * K256 * 512));
  xp.q_sums = reinterpret_cast<long long*>(p + align256(size_t(R) * K256 * 512) + align256(size_t(R) * 4));
  return xp;
}

// Blocks of a persistent decode grid: one per 16-row tile while they fit in one wave of resident blocks, else one
// per resident slot (each then takes every gridDim.x-th tile).
inline int64_t persistent_grid(const DeviceInfo& device, int blocks_per_sm, int64_t tiles) {
  const int64_t slots = int64_t(blocks_per_sm) * device.sms;
  return g_decode_persistent && slots > 0 && tiles > slots ? slots : tiles;
}

// Every decode launch: `pdl` = programmatic dependent launch on cc >= 9.0 (decode3 waits in griddepcontrol.wait
// before reading the pre-pass's output, so its block setup overlaps xplanes_kernel).
template <typename... KArgs, typename... Args>
static cudaError_t launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                          const DeviceInfo& device, bool pdl, Args... args) {
  return launch_kernel(kernel, grid, block, smem, stream, pdl && device.major >= 9, args...);
}

// Resident blocks per SM of `kernel` (for persistent_grid), queried once per kernel.
template <typename Kernel>
static cudaError_t blocks_per_sm(Kernel kernel, int threads, size_t smem, int* cache) {
  if (*cache > 0) return cudaSuccess;
  int n = 0;
  const cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem);
  if (e == cudaSuccess) *cache = n > 0 ? n : 1;
  return e;
}

// Whether `kernel` with `dynamic_smem` bytes fits a block of the current device, its static shared arrays included
// (cudaFuncGetAttributes, once per kernel: *cache -1 = not asked yet). Every decode form fits on cc 8.0 and 9.0; on
// GPUs that give a block 99 KB (cc 8.6, 8.9, 12.x) the lean form with RW = 2 does not (96 KB of stages and 3.4 KB
// of arrays), and version 3 runs instead.
template <typename Kernel>
static cudaError_t fits_device(Kernel kernel, int dynamic_smem, const DeviceInfo& device, int* cache) {
  if (*cache >= 0) return cudaSuccess;
  cudaFuncAttributes attributes;
  const cudaError_t e = cudaFuncGetAttributes(&attributes, kernel);
  if (e == cudaSuccess) *cache = attributes.sharedSizeBytes + size_t(dynamic_smem) <= size_t(device.smem_optin) ? 1 : 0;
  return e;
}

template <typename T>
static int launch_xplanes(bool vec, const T* x, int64_t R, int64_t K, const XPlanes& xp, cudaStream_t stream) {
  const int smem = xplanes_smem_bytes(K);
  const dim3 grid(unsigned(R), XP_PARTS);
  if (vec)
    xplanes_kernel<T, true><<<grid, 256, smem, stream>>>(x, K, xp.xb, xp.scale, xp.q_sums);
  else
    xplanes_kernel<T, false><<<grid, 256, smem, stream>>>(x, K, xp.xb, xp.scale, xp.q_sums);
  BD_CHECK_LAUNCH();
  return BD_OK;
}

template <typename T, typename TY, int RW, int MT>
static int launch_decode3(const DeviceInfo& device, bool vec, const T* W, const T* x, const int32_t* row_tenant, int R,
                          const uint32_t* const* signs, const float* const* scales, int num_tenants, int per_row,
                          const XPlanes& xp, TY* y, int64_t M, int64_t K, cudaStream_t stream) {
  using Shape = Decode3Shape<RW, MT>;
  static bool attribute_set[2] = {false, false};  // per VEC instantiation
  auto kernel = vec ? decode3_kernel<T, TY, RW, MT, true> : decode3_kernel<T, TY, RW, MT, false>;
  cudaError_t e = set_smem_limit(kernel, Shape::SMEM_BYTES, &attribute_set[vec]);
  if (e != cudaSuccess) return record_cuda_error(e);
  const int64_t tiles = (M + Shape::BM - 1) / Shape::BM;
  e = launch(kernel, dim3(unsigned(tiles)), dim3(256), Shape::SMEM_BYTES, stream, device, true, W, x,
                               row_tenant, R, signs, scales, num_tenants, per_row, xp.xb, xp.scale, xp.q_sums, y, M, K);
  if (e != cudaSuccess) return record_cuda_error(e);
  BD_CHECK_LAUNCH();
  return BD_OK;
}

template <typename T, typename TY, int RW>
static int launch_decode3_lean(const DeviceInfo& device, const T* W, const T* x, const int32_t* row_tenant, int R,
                               const uint32_t* const* signs, const float* const* scales, int num_tenants, int per_row,
                               const XPlanes& xp, TY* y, int64_t M, int64_t K, cudaStream_t stream) {
  using Shape = LeanShape<RW>;
  static bool attribute_set[2] = {false, false};
  static int occupancy = 0, fits = -1;
  auto straight = decode3_lean_kernel<T, TY, RW, false>;
  cudaError_t e = fits_device(straight, Shape::SMEM_BYTES, device, &fits);
  if (e != cudaSuccess) return record_cuda_error(e);
  if (!fits)  // the same pre-pass output, read by version 3 (M16)
    return launch_decode3<T, TY, RW, 1>(device, true, W, x, row_tenant, R, signs, scales, num_tenants, per_row, xp, y, M, K, stream);
  e = set_smem_limit(straight, Shape::SMEM_BYTES, &attribute_set[0]);
  if (e == cudaSuccess) e = blocks_per_sm(straight, 256, Shape::SMEM_BYTES, &occupancy);
  if (e != cudaSuccess) return record_cuda_error(e);
  // Persistent blocks for up to 16 rows: measured on an H100 at 11008x4096 with 8 / 16 rows, 60.6 / 83.3 us back
  // to back against 65.1 / 87.3 with a block per tile. With 32 rows they were 1.2% (back to back) and 1.6% (one by
  // one) slower there, so RW = 4 keeps a block per tile.
  const int64_t tiles = (M + 15) / 16, grid = RW <= 2 ? persistent_grid(device, occupancy, tiles) : tiles;
  auto kernel = straight;
  if constexpr (RW <= 2) {
    if (grid < tiles) {
      kernel = decode3_lean_kernel<T, TY, RW, true>;
      e = set_smem_limit(kernel, Shape::SMEM_BYTES, &attribute_set[1]);
      if (e != cudaSuccess) return record_cuda_error(e);
    }
  }
  e = launch(kernel, dim3(unsigned(grid)), dim3(256), Shape::SMEM_BYTES, stream, device, true, W, x, row_tenant, R,
             signs, scales, num_tenants, per_row, xp.xb, xp.scale, xp.q_sums, y, M, K);
  if (e != cudaSuccess) return record_cuda_error(e);
  BD_CHECK_LAUNCH();
  return BD_OK;
}

template <typename T, typename TY>
static int launch_decode3_lean_rows(const DeviceInfo& device, const T* W, const T* x, const int32_t* row_tenant, int R,
                                    const uint32_t* const* signs, const float* const* scales, int num_tenants,
                                    int per_row, const XPlanes& xp, TY* y, int64_t M, int64_t K, cudaStream_t stream) {
  if (R <= 8) return launch_decode3_lean<T, TY, 1>(device, W, x, row_tenant, R, signs, scales, num_tenants, per_row, xp, y, M, K, stream);
  if (R <= 16) return launch_decode3_lean<T, TY, 2>(device, W, x, row_tenant, R, signs, scales, num_tenants, per_row, xp, y, M, K, stream);
  return launch_decode3_lean<T, TY, 4>(device, W, x, row_tenant, R, signs, scales, num_tenants, per_row, xp, y, M, K, stream);
}

template <typename T, typename TY, int MT>
static int launch_decode3_rows(const DeviceInfo& device, bool vec, const T* W, const T* x, const int32_t* row_tenant, int R,
                               const uint32_t* const* signs, const float* const* scales, int num_tenants, int per_row,
                               const XPlanes& xp, TY* y, int64_t M, int64_t K, cudaStream_t stream) {
  if (R <= 8) return launch_decode3<T, TY, 1, MT>(device, vec, W, x, row_tenant, R, signs, scales, num_tenants, per_row, xp, y, M, K, stream);
  if (R <= 16) return launch_decode3<T, TY, 2, MT>(device, vec, W, x, row_tenant, R, signs, scales, num_tenants, per_row, xp, y, M, K, stream);
  return launch_decode3<T, TY, 4, MT>(device, vec, W, x, row_tenant, R, signs, scales, num_tenants, per_row, xp, y, M, K, stream);
}

template <typename T, typename TY, int RW, int MT>
static int launch_decode2(bool vec, const T* W, const T* x, const int32_t* row_tenant, int R,
                          const uint32_t* const* signs, const float* const* scales, int num_tenants, int per_row,
                          TY* y, int64_t M, int64_t K, cudaStream_t stream) {
  using Shape = Decode2Shape<RW, MT>;
  static bool attribute_set[2] = {false, false};  // per VEC instantiation
  auto kernel = vec ? decode2_kernel<T, TY, RW, MT, true> : decode2_kernel<T, TY, RW, MT, false>;
  const cudaError_t e = set_smem_limit(kernel, Shape::SMEM_BYTES, &attribute_set[vec]);
  if (e != cudaSuccess) return record_cuda_error(e);
  kernel<<<dim3(unsigned((M + Shape::BM - 1) / Shape::BM)), dim3(256), Shape::SMEM_BYTES, stream>>>(
      W, x, row_tenant, R, signs, scales, num_tenants, per_row, y, M, K);
  BD_CHECK_LAUNCH();
  return BD_OK;
}

template <typename T, typename TY, int MT>
static int launch_decode2_rows(bool vec, const T* W, const T* x, const int32_t* row_tenant, int R,
                               const uint32_t* const* signs, const float* const* scales, int num_tenants, int per_row,
                               TY* y, int64_t M, int64_t K, cudaStream_t stream) {
  if (R <= 8) return launch_decode2<T, TY, 1, MT>(vec, W, x, row_tenant, R, signs, scales, num_tenants, per_row, y, M, K, stream);
  if (R <= 16) return launch_decode2<T, TY, 2, MT>(vec, W, x, row_tenant, R, signs, scales, num_tenants, per_row, y, M, K, stream);
  return launch_decode2<T, TY, 4, MT>(vec, W, x, row_tenant, R, signs, scales, num_tenants, per_row, y, M, K, stream);
}

template <typename T, typename TY, int NT>
static int launch_decode_nt(const DeviceInfo& device, bool vec, const T* W, const T* x, const int32_t* row_tenant,
                            int R, const uint32_t* const* signs, const float* const* scales, int num_tenants,
                            int per_row, TY* y, int64_t M, int64_t K, cudaStream_t stream) {
  auto kernel = vec ? decode_kernel<T, TY, NT, true> : decode_kernel<T, TY, NT, false>;
  const cudaError_t e = launch(kernel, dim3(unsigned((M + 15) / 16)), dim3(DECODE_WARPS * 32), 0, stream, device,
                               false, W, x, row_tenant, R, signs, scales, num_tenants, per_row, y, M, K);
  if (e != cudaSuccess) return record_cuda_error(e);
  BD_CHECK_LAUNCH();
  return BD_OK;
}

// R <= SPLIT_K_MAX_ROWS: 8 in the release build (NT = 1), 32 in the experiment build.
template <typename T, typename TY>
static int launch_decode_split_k(const DeviceInfo& device, bool vec, const T* W, const T* x, const int32_t* row_tenant,
                                 int R, const uint32_t* const* signs, const float* const* scales, int num_tenants,
                                 int per_row, TY* y, int64_t M, int64_t K, cudaStream_t stream) {
#if BD_EXPERIMENTS
  if (R > 16) return launch_decode_nt<T, TY, 4>(device, vec, W, x, row_tenant, R, signs, scales, num_tenants, per_row, y, M, K, stream);
  if (R > 8) return launch_decode_nt<T, TY, 2>(device, vec, W, x, row_tenant, R, signs, scales, num_tenants, per_row, y, M, K, stream);
#endif
  return launch_decode_nt<T, TY, 1>(device, vec, W, x, row_tenant, R, signs, scales, num_tenants, per_row, y, M, K, stream);
}

template <typename T, typename TY>
static int run_decode(const void* W, const void* x, const int32_t* row_tenant, int64_t R,
                      const uint32_t* const* signs, const float* const* scales, int num_tenants, int per_row,
                      void* y, int64_t M, int64_t K, void* ws, size_t ws_bytes, cudaStream_t stream) {
  const bool vec = (K % 8 == 0) && aligned16(W) && aligned16(x);
  DeviceInfo device;
  const cudaError_t device_error = device_info(&device);
  if (device_error != cudaSuccess) return record_cuda_error(device_error);
  // Versions 3 need the bit-plane workspace; the pre-pass keeps a part of a row in at most 24 KB (K <= 98304).
  const bool ws_ok = ws != nullptr && ws_bytes >= decode3_workspace(K, R) && (reinterpret_cast<uintptr_t>(ws) & 255) == 0 &&
                     K <= 98304;
  const bool lean_applies = vec && K % 256 == 0 && ws_ok;
  int variant = g_decode_variant;
  // The automatic choice, measured on an H100: up to 8 rows version 1 (one launch, no pre-pass, no workspace; the
  // lean form is 0.4-1.1 us faster at 8 rows back to back but 0.4-4 us slower timed one by one, and CudaBackend
  // waits for every product); 9-16 rows version 3; more rows version 3's lean form (where it applies). Exception:
  // with more 16-row tiles than two blocks per SM (every version here runs two per SM), the lean form's persistent
  // blocks from 5 rows up (11008x4096: at 8 / 16 rows 6.6 / 6.3 us faster than versions 1 / 3 back to back, 8.4 /
  // 4.8 us one by one; at 1 and 4 rows 2.1 / 3.0 us faster back to back but 0.5 / 1.7 us slower one by one).
  if (variant == BD_DECODE_AUTO) {
    const bool many_tiles = (M + 15) / 16 > int64_t(2) * device.sms;
    variant = R > 16 || (lean_applies && many_tiles && R > 4) ? BD_DECODE_BINARY_LEAN
              : R <= 8                                        ? BD_DECODE_SPLIT_K
                                                              : BD_DECODE_BINARY;
  }
  bool binary = variant == BD_DECODE_BINARY || variant == BD_DECODE_BINARY_M32 || variant == BD_DECODE_BINARY_LEAN;
  if (binary && !ws_ok) {
    variant = BD_DECODE_PIPELINED;
    binary = false;
  }
  const bool lean = variant == BD_DECODE_BINARY_LEAN && lean_applies;
  XPlanes xp{nullptr, nullptr, nullptr};
  if (binary) {
    xp = decode3_carve(ws, K, R);
    const int status = launch_xplanes<T>(vec, static_cast<const T*>(x), R, K, xp, stream);
    if (status != BD_OK) return status;
  }
  const int64_t rows_per_launch = variant == BD_DECODE_SPLIT_K ? SPLIT_K_MAX_ROWS : DECODE_MAX_ROWS;
  for (int64_t r0 = 0; r0 < R; r0 += rows_per_launch) {
    const int rows = int(R - r0 < rows_per_launch ? R - r0 : rows_per_launch);
    const T* xc = static_cast<const T*>(x) + r0 * K;
    TY* yc = static_cast<TY*>(y) + r0 * M;
    const int32_t* tc = row_tenant + r0;
    const T* Wc = static_cast<const T*>(W);
    const size_t K256 = size_t((K + 255) / 256);
    const XPlanes xpc = binary ? XPlanes{xp.xb + size_t(r0) * K256 * 128, xp.scale + r0, xp.q_sums + r0 * XP_PARTS} : xp;
    // Versions 2 and 3 with MT m16 tiles per block (mt: std::integral_constant<int, MT>; MT = 2, the M32 forms, in the
    // experiment build only).
    auto pipelined = [&](auto mt) {
      return launch_decode2_rows<T, TY, decltype(mt)::value>(vec, Wc, xc, tc, rows, signs, scales, num_tenants, per_row,
                                                              yc, M, K, stream);
    };
    auto binary_tiles = [&](auto mt) {
      return launch_decode3_rows<T, TY, decltype(mt)::value>(device, vec, Wc, xc, tc, rows, signs, scales, num_tenants,
                                                              per_row, xpc, yc, M, K, stream);
    };
    using OneTile = std::integral_constant<int, 1>;
    int status = BD_ERR_NOT_BUILT;
    switch (variant) {
      case BD_DECODE_SPLIT_K:
        status = launch_decode_split_k<T, TY>(device, vec, Wc, xc, tc, rows, signs, scales, num_tenants, per_row, yc, M, K, stream);
        break;
      case BD_DECODE_PIPELINED:
        status = pipelined(OneTile());
        break;
      case BD_DECODE_BINARY:
        status = binary_tiles(OneTile());
        break;
      case BD_DECODE_BINARY_LEAN:
        status = lean ? launch_decode3_lean_rows<T, TY>(device, Wc, xc, tc, rows, signs, scales, num_tenants, per_row, xpc, yc, M, K, stream)
                      : binary_tiles(OneTile());
        break;
#if BD_EXPERIMENTS
      case BD_DECODE_PIPELINED_M32:
        status = pipelined(std::integral_constant<int, 2>());
        break;
      case BD_DECODE_BINARY_M32:
        status = binary_tiles(std::integral_constant<int, 2>());
        break;
#endif
      default:  // bd_debug_set_decode_variant admits only the variants compiled in
        break;
    }
    if (status != BD_OK) return status;
  }
  return BD_OK;
}

// The entry point of one weight dtype T (y: T or F32).
template <typename T>
int decode_dtype(const DecodeArgs& a) {
  return with_y_dtype<T>(a.y_dtype, [&](auto output) {
    return run_decode<T, typename decltype(output)::type>(a.W, a.x, a.row_tenant, a.R, a.signs, a.scales,
                                                           a.num_tenants, a.per_row, a.y, a.M, a.K, a.ws, a.ws_bytes,
                                                           a.stream);
  });
}

}  // namespace bd
