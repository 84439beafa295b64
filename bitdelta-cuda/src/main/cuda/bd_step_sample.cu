// bd_step_sample.cu -- picking each output row's next token on the device (bitdelta_step.h): greedy argmax, and
// temperature / top-k / top-p sampling with the uniform number of org.bitdelta.spi.Sampling, so that the host reads
// only token ids.
//
// Sampling follows org.bitdelta.internal.model.Sampler step by step: candidates in descending logit order (a stable
// CUB radix sort of keys that order floats as Java's Float.compare does, ids ascending as its tie-break), the top-k
// prefix, double exp weights relative to the greedy maximum, the top-p prefix and the cumulative draw. Only the
// order of the double additions differs (block scans instead of left-to-right loops).
#include "bd_step_common.cuh"

#include <algorithm>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

namespace bd {
namespace step {

constexpr int ARGMAX_THREADS = 1024;
// 256 threads: the scans keep several doubles live per thread; at 1024 threads (64 registers) they spilled.
constexpr int SAMPLE_THREADS = 256;

struct ArgMax {
  float value;
  int index;  // INT_MAX: no candidate yet
};

// The better of two candidates: NaN never wins (it is never a candidate), equal values go to the lower index.
__device__ __forceinline__ ArgMax better(ArgMax a, ArgMax b) {
  if (a.index == INT_MAX) return b;
  if (b.index == INT_MAX) return a;
  if (b.value > a.value || (!(a.value > b.value) && b.index < a.index)) return b;
  return a;
}

// tokens[r] = Sampler.argmax(logits row r): the first index of the largest non-NaN value; 0 if logits[0] is NaN.
__global__ void __launch_bounds__(ARGMAX_THREADS) argmax_kernel(
    const float* __restrict__ logits,  // F32 [rows, vocab]
    int64_t vocab,
    int32_t* __restrict__ tokens) {    // I32 [rows]
  __shared__ ArgMax partial[ARGMAX_THREADS / 32];
  const int64_t r = blockIdx.x;
  const float* row = logits + r * vocab;
  ArgMax best{0.f, INT_MAX};
  for (int64_t v = threadIdx.x; v < vocab; v += ARGMAX_THREADS) {
    const float value = row[v];
    if (!isnan(value) && (best.index == INT_MAX || value > best.value)) best = ArgMax{value, int(v)};
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    ArgMax other{__shfl_xor_sync(0xffffffffu, best.value, offset), __shfl_xor_sync(0xffffffffu, best.index, offset)};
    best = better(best, other);
  }
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    ArgMax result = partial[0];
    for (int w = 1; w < ARGMAX_THREADS / 32; ++w) result = better(result, partial[w]);
    tokens[r] = (isnan(row[0]) || result.index == INT_MAX) ? 0 : result.index;
  }
}

// Sort keys: descending unsigned order of `key` is Java's Float.compare order, descending (NaN, +inf, ..., +0, -0, ...,
// -inf); NaN is canonicalized as Float.floatToIntBits does.
__global__ void sort_key_kernel(const float* __restrict__ logits,  // F32 [rows, vocab]
                                int64_t rows, int64_t vocab,
                                uint32_t* __restrict__ keys,       // U32 [rows * vocab]
                                int32_t* __restrict__ ids,         // I32 [rows * vocab]
                                int32_t* __restrict__ offsets) {   // I32 [rows + 1]
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i <= rows) offsets[i] = int32_t(i * vocab);  // the grid covers max(rows * vocab, rows + 1) threads
  if (i >= rows * vocab) return;
  const float value = logits[i];
  const uint32_t bits = isnan(value) ? 0x7fc00000u : __float_as_uint(value);
  keys[i] = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  ids[i] = int32_t(i % vocab);
}

