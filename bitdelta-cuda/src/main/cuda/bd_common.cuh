// bd_common.cuh -- internal helpers shared by the kernels of libbitdelta_cuda (not part of the ABI).
#pragma once

#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cstdint>
#include <cmath>

#include "bitdelta_cuda.h"

// 1: the experiment build (bench/build.sh --harness-only): also the forms that only bd_debug_set_decode_variant or
// BD_PREFILL_KERNEL=mma_sync select. The release library is built without it.
#ifndef BD_EXPERIMENTS
#define BD_EXPERIMENTS 0
#endif

namespace bd {

// Records the CUDA error string of the last failed launch for bd_last_cuda_error() and returns BD_ERR_CUDA.
int record_cuda_error(cudaError_t error);

// What the launchers need to know of the current device, queried once per device (bd_runtime.cu). The kernels'
// shared-memory attributes still assume a single device, see bitdelta_cuda.h. smem_optin: the most shared memory
// (static + dynamic) a block may use, 99 KB on cc 8.6, 8.9 and 12.x, 163 KB on 8.0, 227 KB on 9.0.
struct DeviceInfo { int major = 0, minor = 0, sms = 0, smem_optin = 0; };
cudaError_t device_info(DeviceInfo* out);

// Raises `kernel`'s dynamic shared-memory limit to `bytes` once (`*done`: one flag per kernel, set on success;
// a benign race, the call is idempotent). For the current device only, see DeviceInfo.
template <typename Kernel>
cudaError_t set_smem_limit(Kernel kernel, int bytes, bool* done) {
  if (*done) return cudaSuccess;
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e == cudaSuccess) *done = true;
  return e;
}

// A launch through cudaLaunchKernelEx, `pdl`: with programmatic dependent launch (programmatic stream serialization:
// the kernel may start while the one before it on the stream finishes; the callers ask for it on cc >= 9.0 only).
template <typename... KArgs, typename... Args>
cudaError_t launch_kernel(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl,
                          Args... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, static_cast<KArgs>(args)...);
}

// Every launch goes through this: cudaGetLastError() right after the launch.
#define BD_CHECK_LAUNCH()                                                        \
  do {                                                                           \
    cudaError_t bd_launch_error_ = cudaGetLastError();                           \
    if (bd_launch_error_ != cudaSuccess) return bd::record_cuda_error(bd_launch_error_); \
  } while (0)

template <typename T> struct Dtype;
template <> struct Dtype<__half> {
  static constexpr int CODE = BD_DTYPE_F16;
  static constexpr uint32_t ONE_PAIR = 0x3C003C00u;   // half2(1.0, 1.0); sign bits 15 and 31 give -1.0
  __device__ static float to_float(__half v) { return __half2float(v); }
  __device__ static __half from_float(float v) { return __float2half_rn(v); }
};
template <> struct Dtype<__nv_bfloat16> {
  static constexpr int CODE = BD_DTYPE_BF16;
  static constexpr uint32_t ONE_PAIR = 0x3F803F80u;   // bf162(1.0, 1.0)
  __device__ static float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static __nv_bfloat16 from_float(float v) { return __float2bfloat16_rn(v); }
};

template <typename TY> __device__ __forceinline__ TY store_cast(float v);
template <> __device__ __forceinline__ float store_cast<float>(float v) { return v; }
template <> __device__ __forceinline__ __half store_cast<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 store_cast<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename TY> __device__ __forceinline__ float load_float(const TY* p);
template <> __device__ __forceinline__ float load_float<float>(const float* p) { return *p; }
template <> __device__ __forceinline__ float load_float<__half>(const __half* p) { return __half2float(*p); }
template <> __device__ __forceinline__ float load_float<__nv_bfloat16>(const __nv_bfloat16* p) { return __bfloat162float(*p); }

