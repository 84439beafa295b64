// bd_decode.cu -- multi-tenant W1A16 decode: a few rows (one token per tenant), base product fused.
//
// Work split: one block per 16 rows of M (an m16 mma tile); its 8 warps split K into 8 contiguous ranges of
// k64 blocks; every warp covers all R (<= 32) rows of x. Per k64 block a lane loads
//   W:     rows m0+g and m0+g+8, columns k0+8t .. k0+8t+7 of both k32 halves: 4 x 16 B  (streaming, read once)
//   x:     row 8n+g of every n8 tile, same columns: 2 x 16 B per tile (L2-resident, read by every block)
//   signs: one 32-bit device-layout word per row (tenant), holding its 32 A-fragment signs (streaming)
// and issues, per k16 step, NT base mma (A = W, B = x) and one delta mma per valid row i of each n8 tile,
// A = the row's tenant's signs expanded to ±1 in registers, B = the x fragment masked to column i (lanes
// with g != i give zeros), so all 8 rows of a tile accumulate into one fragment, each in its own column.
// The 8 warps' partial sums meet in shared memory (warp by warp, deterministic), then the block writes
// y = base + a_t[m] * delta.
#include "bd_common.cuh"

namespace bd {

constexpr int DECODE_WARPS = 8;
constexpr int DECODE_MAX_ROWS = 32;  // rows per launch (NT <= 4)

template <typename T, typename TY, int NT, bool VEC>
__global__ void __launch_bounds__(DECODE_WARPS * 32) decode_kernel(
    const T* __restrict__ W,                       // [M, K]
    const T* __restrict__ x,                       // [R, K]   (R <= 8*NT rows of this launch)
    const int32_t* __restrict__ row_tenant,        // [R]
    int R,
    const uint32_t* const* __restrict__ tenant_signs,  // [num_tenants] -> U32 device layout [M, K]
    const float* const* __restrict__ tenant_scales,    // [num_tenants] -> F32 [1] or [M]
    int num_tenants, int scale_per_row,
    TY* __restrict__ y,                            // [R, M]
    int64_t M, int64_t K) {
  constexpr int ROWS = NT * 8;
  __shared__ const uint32_t* s_signs[ROWS];
  __shared__ int s_tenant[ROWS];
  __shared__ float s_acc[2][16][ROWS + 1];  // [base/delta][m in tile][row]

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t mt = blockIdx.x, m0 = mt * 16;
  const int64_t K64 = (K + 63) / 64;

  if (threadIdx.x < ROWS) {
    const int r = threadIdx.x;
    const int ten = r < R ? row_tenant[r] : -1;
    s_tenant[r] = ten;
    s_signs[r] = (ten >= 0 && ten < num_tenants) ? tenant_signs[ten] + mt * K64 * 32 : nullptr;
  }
  __syncthreads();

  float acc_base[NT][4], acc_delta[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc_base[n][i] = acc_delta[n][i] = 0.f;

  const bool w_ok0 = m0 + g < M, w_ok1 = m0 + g + 8 < M;
  const T* w_row0 = W + (w_ok0 ? (m0 + g) : 0) * K;
  const T* w_row1 = W + (w_ok1 ? (m0 + g + 8) : 0) * K;
  const T* x_row[NT];
  bool x_ok[NT];
#pragma unroll
  for (int n = 0; n < NT; ++n) {
    x_ok[n] = n * 8 + g < R;
    x_row[n] = x + (x_ok[n] ? (n * 8 + g) : 0) * K;
  }
  const int64_t kb_begin = K64 * warp / DECODE_WARPS, kb_end = K64 * (warp + 1) / DECODE_WARPS;

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

  // Reduce the 8 warps' partial sums in shared memory, warp by warp (fixed order: deterministic).
  // Accumulator fragment: c0,c1 -> (m = g, rows 2t, 2t+1), c2,c3 -> (m = g+8, rows 2t, 2t+1).
  for (int w = 0; w < DECODE_WARPS; ++w) {
    if (warp == w) {
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int mm = g + 8 * (i >> 1), col = n * 8 + 2 * t + (i & 1);
          if (w == 0) {
            s_acc[0][mm][col] = acc_base[n][i];
            s_acc[1][mm][col] = acc_delta[n][i];
          } else {
            s_acc[0][mm][col] += acc_base[n][i];
            s_acc[1][mm][col] += acc_delta[n][i];
          }
        }
    }
    __syncthreads();
  }

  // Epilogue: y[r, m] = base + a_t[m] * delta. 16 consecutive m per row r.
  for (int idx = threadIdx.x; idx < 16 * R; idx += blockDim.x) {
    const int r = idx >> 4, mm = idx & 15;
    const int64_t m = m0 + mm;
    if (m >= M) continue;
    const int ten = s_tenant[r];
    float v = s_acc[0][mm][r];
    if (ten >= 0) {
      if (ten < num_tenants) {
        const float a = tenant_scales[ten][scale_per_row ? m : 0];
        v = fmaf(a, s_acc[1][mm][r], v);
      } else {
        v = __int_as_float(0x7fc00000);  // invalid tenant index: NaN, never an out-of-bounds read
      }
    }
    y[int64_t(r) * M + m] = store_cast<TY>(v);
  }
}

template <typename T, typename TY, int NT>
static int launch_decode_nt(bool vec, const T* W, const T* x, const int32_t* row_tenant, int R,
                            const uint32_t* const* signs, const float* const* scales, int num_tenants,
                            int per_row, TY* y, int64_t M, int64_t K, cudaStream_t stream) {
  const dim3 grid(unsigned((M + 15) / 16)), block(DECODE_WARPS * 32);
  if (vec)
    decode_kernel<T, TY, NT, true><<<grid, block, 0, stream>>>(W, x, row_tenant, R, signs, scales, num_tenants,
                                                               per_row, y, M, K);
  else
    decode_kernel<T, TY, NT, false><<<grid, block, 0, stream>>>(W, x, row_tenant, R, signs, scales, num_tenants,
                                                                per_row, y, M, K);
  BD_CHECK_LAUNCH();
  return BD_OK;
}

template <typename T, typename TY>
static int run_decode(const void* W, const void* x, const int32_t* row_tenant, int64_t R,
                      const uint32_t* const* signs, const float* const* scales, int num_tenants, int per_row,
                      void* y, int64_t M, int64_t K, cudaStream_t stream) {
  const bool vec = (K % 8 == 0) && aligned16(W) && aligned16(x);
  for (int64_t r0 = 0; r0 < R; r0 += DECODE_MAX_ROWS) {
    const int rows = int(R - r0 < DECODE_MAX_ROWS ? R - r0 : DECODE_MAX_ROWS);
    const T* xc = static_cast<const T*>(x) + r0 * K;
    TY* yc = static_cast<TY*>(y) + r0 * M;
    const T* Wc = static_cast<const T*>(W);
    int status;
    if (rows <= 8)
      status = launch_decode_nt<T, TY, 1>(vec, Wc, xc, row_tenant + r0, rows, signs, scales, num_tenants, per_row, yc, M, K, stream);
    else if (rows <= 16)
      status = launch_decode_nt<T, TY, 2>(vec, Wc, xc, row_tenant + r0, rows, signs, scales, num_tenants, per_row, yc, M, K, stream);
    else
      status = launch_decode_nt<T, TY, 4>(vec, Wc, xc, row_tenant + r0, rows, signs, scales, num_tenants, per_row, yc, M, K, stream);
    if (status != BD_OK) return status;
  }
  return BD_OK;
}

}  // namespace bd

