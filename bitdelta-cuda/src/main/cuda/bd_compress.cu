// bd_compress.cu -- GPU compression: packed signs (host/file layout) and mean |ft - base| scales,
// bit-identical to the CPU compressor's left-to-right double sums (see bitdelta_cuda.h for the argument).
//
// compress_rows_kernel: one block of 256 threads per row m. Each thread takes bytes b of the packed row (8 elements
//   each: one 16-byte load of base and of ft on the fast path, which issues the loads of 6 bytes per thread, 192
//   bytes, before using any, so a row of K <= 12288 is one round of loads), computes d = (float)ft - (float)base,
//   sets bit (d >= 0), and adds |d| to a double without branches (add_abs_fast). The additions are exact while
//   every |d| is on the 2^-40 grid and the sum stays below 2^13. Flags per row: OFFGRID (some |d| has bits below
//   2^-40), HUGE (some |d| >= 1024), NONFINITE (Inf/NaN), BIGSUM (sum >= 2^13). Without a flag the row sum equals
//   the CPU's left-to-right sum bit for bit; with one the row is marked for the serial path. The row sum, as an
//   integer of 2^-40 units, goes into the matrix total (two 64-bit atomics with carry, exact) and the last block to
//   finish finalizes:
//     - rows marked serial: recomputed by one thread each, strictly k = 0..K-1 in double (slow, rare);
//     - matrix total: exact integer when no row had a flag; if < 2^53 units the double sum is exact; otherwise the
//       float answer is taken when the whole error interval T * (1 +- (M + K + 8) * 2^-53) rounds to one float,
//       and else one thread sums the row sums in order.
#include <type_traits>

#include "bd_common.cuh"

namespace bd {

constexpr int CP_THREADS = 256, CP_UNROLL = 6;
constexpr uint32_t FLAG_OFFGRID = 1u, FLAG_HUGE = 2u, FLAG_NONFINITE = 4u, FLAG_SERIAL = 8u, FLAG_BIGSUM = 16u;

struct CompressHeader {          // at the start of the workspace (64 bytes, zeroed by bd_compress)
  unsigned long long total_lo;   // matrix total of |d| in units of 2^-40, low and high 64 bits
  unsigned long long total_hi;
  unsigned int flags;            // OR of all rows' flags
  unsigned int blocks_done;      // last-block-done counter
  unsigned int pad[10];
};
// Then: row_flags U32 [M] (padded to 16 bytes), row_sums F64 [M].

__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

// The fast path's per-element work, without branches: |d| goes into the accumulator unconditionally; `mx` keeps
// the largest |d| bit pattern (>= 2^10 is HUGE, >= Inf bits NONFINITE; such rows are flagged at the end and take
// the serial path, so what they added does not matter); `off` records a |d| that is not a multiple of 2^-40:
// y = min(|d| * 2^40, 2^23) is exact, and (y + 2^23) - 2^23 rounds y to an integer, so it differs from y exactly
// when |d| is off the grid (|d| >= 2^-17 is always on it; NaN and Inf give y = 2^23, flagged through mx).
// F16 inputs need no grid test: the difference of two F16 values (multiples of 2^-24, below 2^17), rounded to
// F32, is always a multiple of 2^-40.
template <typename T>
__device__ __forceinline__ void add_abs_fast(float d, double& acc, uint32_t& mx, bool& off) {
  const float a = fabsf(d);
  mx = max(mx, __float_as_uint(a));
  if (std::is_same<T, __nv_bfloat16>::value) {
    const float y = fminf(__fmul_rn(a, 0x1p40f), 0x1p23f);
    off |= __fsub_rn(__fadd_rn(y, 0x1p23f), 0x1p23f) != y;
  }
  acc += (double)a;
}

// Strict left-to-right double sum of |d| over one row (the CPU compressor's order).
template <typename T>
__device__ double serial_row_sum(const T* base, const T* ft, int64_t K) {
  double s = 0.0;
  for (int64_t k = 0; k < K; ++k) {
    const float d = __fsub_rn(to_f32(ft[k]), to_f32(base[k]));
    s += (double)fabsf(d);
  }
  return s;
}

template <typename T>
__device__ void finalize(const T* base, const T* ft, int64_t M, int64_t K, float* row_scales, float* matrix_scale,
                         double* row_sums_out, CompressHeader* hdr, uint32_t* row_flags, double* row_sums) {
  const uint32_t flags = __ldcg(&hdr->flags);  // L2 reads: other blocks wrote these
  if (flags != 0) {
    // Serial rows: one thread per row, warps of this block take rows in turn.
    for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
      if (__ldcg(row_flags + m) & FLAG_SERIAL) {
        const double s = serial_row_sum(base + m * K, ft + m * K, K);
        row_sums[m] = s;
        if (row_scales) row_scales[m] = (float)(s / (double)K);
        if (row_sums_out) row_sums_out[m] = s;
      }
    }
  }
  __syncthreads();
  if (threadIdx.x != 0 || matrix_scale == nullptr) return;
  const double denom = (double)M * (double)K;
  bool done = false;
  if ((flags & (FLAG_OFFGRID | FLAG_HUGE | FLAG_NONFINITE | FLAG_BIGSUM)) == 0) {
    const unsigned long long lo = __ldcg(&hdr->total_lo), hi = __ldcg(&hdr->total_hi);
    if (hi == 0 && lo < (1ull << 53)) {  // every partial sum exact: the double sum is the exact sum
      *matrix_scale = (float)(((double)lo * 0x1p-40) / denom);
      done = true;
    } else {
      const double total = ((double)hi * 0x1p64 + (double)lo) * 0x1p-40;
      const double eps = (double)(M + K + 8) * 0x1p-53;
      const float f_lo = (float)((total * (1.0 - eps)) / denom), f_hi = (float)((total * (1.0 + eps)) / denom);
      if (f_lo == f_hi) {
        *matrix_scale = f_lo;
        done = true;
      }
    }
  }
  if (!done) {  // strict left-to-right over the rows' double sums (which are now all final)
    double total = 0.0;
    for (int64_t m = 0; m < M; ++m) total += __ldcg(row_sums + m);
    *matrix_scale = (float)(total / denom);
  }
}