// D += A * B, m16n8k16, A row-major (4 x .b32 of two elements), B col-major (2 x .b32), F32 accumulators.
template <typename T> __device__ __forceinline__ void mma16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                                               uint32_t a3, uint32_t b0, uint32_t b1);
// The asm of both specializations, which differ only in the PTX element type ("f16" or "bf16").
#define BD_MMA16816(PTX_TYPE)                                                                                          \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PTX_TYPE "." PTX_TYPE                                        \
               ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"                                         \
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                                        \
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1))
template <> __device__ __forceinline__ void mma16816<__half>(float c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                                             uint32_t a3, uint32_t b0, uint32_t b1) {
  BD_MMA16816("f16");
}
template <> __device__ __forceinline__ void mma16816<__nv_bfloat16>(float c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                                                    uint32_t a3, uint32_t b0, uint32_t b1) {
  BD_MMA16816("bf16");
}
#undef BD_MMA16816

// Two ±1 weights as a half2/bf162 pair from a device-layout sign word: bit (15-q) -> low element, bit (31-q)
// -> high element; bit 1 = +1. One shift and one LOP3.
// One LOP3 with both constants in registers: (~s & 0x80008000) | ONE, lut = (~a & b) | c = 0xAE for
// a = 0xF0, b = 0xCC, c = 0xAA. (Written in C the compiler needs two LOP3, one immediate each.)
template <typename T> __device__ __forceinline__ uint32_t expand_pair(uint32_t word, int q) {
  uint32_t out;
  const uint32_t shifted = word << q, mask = 0x80008000u, one = Dtype<T>::ONE_PAIR;
  asm("lop3.b32 %0, %1, %2, %3, 0xAE;\n" : "=r"(out) : "r"(shifted), "r"(mask), "r"(one));
  return out;
}

// S . q of one row for m = g (part[0]) and m = g + 8 (part[1]) from the binary-MMA accumulators of its GROUPS plane
// groups (8 bit-planes each: decode version 3 has 16 planes, the decoder step's tensor-core product 24): lane t holds
// planes (group * 8 + 2t, + 1) for m = g (c0, c1) and m = g + 8 (c2, c3); q_total = sum_k q_k of the row. Sums
// 2 w_p C_p over the lane's planes, then over the row's 4 lanes (every lane of the quad ends with the sums), minus
// q_total. w_p = 2^p, and -2^p for the top plane p = 8 GROUPS - 1 (two's complement).
template <int GROUPS>
__device__ __forceinline__ void plane_sums(const int (&acc)[GROUPS][4], long long q_total, int t, long long (&part)[2]) {
  constexpr int TOP = 8 * GROUPS - 1;
  part[0] = part[1] = 0;
#pragma unroll
  for (int group = 0; group < GROUPS; ++group)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int p = group * 8 + 2 * t + e;
      const long long weight = p == TOP ? -(1ll << TOP) : (1ll << p);
#pragma unroll
      for (int h = 0; h < 2; ++h) part[h] += weight * (2ll * acc[group][2 * h + e]);
    }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    part[h] += __shfl_xor_sync(0xffffffffu, part[h], 1);
    part[h] += __shfl_xor_sync(0xffffffffu, part[h], 2);
    part[h] -= q_total;
  }
}

// 16-byte load of 8 consecutive elements p[k .. k+7] of a row of length K, zero beyond K.
// VEC: the row start is 16-byte aligned and K % 8 == 0, so the chunk is either entirely inside or outside.
template <bool VEC, typename T> __device__ __forceinline__ uint4 load8(const T* row, int64_t k, int64_t K, bool row_ok) {
  if (VEC) {
    if (row_ok && k < K) return __ldg(reinterpret_cast<const uint4*>(row + k));
    return make_uint4(0, 0, 0, 0);
  } else {
    unsigned short v[8];
    const unsigned short* r = reinterpret_cast<const unsigned short*>(row);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = (row_ok && k + i < K) ? __ldg(r + k + i) : (unsigned short)0;
    return make_uint4(v[0] | (uint32_t(v[1]) << 16), v[2] | (uint32_t(v[3]) << 16), v[4] | (uint32_t(v[5]) << 16),
                      v[6] | (uint32_t(v[7]) << 16));
  }
}