extern "C" {

size_t bd_decode_workspace_bytes(int64_t, int64_t, int64_t) { return 0; }

int bd_decode(int dtype, int y_dtype, const void* d_W, const void* d_x, const int32_t* d_row_tenant, int64_t R,
              const uint32_t* const* d_tenant_signs, const float* const* d_tenant_scales, int64_t num_tenants,
              int scale_per_row, void* d_y, int64_t M, int64_t K, void* d_workspace, size_t workspace_bytes,
              cudaStream_t stream) {
  (void)d_workspace;
  (void)workspace_bytes;
  if (!d_W || !d_x || !d_row_tenant || !d_y) return BD_ERR_NULL_POINTER;
  if (num_tenants > 0 && (!d_tenant_signs || !d_tenant_scales)) return BD_ERR_NULL_POINTER;
  if (M <= 0 || K <= 0 || R <= 0 || M >= (int64_t(1) << 31) || K >= (int64_t(1) << 31) || R > 65535 ||
      num_tenants < 0 || num_tenants > 0x7fffffff)
    return BD_ERR_BAD_SHAPE;
  if (scale_per_row != BD_SCALE_PER_MATRIX && scale_per_row != BD_SCALE_PER_ROW) return BD_ERR_BAD_SHAPE;
  const int nt = int(num_tenants);
  if (dtype == BD_DTYPE_F16) {
    if (y_dtype == BD_DTYPE_F16)
      return bd::run_decode<__half, __half>(d_W, d_x, d_row_tenant, R, d_tenant_signs, d_tenant_scales, nt, scale_per_row, d_y, M, K, stream);
    if (y_dtype == BD_DTYPE_F32)
      return bd::run_decode<__half, float>(d_W, d_x, d_row_tenant, R, d_tenant_signs, d_tenant_scales, nt, scale_per_row, d_y, M, K, stream);
  } else if (dtype == BD_DTYPE_BF16) {
    if (y_dtype == BD_DTYPE_BF16)
      return bd::run_decode<__nv_bfloat16, __nv_bfloat16>(d_W, d_x, d_row_tenant, R, d_tenant_signs, d_tenant_scales, nt, scale_per_row, d_y, M, K, stream);
    if (y_dtype == BD_DTYPE_F32)
      return bd::run_decode<__nv_bfloat16, float>(d_W, d_x, d_row_tenant, R, d_tenant_signs, d_tenant_scales, nt, scale_per_row, d_y, M, K, stream);
  }
  return BD_ERR_BAD_DTYPE;
}

}  // extern "C"