template <typename T, bool VEC>
__global__ void __launch_bounds__(CP_THREADS, 4) compress_rows_kernel(
    const T* __restrict__ base, const T* __restrict__ ft,  // T [M, K] each (VEC: 16-byte aligned, K % 8 == 0)
    int64_t M, int64_t K,                                 // grid: M blocks of 256 threads, no dynamic smem
    uint8_t* __restrict__ signs,                          // U8 [M, ceil(K/8)] output, host/file layout
    float* __restrict__ row_scales,                       // F32 [M] output, or NULL
    float* __restrict__ matrix_scale,                     // F32 [1] output, or NULL
    double* __restrict__ row_sums_out,                    // F64 [M] output, or NULL
    CompressHeader* __restrict__ hdr,                     // workspace: header, zeroed before the launch
    uint32_t* __restrict__ row_flags,                     // workspace: U32 [M]
    double* __restrict__ row_sums) {                      // workspace: F64 [M]
  __shared__ uint32_t s_flags[CP_THREADS / 32];
  __shared__ bool s_last;
  const int64_t m = blockIdx.x;
  const int64_t row_bytes = (K + 7) / 8;
  const T* brow = base + m * K;
  const T* frow = ft + m * K;
  double acc = 0.0;
  uint32_t flags = 0;

  // 8 elements (one sign byte) -> bits, and |d| into the accumulator.
  uint32_t mx = 0;
  bool off = false;
  auto chunk = [&](const T* bv, const T* fv, int64_t k0, int64_t b, double& a) {
    uint32_t byte = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (!VEC && k0 + i >= K) break;
      const float d = __fsub_rn(to_f32(fv[i]), to_f32(bv[i]));
      byte |= (d >= 0.f ? 1u : 0u) << i;
      add_abs_fast<T>(d, a, mx, off);
    }
    signs[m * row_bytes + b] = uint8_t(byte);
  };
  double acc2 = 0.0;  // a second accumulator: shorter DADD chains (exact sums, so the split changes nothing)
  if (VEC) {
    // Rounds of CP_UNROLL bytes per thread: every 16-byte load of the round is issued before the first use
    // (CP_UNROLL * 32 bytes in flight per thread; K = 11008 is one round).
    for (int64_t b0 = 0; b0 < row_bytes; b0 += int64_t(CP_THREADS) * CP_UNROLL) {
      uint4 bb[CP_UNROLL], ff[CP_UNROLL];
#pragma unroll
      for (int u = 0; u < CP_UNROLL; ++u) {
        const int64_t b = b0 + threadIdx.x + u * CP_THREADS;
        if (b < row_bytes) {
          bb[u] = __ldcs(reinterpret_cast<const uint4*>(brow + b * 8));
          ff[u] = __ldcs(reinterpret_cast<const uint4*>(frow + b * 8));
        } else {
          bb[u] = ff[u] = make_uint4(0, 0, 0, 0);
        }
      }
#pragma unroll
      for (int u = 0; u < CP_UNROLL; ++u) {
        const int64_t b = b0 + threadIdx.x + u * CP_THREADS;
        if (b < row_bytes)
          chunk(reinterpret_cast<const T*>(&bb[u]), reinterpret_cast<const T*>(&ff[u]), b * 8, b, (u & 1) ? acc2 : acc);
      }
    }
  } else {
    for (int64_t b = threadIdx.x; b < row_bytes; b += CP_THREADS) {
      const int64_t k0 = b * 8;
      T bv[8], fv[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const bool ok = k0 + i < K;
        bv[i] = ok ? brow[k0 + i] : T(0.f);
        fv[i] = ok ? frow[k0 + i] : T(0.f);
      }
      chunk(bv, fv, k0, b, acc);
    }
  }
  acc += acc2;
  if (mx >= 0x44800000u) flags |= mx >= 0x7f800000u ? FLAG_NONFINITE : FLAG_HUGE;
  if (off) flags |= FLAG_OFFGRID;

  // Block sum (exact while no flag is set and the sum stays below 2^13, so the order is irrelevant).
  __shared__ double s_sum[CP_THREADS / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    acc += __shfl_down_sync(0xffffffffu, acc, off);
    flags |= __shfl_down_sync(0xffffffffu, flags, off);
  }
  if (lane == 0) { s_sum[warp] = acc; s_flags[warp] = flags; }
  __syncthreads();
  if (threadIdx.x == 0) {
    double sum = 0.0;
    flags = 0;
    for (int w = 0; w < CP_THREADS / 32; ++w) { sum += s_sum[w]; flags |= s_flags[w]; }
    if (flags == 0 && !(sum < 8192.0)) flags |= FLAG_BIGSUM;
    const bool exact = flags == 0;
    unsigned long long lo = 0, hi = 0;
    if (exact) {
      row_sums[m] = sum;
      if (row_scales) row_scales[m] = (float)(sum / (double)K);
      if (row_sums_out) row_sums_out[m] = sum;
      lo = (unsigned long long)(sum * 0x1p40);  // exact: an integer below 2^53
    } else {
      flags |= FLAG_SERIAL;
    }
    row_flags[m] = flags;
    // Matrix total: exact 128-bit add through two 64-bit atomics (carry from the returned old value).
    const unsigned long long old = atomicAdd(&hdr->total_lo, lo);
    const unsigned long long carry = (old + lo < old) ? 1ull : 0ull;
    if (hi + carry) atomicAdd(&hdr->total_hi, hi + carry);
    if (flags) atomicOr(&hdr->flags, flags);
    __threadfence();
    const unsigned int done = atomicAdd(&hdr->blocks_done, 1u);
    s_last = (done == gridDim.x - 1);
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  finalize<T>(base, ft, M, K, row_scales, matrix_scale, row_sums_out, hdr, row_flags, row_sums);
}