// Streaming (evict-first) variant for data read exactly once (base weights and signs in decode).
template <bool VEC, typename T> __device__ __forceinline__ uint4 load8_stream(const T* row, int64_t k, int64_t K, bool row_ok) {
  if (VEC) {
    if (row_ok && k < K) return __ldcs(reinterpret_cast<const uint4*>(row + k));
    return make_uint4(0, 0, 0, 0);
  } else {
    return load8<false, T>(row, k, K, row_ok);
  }
}

// One decode output y[r, m]: the base alone for a row without a tenant (ten < 0), base + a_t[m] * delta for a valid
// tenant, NaN for a tenant index >= num_tenants. `scale()` (a_t[m]) is called only for a valid tenant, so an invalid
// index is never used to read.
template <typename Scale>
__device__ __forceinline__ float tenant_output(float base, int ten, int num_tenants, Scale scale, float delta) {
  if (ten < 0) return base;
  if (ten >= num_tenants) return __int_as_float(0x7fc00000);
  return fmaf(scale(), delta, base);
}

// The rows and tenant of one block of a prefill over segments (runs of rows of one tenant): grid row `piece`
// (blockIdx.y, the grid's y an upper bound) takes the piece-th run of at most PIECE_ROWS rows, counting the pieces of
// the segments in order. False where `piece` lies past the last segment's pieces: the block has nothing to do.
struct SegmentPiece {
  int row0, rows;  // rows [row0, row0 + rows) of x and y
  int tenant;      // the segment's tenant
};
template <int PIECE_ROWS>
__device__ __forceinline__ bool segment_piece(const int32_t* __restrict__ seg_offsets, const int32_t* __restrict__ seg_tenant,
                                              int S, int piece, SegmentPiece& out) {
  int seg = 0, row0 = 0, rows = 0;
  for (; seg < S; ++seg) {
    const int begin = seg_offsets[seg], end = seg_offsets[seg + 1];
    const int pieces = end > begin ? (end - begin + PIECE_ROWS - 1) / PIECE_ROWS : 0;
    if (piece < pieces) {
      row0 = begin + piece * PIECE_ROWS;
      rows = min(PIECE_ROWS, end - row0);
      break;
    }
    piece -= pieces;
  }
  if (seg >= S) return false;
  out.row0 = row0;
  out.rows = rows;
  out.tenant = seg_tenant[seg];
  return true;
}

// The arguments that bd_decode and bd_prefill share, after their checks (bitdelta_cuda.h): y = x W^T (W optional in
// prefill) plus each row's tenant's delta. DecodeArgs and PrefillArgs add how rows find their tenants.
struct ProductArgs {
  int y_dtype;                   // BD_DTYPE_F32 or the weight dtype
  const void* W;                 // [M, K] in the weight dtype
  const void* x;                 // [R, K] in the weight dtype
  int64_t R;
  const uint32_t* const* signs;  // [num_tenants] -> U32 device sign layout of [M, K]
  const float* const* scales;    // [num_tenants] -> F32 [1] or [M]
  int num_tenants;
  int per_row;                   // BD_SCALE_PER_MATRIX / BD_SCALE_PER_ROW
  void* y;                       // [R, M] in y_dtype
  int64_t M, K;
  cudaStream_t stream;
};

// A tag that carries the output element type TY into a generic lambda (with_y_dtype).
template <typename TY> struct OutputType { using type = TY; };

// The entry point of one weight dtype T calls run(OutputType<TY>()) for its y dtype: T itself or F32.
template <typename T, typename Run>
int with_y_dtype(int y_dtype, Run run) {
  if (y_dtype == Dtype<T>::CODE) return run(OutputType<T>());
  if (y_dtype == BD_DTYPE_F32) return run(OutputType<float>());
  return BD_ERR_BAD_DTYPE;
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace bd
