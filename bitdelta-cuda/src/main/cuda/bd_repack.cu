// bd_repack.cu -- status strings and the sign layout conversion (host/file layout <-> device layout).
#include "bd_common.cuh"

#include <cstdio>
#include <cstring>

namespace bd {
static thread_local char last_cuda_error[256] = "";

int record_cuda_error(cudaError_t error) {
  std::snprintf(last_cuda_error, sizeof(last_cuda_error), "%s: %s", cudaGetErrorName(error), cudaGetErrorString(error));
  return BD_ERR_CUDA;
}

// Bit position and coordinates of element (q, e) of word (mt, kb, lane); see the header's layout description.
__device__ __forceinline__ void word_coords(int64_t mt, int64_t kb, int lane, int q, int e, int64_t& m, int64_t& k) {
  const int g = lane >> 2, t = lane & 3;
  const int s = q >> 3, j = (q >> 2) & 1, h = q & 3;
  m = 16 * mt + g + 8 * (h & 1);
  k = 64 * kb + 32 * s + 8 * t + 4 * j + 2 * (h >> 1) + e;
}

// d_packed: U8 [M, ceil(K/8)]; d_signs: U32 [M16 * K64 * 32] (every word written). One thread per device word;
// grid: ceil(M16 * K64 * 32 / 256) blocks of 256.
__global__ void repack_signs_kernel(const uint8_t* __restrict__ d_packed, uint32_t* __restrict__ d_signs, int64_t M,
                                    int64_t K) {
  const int64_t K64 = (K + 63) / 64, M16 = (M + 15) / 16;
  const int64_t word = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (word >= M16 * K64 * 32) return;
  const int lane = int(word & 31);
  const int64_t kb = (word >> 5) % K64, mt = (word >> 5) / K64;
  const int64_t row_bytes = (K + 7) / 8;
  uint32_t out = 0;
#pragma unroll 4
  for (int q = 0; q < 16; ++q) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      int64_t m, k;
      word_coords(mt, kb, lane, q, e, m, k);
      if (m < M && k < K) {
        const uint32_t bit = (d_packed[m * row_bytes + (k >> 3)] >> (k & 7)) & 1u;
        out |= bit << (e ? 31 - q : 15 - q);
      }
    }
  }
  d_signs[word] = out;
}

// d_signs: U32 [M16 * K64 * 32]; d_packed: U8 [M, ceil(K/8)] (padding bits 0). One thread per packed byte, which
// gathers its 8 bits from the device layout; grid: ceil(M * ceil(K/8) / 256) blocks of 256.
__global__ void unpack_signs_kernel(const uint32_t* __restrict__ d_signs, uint8_t* __restrict__ d_packed, int64_t M,
                                    int64_t K) {
  const int64_t row_bytes = (K + 7) / 8, K64 = (K + 63) / 64;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= M * row_bytes) return;
  const int64_t m = idx / row_bytes, b = idx % row_bytes;
  uint32_t out = 0;
  for (int i = 0; i < 8; ++i) {
    const int64_t k = 8 * b + i;
    if (k >= K) break;
    // word_coords inverted: (m, k) -> word (mt, kb, lane) and bit (q, e)
    const int64_t mt = m / 16, kb = k / 64;
    const int r = int(m % 16), c = int(k % 64);
    const int g = r & 7, hl = r >> 3;
    const int s = c / 32, cc = c % 32, t = cc / 8, j = (cc % 8) / 4, hh = (cc % 4) / 2, e = cc % 2;
    const int q = 8 * s + 4 * j + (hh * 2 + hl);
    const int lane = g * 4 + t;
    const uint32_t w = d_signs[(mt * K64 + kb) * 32 + lane];
    out |= ((w >> (e ? 31 - q : 15 - q)) & 1u) << i;
  }
  d_packed[idx] = uint8_t(out);
}

// The argument checks of bd_repack_signs and bd_unpack_signs.
static int check_sign_arguments(const uint8_t* d_packed, const uint32_t* d_signs, int64_t M, int64_t K) {
  if (!d_packed || !d_signs) return BD_ERR_NULL_POINTER;
  if (M <= 0 || K <= 0 || M >= (int64_t(1) << 31) || K >= (int64_t(1) << 31)) return BD_ERR_BAD_SHAPE;
  if (reinterpret_cast<uintptr_t>(d_signs) & 3u) return BD_ERR_MISALIGNED;
  return BD_OK;
}

// Launches kernel(args...) with one thread per item, in blocks of 256 threads.
template <typename... KArgs, typename... Args>
static int launch_per_item(void (*kernel)(KArgs...), int64_t items, cudaStream_t stream, Args... args) {
  const int threads = 256;
  const int64_t blocks = (items + threads - 1) / threads;
  if (blocks > 0x7fffffff) return BD_ERR_BAD_SHAPE;
  kernel<<<unsigned(blocks), threads, 0, stream>>>(static_cast<KArgs>(args)...);
  BD_CHECK_LAUNCH();
  return BD_OK;
}
}  // namespace bd

extern "C" {

int bd_abi_version(void) { return BD_ABI_VERSION; }

const char* bd_status_string(int status) {
  switch (status) {
    case BD_OK: return "ok";
    case BD_ERR_NULL_POINTER: return "a required pointer is NULL";
    case BD_ERR_BAD_SHAPE: return "a shape is out of range (non-positive, too large, or inconsistent)";
    case BD_ERR_BAD_DTYPE: return "unsupported dtype code or dtype combination";
    case BD_ERR_WORKSPACE: return "workspace is NULL or smaller than the *_workspace_bytes() answer";
    case BD_ERR_MISALIGNED: return "a pointer lacks the alignment this function requires";
    case BD_ERR_CUDA: return "a CUDA launch or call failed (see bd_last_cuda_error())";
    case BD_ERR_NOT_BUILT: return "this library was built without that code path (an experiment-build form)";
    default: return "unknown bitdelta status code";
  }
}

const char* bd_last_cuda_error(void) { return bd::last_cuda_error; }

size_t bd_signs_device_bytes(int64_t M, int64_t K) {
  if (M <= 0 || K <= 0) return 0;
  return size_t((M + 15) / 16) * size_t((K + 63) / 64) * 128u;
}

int bd_repack_signs(const uint8_t* d_packed, uint32_t* d_signs, int64_t M, int64_t K, cudaStream_t stream) {
  const int status = bd::check_sign_arguments(d_packed, d_signs, M, K);
  if (status != BD_OK) return status;
  const int64_t words = int64_t(bd_signs_device_bytes(M, K) / 4);
  return bd::launch_per_item(bd::repack_signs_kernel, words, stream, d_packed, d_signs, M, K);
}

int bd_unpack_signs(const uint32_t* d_signs, uint8_t* d_packed, int64_t M, int64_t K, cudaStream_t stream) {
  const int status = bd::check_sign_arguments(d_packed, d_signs, M, K);
  if (status != BD_OK) return status;
  return bd::launch_per_item(bd::unpack_signs_kernel, M * ((K + 7) / 8), stream, d_signs, d_packed, M, K);
}

}  // extern "C"