// org.bitdelta.spi.Sampling.uniform: SplitMix64 of (seed, draw), its top 53 bits (Java's long arithmetic wraps as
// unsigned 64-bit arithmetic does; >>> is the unsigned shift).
__device__ __forceinline__ double uniform(int64_t seed, int64_t draw) {
  uint64_t z = uint64_t(seed) + uint64_t(draw + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z = z ^ (z >> 31);
  return double(z >> 11) * 0x1.0p-53;
}

// Sampler's weight of a candidate: exp((logit - max) / temperature), in double.
__device__ __forceinline__ double sample_weight(float logit, double max_logit, double temperature) {
  return exp((double(logit) - max_logit) / temperature);
}

// One block per row: Sampler.sample after the sort. Greedy rows (temperature 0) keep the argmax token.
__global__ void __launch_bounds__(SAMPLE_THREADS, 1) sample_kernel(
    const float* __restrict__ logits,       // F32 [rows, vocab]
    int64_t vocab,
    const int32_t* __restrict__ sorted_ids, // I32 [rows, vocab] ids in descending logit order
    const float* __restrict__ temperature,  // F32 [rows]
    const int32_t* __restrict__ top_k,      // I32 [rows]
    const float* __restrict__ top_p,        // F32 [rows]
    const int64_t* __restrict__ seed,       // I64 [rows]
    const int32_t* __restrict__ draw,       // I32 [rows]
    int32_t* __restrict__ tokens) {         // I32 [rows]: the argmax on entry
  using Scan = cub::BlockScan<double, SAMPLE_THREADS>;
  using Reduce = cub::BlockReduce<double, SAMPLE_THREADS>;
  __shared__ union {
    typename Scan::TempStorage scan;
    typename Reduce::TempStorage reduce;
  } storage;
  __shared__ double s_value;
  __shared__ int s_found;
  const int64_t r = blockIdx.x;
  const float t = temperature[r];
  if (t == 0.f) return;  // uniform over the block
  const float* row = logits + r * vocab;
  const int32_t* order = sorted_ids + r * vocab;
  const double max_logit = double(row[tokens[r]]);  // Sampler: the greedy token's logit
  const double temperature_d = double(t);
  int64_t kept = top_k[r] > 0 ? min(int64_t(top_k[r]), vocab) : vocab;
  const auto weight = [=](int64_t i) { return sample_weight(row[order[i]], max_logit, temperature_d); };

  // Sum of the first n weights (block reduction, broadcast through shared memory).
  auto sum_of = [&](int64_t n) {
    double local = 0;
    for (int64_t i = threadIdx.x; i < n; i += SAMPLE_THREADS) local += weight(i);
    const double total = Reduce(storage.reduce).Sum(local);
    if (threadIdx.x == 0) s_value = total;
    __syncthreads();
    const double result = s_value;
    __syncthreads();
    return result;
  };
  // The first index i < n whose inclusive prefix sum of the terms reaches the threshold, or -1. Top-p (by_share):
  // terms weight(i) / sum, reached when prefix >= threshold. The draw: terms weight(i), reached when threshold < prefix.
  auto first_reaching = [&](int64_t n, bool by_share, double divisor, double threshold) {
    double carry = 0;
    for (int64_t start = 0; start < n; start += SAMPLE_THREADS) {
      const int64_t i = start + threadIdx.x;
      const double value = i < n ? (by_share ? weight(i) / divisor : weight(i)) : 0.0;
      double prefix, chunk_total;
      Scan(storage.scan).InclusiveSum(value, prefix, chunk_total);
      prefix += carry;
      if (threadIdx.x == 0) s_found = INT_MAX;
      __syncthreads();
      const bool reached = by_share ? prefix >= threshold : threshold < prefix;
      if (i < n && reached) atomicMin(&s_found, int(threadIdx.x));
      __syncthreads();
      const int found = s_found;
      __syncthreads();
      if (found != INT_MAX) return start + found;
      carry += chunk_total;
    }
    return int64_t(-1);
  };

  double sum = sum_of(kept);
  const float p = top_p[r];
  if (p < 1.f) {
    const int64_t last = first_reaching(kept, true, sum, double(p));
    if (last >= 0) kept = last + 1;
    sum = sum_of(kept);
  }
  const double target = uniform(seed[r], draw[r]) * sum;
  int64_t chosen = first_reaching(kept, false, 1.0, target);
  if (chosen < 0) chosen = kept - 1;  // rounding left the target at the very top of the sum
  if (threadIdx.x == 0) tokens[r] = order[chosen];
}

inline size_t align256(size_t bytes) { return (bytes + 255) & ~size_t(255); }

struct SampleLayout {
  size_t keys_in, keys_out, ids_in, ids_out, offsets, temp, total, temp_bytes;
};

inline cudaError_t sample_layout(int64_t rows, int64_t vocab, SampleLayout* layout) {
  const size_t items = size_t(rows * vocab);
  size_t temp_bytes = 0;
  const cudaError_t e = cub::DeviceSegmentedRadixSort::SortPairsDescending(
      nullptr, temp_bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), int(items), int(rows),
      static_cast<const int32_t*>(nullptr), static_cast<const int32_t*>(nullptr));
  if (e != cudaSuccess) return e;
  layout->keys_in = 0;
  layout->keys_out = layout->keys_in + align256(4 * items);
  layout->ids_in = layout->keys_out + align256(4 * items);
  layout->ids_out = layout->ids_in + align256(4 * items);
  layout->offsets = layout->ids_out + align256(4 * items);
  layout->temp = layout->offsets + align256(4 * size_t(rows + 1));
  layout->temp_bytes = temp_bytes;
  layout->total = layout->temp + align256(temp_bytes);
  return cudaSuccess;
}

}  // namespace step
}  // namespace bd

using namespace bd::step;

