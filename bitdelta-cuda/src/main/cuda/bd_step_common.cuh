// bd_step_common.cuh -- helpers of the decoder-step kernels (bd_step_*.cu); not part of the ABI.
#pragma once

#include "bd_common.cuh"
#include "bitdelta_step.h"

#include <cstdio>

namespace bd {
namespace step {

// An element of a weight whose dtype is known only at run time (per-slot tables may mix dtypes).
__device__ __forceinline__ float load_any(const void* base, int dtype, int64_t index) {
  switch (dtype) {
    case BD_DTYPE_F32: return __ldg(static_cast<const float*>(base) + index);
    case BD_DTYPE_F16: return __half2float(__ldg(static_cast<const __half*>(base) + index));
    default: return __bfloat162float(__ldg(static_cast<const __nv_bfloat16*>(base) + index));
  }
}

template <typename T> __device__ __forceinline__ float widen(T v);
template <> __device__ __forceinline__ float widen<float>(float v) { return v; }
template <> __device__ __forceinline__ float widen<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float widen<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

// Eight consecutive elements from 16 bytes of 16-bit values, as F32 (exact).
template <typename T16>
__device__ __forceinline__ void widen8(const uint4& raw, float (&v)[8]) {
  const T16* e = reinterpret_cast<const T16*>(&raw);
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = widen<T16>(e[i]);
}

// Eight consecutive elements at p (16-byte aligned) as F32. 16-bit rows are weights read once per step: streamed
// (evict first).
template <typename T> struct Chunk8;
template <> struct Chunk8<float> {
  __device__ static void load(const float* p, float (&v)[8]) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p)), b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
  }
};
template <typename T16> struct Chunk8Of16 {
  __device__ static void load(const T16* p, float (&v)[8]) { widen8<T16>(__ldcs(reinterpret_cast<const uint4*>(p)), v); }
};
template <> struct Chunk8<__half> : Chunk8Of16<__half> {};
template <> struct Chunk8<__nv_bfloat16> : Chunk8Of16<__nv_bfloat16> {};

// Bit of sign (m, k) in the device layout of bitdelta_cuda.h: word ((m/16) * K64 + k/64) * 32 + lane, where row
// m % 16 = g + 8 * hl and column k % 64 = 32 s + 8 t + 4 j + 2 hh + e give lane = 4 g + t and q = 8 s + 4 j + 2 hh + hl,
// element e of the half2 at bit (e ? 31 - q : 15 - q). (The inverse of word_coords in bd_repack.cu.)
__device__ __forceinline__ int sign_bit(const uint32_t* __restrict__ words, int64_t K64, int64_t m, int64_t k) {
  const int r16 = int(m & 15), c = int(k & 63);
  const int g = r16 & 7, hl = r16 >> 3;
  const int s = c >> 5, cc = c & 31, t = cc >> 3, j = (cc & 7) >> 2, hh = (cc & 3) >> 1, e = cc & 1;
  const int q = 8 * s + 4 * j + 2 * hh + hl;
  const uint32_t word = __ldg(words + ((m >> 4) * K64 + (k >> 6)) * 32 + 4 * g + t);
  return int((word >> (e ? 31 - q : 15 - q)) & 1u);
}

// visit(k, load(k)) for k = first, first + stride, ... below count, in that order, the loads of 8 of them requested
// before any is used: a plain strided loop waits for each load in turn (a row of 4096 through 256 threads: 16 loads
// one after another per thread, about 10 us).
template <typename Load, typename Visit>
__device__ __forceinline__ void strided_visit(int64_t first, int64_t stride, int64_t count, Load load, Visit visit) {
  int64_t k = first;
  for (; k + 7 * stride < count; k += 8 * stride) {
    float v[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = load(k + i * stride);
#pragma unroll
    for (int i = 0; i < 8; ++i) visit(k + i * stride, v[i]);
  }
  for (; k < count; k += stride) visit(k, load(k));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ long long warp_sum(long long v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Programmatic dependent launch (cc >= 9.0; bd_step_set_pdl turns it off): the step's kernels are launched with it,
// so that a kernel's blocks may start while the kernel before it on the stream finishes. pdl_enter() at the start of
// a kernel lets the kernel after it launch as well (its blocks wait in their own pdl_enter or griddepcontrol.wait),
// then waits until the kernel before has completed and its writes are visible; nothing a kernel before wrote is read
// before it, and every block passes it before it returns (so a kernel never completes before the one it follows).
// Both instructions do nothing in a launch without PDL.
__device__ __forceinline__ void pdl_launch_dependents() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_enter() {
  pdl_launch_dependents();
  pdl_wait();
}

// Whether launches ask for programmatic dependent launch: bd_step_set_pdl and a device of cc >= 9.0 (bd_step_project.cu).
bool pdl_enabled();

// A step kernel's launch, with programmatic dependent launch where pdl_enabled(). cudaGetLastError() is read (and so
// reset) after every launch: a failed launch leaves no error behind for the next one to report; an error an earlier
// call left unread (an asynchronous fault of a kernel before) surfaces here, named by this launch's message.
template <typename... KArgs, typename... Args>
cudaError_t launch_step(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args... args) {
  const cudaError_t e = launch_kernel(kernel, grid, block, smem, stream, pdl_enabled(), args...);
  const cudaError_t last = cudaGetLastError();
  return e != cudaSuccess ? e : last;
}

// Grid dimensions: a launch with more blocks than CUDA allows in a dimension is refused before it is made.
constexpr int64_t MAX_GRID_X = 0x7fffffff;
constexpr int64_t MAX_GRID_YZ = 65535;

inline bool valid_dtype(int dtype) { return dtype == BD_DTYPE_F32 || dtype == BD_DTYPE_F16 || dtype == BD_DTYPE_BF16; }

// Failure reporting (bd_step_runtime.cu): the message, printf-formatted with the function and its shapes, goes to
// the thread-local text of bd_step_last_error(); fail() appends the CUDA error's name and string and also records it
// for bd_last_cuda_error().
int fail(cudaError_t error, const char* format, ...) __attribute__((format(printf, 2, 3)));
int refuse(int status, const char* format, ...) __attribute__((format(printf, 2, 3)));

}  // namespace step
}  // namespace bd

// A failed launch (a launch_step result) returns BD_ERR_CUDA with a message naming the kernel and its shapes.
#define BD_STEP_CHECK_RESULT(result, ...)                                                  \
  do {                                                                                     \
    cudaError_t bd_step_error_ = (result);                                                 \
    if (bd_step_error_ != cudaSuccess) return bd::step::fail(bd_step_error_, __VA_ARGS__); \
  } while (0)

// The same after a <<<...>>> launch.
#define BD_STEP_CHECK_LAUNCH(...) BD_STEP_CHECK_RESULT(cudaGetLastError(), __VA_ARGS__)

namespace bd {
namespace step {

// Raise the dynamic shared-memory limits of the step kernels that need more than 48 KB (bd_step_prepare).
cudaError_t prepare_project_kernels();
cudaError_t prepare_attention_kernels();

}  // namespace step
}  // namespace bd