static size_t flags_bytes(int64_t M) { return (size_t(M) * 4 + 15) / 16 * 16; }

template <typename T>
static int run_compress(const void* base, const void* ft, int64_t M, int64_t K, uint8_t* signs, float* row_scales,
                        float* matrix_scale, double* row_sums_out, void* ws, cudaStream_t stream) {
  CompressHeader* hdr = static_cast<CompressHeader*>(ws);
  uint32_t* row_flags = reinterpret_cast<uint32_t*>(static_cast<char*>(ws) + sizeof(CompressHeader));
  double* row_sums = reinterpret_cast<double*>(static_cast<char*>(ws) + sizeof(CompressHeader) + flags_bytes(M));
  cudaError_t e = cudaMemsetAsync(hdr, 0, sizeof(CompressHeader), stream);
  if (e != cudaSuccess) return record_cuda_error(e);
  const bool vec = (K % 8 == 0) && aligned16(base) && aligned16(ft);
  if (vec)
    compress_rows_kernel<T, true><<<unsigned(M), CP_THREADS, 0, stream>>>(
        static_cast<const T*>(base), static_cast<const T*>(ft), M, K, signs, row_scales, matrix_scale, row_sums_out,
        hdr, row_flags, row_sums);
  else
    compress_rows_kernel<T, false><<<unsigned(M), CP_THREADS, 0, stream>>>(
        static_cast<const T*>(base), static_cast<const T*>(ft), M, K, signs, row_scales, matrix_scale, row_sums_out,
        hdr, row_flags, row_sums);
  BD_CHECK_LAUNCH();
  return BD_OK;
}

}  // namespace bd

extern "C" {

size_t bd_compress_workspace_bytes(int64_t M, int64_t K) {
  (void)K;
  if (M <= 0) return 0;
  return sizeof(bd::CompressHeader) + bd::flags_bytes(M) + size_t(M) * sizeof(double);
}

int bd_compress(int dtype, const void* d_base, const void* d_ft, int64_t M, int64_t K, uint8_t* d_signs_packed,
                float* d_row_scales, float* d_matrix_scale, double* d_row_sums, void* d_workspace,
                size_t workspace_bytes, cudaStream_t stream) {
  if (!d_base || !d_ft || !d_signs_packed) return BD_ERR_NULL_POINTER;
  if (M <= 0 || K <= 0 || M >= (int64_t(1) << 31) || K >= (int64_t(1) << 31)) return BD_ERR_BAD_SHAPE;
  if (!d_workspace || workspace_bytes < bd_compress_workspace_bytes(M, K)) return BD_ERR_WORKSPACE;
  if (!bd::aligned16(d_workspace)) return BD_ERR_MISALIGNED;
  if (dtype == BD_DTYPE_F16)
    return bd::run_compress<__half>(d_base, d_ft, M, K, d_signs_packed, d_row_scales, d_matrix_scale, d_row_sums,
                                    d_workspace, stream);
  if (dtype == BD_DTYPE_BF16)
    return bd::run_compress<__nv_bfloat16>(d_base, d_ft, M, K, d_signs_packed, d_row_scales, d_matrix_scale,
                                           d_row_sums, d_workspace, stream);
  return BD_ERR_BAD_DTYPE;
}

}  // extern "C"