extern "C" {

int bd_step_argmax(int64_t rows, const float* d_logits, int64_t vocab, int32_t* d_tokens, cudaStream_t stream) {
  if (!d_logits || !d_tokens) return refuse(BD_ERR_NULL_POINTER, "bd_step_argmax: a required pointer is NULL");
  if (rows <= 0 || rows > MAX_GRID_X || vocab <= 0 || vocab >= (int64_t(1) << 31))
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_argmax: rows %lld, vocab %lld", (long long)rows, (long long)vocab);
  argmax_kernel<<<unsigned(rows), ARGMAX_THREADS, 0, stream>>>(d_logits, vocab, d_tokens);
  BD_STEP_CHECK_LAUNCH("argmax_kernel<<<%lld, %d>>> (vocab %lld)", (long long)rows, ARGMAX_THREADS, (long long)vocab);
  return BD_OK;
}

size_t bd_step_sample_workspace_bytes(int64_t rows, int64_t vocab) {
  if (rows <= 0 || vocab <= 0 || rows * vocab >= (int64_t(1) << 31)) return 0;
  SampleLayout layout;
  if (sample_layout(rows, vocab, &layout) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return layout.total;
}

int bd_step_sample(int64_t rows, const float* d_logits, int64_t vocab, const float* d_temperature,
                   const int32_t* d_top_k, const float* d_top_p, const int64_t* d_seed, const int32_t* d_draw,
                   int32_t* d_tokens, void* d_workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (!d_logits || !d_temperature || !d_top_k || !d_top_p || !d_seed || !d_draw || !d_tokens || !d_workspace)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_sample: a required pointer is NULL");
  if (rows <= 0 || vocab <= 0 || rows * vocab >= (int64_t(1) << 31))
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_sample: rows %lld, vocab %lld (rows * vocab must stay below 2^31)",
                  (long long)rows, (long long)vocab);
  if (reinterpret_cast<uintptr_t>(d_workspace) & 255u)
    return refuse(BD_ERR_MISALIGNED, "bd_step_sample: the workspace must be 256-byte aligned");
  SampleLayout layout;
  cudaError_t e = sample_layout(rows, vocab, &layout);
  if (e != cudaSuccess) return fail(e, "bd_step_sample: sizing the radix sort of %lld x %lld", (long long)rows, (long long)vocab);
  if (workspace_bytes < layout.total)
    return refuse(BD_ERR_WORKSPACE, "bd_step_sample: workspace of %zu bytes, %zu needed for %lld rows x vocab %lld",
                  workspace_bytes, layout.total, (long long)rows, (long long)vocab);
  char* ws = static_cast<char*>(d_workspace);
  auto* keys_in = reinterpret_cast<uint32_t*>(ws + layout.keys_in);
  auto* keys_out = reinterpret_cast<uint32_t*>(ws + layout.keys_out);
  auto* ids_in = reinterpret_cast<int32_t*>(ws + layout.ids_in);
  auto* ids_out = reinterpret_cast<int32_t*>(ws + layout.ids_out);
  auto* offsets = reinterpret_cast<int32_t*>(ws + layout.offsets);

  argmax_kernel<<<unsigned(rows), ARGMAX_THREADS, 0, stream>>>(d_logits, vocab, d_tokens);
  BD_STEP_CHECK_LAUNCH("argmax_kernel<<<%lld, %d>>> (vocab %lld)", (long long)rows, ARGMAX_THREADS, (long long)vocab);
  const int64_t items = rows * vocab;
  const unsigned key_blocks = unsigned((std::max(items, rows + 1) + 255) / 256);  // also every one of the rows + 1 offsets
  sort_key_kernel<<<key_blocks, 256, 0, stream>>>(d_logits, rows, vocab, keys_in, ids_in, offsets);
  BD_STEP_CHECK_LAUNCH("sort_key_kernel<<<%u, 256>>> (rows %lld, vocab %lld)", key_blocks, (long long)rows, (long long)vocab);
  size_t temp_bytes = layout.temp_bytes;
  e = cub::DeviceSegmentedRadixSort::SortPairsDescending(ws + layout.temp, temp_bytes, keys_in, keys_out, ids_in, ids_out,
                                                         int(items), int(rows), offsets, offsets + 1, 0, 32, stream);
  if (e != cudaSuccess) return fail(e, "bd_step_sample: cub::DeviceSegmentedRadixSort::SortPairsDescending of %lld x %lld",
                                    (long long)rows, (long long)vocab);
  BD_STEP_CHECK_LAUNCH("cub::DeviceSegmentedRadixSort::SortPairsDescending (rows %lld, vocab %lld)", (long long)rows,
                       (long long)vocab);
  sample_kernel<<<unsigned(rows), SAMPLE_THREADS, 0, stream>>>(d_logits, vocab, ids_out, d_temperature, d_top_k, d_top_p,
                                                               d_seed, d_draw, d_tokens);
  BD_STEP_CHECK_LAUNCH("sample_kernel<<<%lld, %d>>> (vocab %lld)", (long long)rows, SAMPLE_THREADS, (long long)vocab);
  return BD_OK;
}

}  // extern "C"
