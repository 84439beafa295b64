// bd_step_ops.cu -- the operations of one decoder step (bitdelta_step.h): embedding gather, RMSNorm, the multi-tenant
// projections, RoPE with the KV-cache write, paged causal GQA attention, SwiGLU, the output-row gather, lm_head; and
// the tensor-core path's grouped lm_head and bd_step_prepare.
//
// The exact path's kernels: simple SIMT code, F32 throughout (see PRECISION in bitdelta_step.h), correct for every
// shape: every dimension is a loop, nothing assumes a multiple of a tile. Element-wise operations reproduce the Java CPU
// decoder's operation order exactly (no FMA contraction, exp in double); dot products use FMA in a lane-strided order.
// RoPE writes keys and values in the cache's dtype (F32 on the exact path; F16/BF16 on the tensor-core path of a model
// of that dtype), attention_kernel reads any of them. Each kernel skips rows at or beyond *active (the rows a CUDA graph
// bucket pads with), so its grid may be larger than the step. Launch configurations: see bitdelta_step.h.
#include "bd_step_common.cuh"

#include <cmath>

namespace bd {
namespace step {

constexpr int ROW_THREADS = 256;      // embed, rmsnorm, gather: one block per row; rotary, swiglu: rows x blocks
constexpr int PROJECT_WARPS = 8;      // project and lm_head: one output column per warp ...
constexpr int PROJECT_ROWS = 4;       // ... for 4 rows per block
constexpr int ATTENTION_THREADS = 128;
constexpr int ATTENTION_MAX_HEAD_DIM = 4 * ATTENTION_THREADS;  // 4 output accumulators per thread

// out [rows, hidden] F32 = table_of_slot[slot][token] widened.
__global__ void __launch_bounds__(ROW_THREADS) embed_kernel(
    const int32_t* __restrict__ active,              // I32 [1]
    const int32_t* __restrict__ tokens,              // I32 [launch_rows]
    const int32_t* __restrict__ slots,               // I32 [launch_rows]
    const void* const* __restrict__ table_of_slot,   // [slots] -> dtype [vocab, hidden]
    const int32_t* __restrict__ dtype_of_slot,       // I32 [slots]
    int64_t hidden,
    float* __restrict__ out) {                       // F32 [launch_rows, hidden]
  const int64_t r = blockIdx.x;
  if (r >= *active) return;
  const int slot = slots[r];
  const void* table = table_of_slot[slot];
  const int dtype = dtype_of_slot[slot];
  const int64_t start = int64_t(tokens[r]) * hidden;
  strided_visit(threadIdx.x, blockDim.x, hidden, [&](int64_t k) { return load_any(table, dtype, start + k); },
                [&](int64_t k, float v) { out[r * hidden + k] = v; });
}

// HF LlamaRMSNorm as the CPU decoder computes it: squares in float, their sum in double.
__global__ void __launch_bounds__(ROW_THREADS) rmsnorm_kernel(
    const int32_t* __restrict__ active,              // I32 [1]
    const int32_t* __restrict__ slots,               // I32 [*]
    const int32_t* __restrict__ row_index,           // I32 [launch_rows] or NULL
    const float* const* __restrict__ weight_of_slot, // [slots] -> F32 [hidden]
    const float* __restrict__ in,                    // F32 [launch_rows, hidden]
    float* __restrict__ out,                         // F32 [launch_rows, hidden]
    int64_t hidden, float eps) {
  pdl_enter();  // launched with programmatic dependent launch (bd_step_common.cuh)
  __shared__ double partial[ROW_THREADS / 32];
  __shared__ float inverse;
  const int64_t r = blockIdx.x;
  if (r >= *active) return;  // uniform over the block: before any barrier
  const int slot = slots[row_index != nullptr ? row_index[r] : r];
  const float* weight = weight_of_slot[slot];
  const float* x = in + r * hidden;
  double sum = 0;
  strided_visit(threadIdx.x, blockDim.x, hidden, [&](int64_t k) { return x[k]; },
                [&](int64_t, float v) { sum += double(__fmul_rn(v, v)); });
  sum = warp_sum(sum);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0;
    for (int w = 0; w < ROW_THREADS / 32; ++w) total += partial[w];
    const float mean = float(total / double(hidden));
    inverse = float(1.0 / sqrt(double(__fadd_rn(mean, eps))));
  }
  __syncthreads();
  const float inv = inverse;
  strided_visit(threadIdx.x, blockDim.x, hidden, [&](int64_t k) { return __fmul_rn(weight[k], __fmul_rn(x[k], inv)); },
                [&](int64_t k, float v) { out[r * hidden + k] = v; });
}

// y[r, m] (+)= x[r] . W[m] + a[m] * (x[r] . S_slot[m]); warp w of the block: column m, rows r0 .. r0 + 3.
template <typename T>
__global__ void __launch_bounds__(PROJECT_WARPS * 32) project_kernel(
    const int32_t* __restrict__ active,                 // I32 [1]
    const int32_t* __restrict__ slots,                  // I32 [launch_rows]
    const T* __restrict__ W,                            // T [M, K]
    const uint32_t* const* __restrict__ signs_of_slot,  // [slots] -> U32 device sign layout [M, K], or NULL
    const float* const* __restrict__ scales_of_slot,    // [slots] -> F32 [M]
    const float* __restrict__ x,                        // F32 [launch_rows, K]
    float* __restrict__ y,                              // F32 [launch_rows, M]
    int64_t M, int64_t K, int accumulate) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t m = int64_t(blockIdx.x) * PROJECT_WARPS + warp;
  const int64_t r0 = int64_t(blockIdx.y) * PROJECT_ROWS;
  const int64_t R = *active;
  if (m >= M || r0 >= R) return;  // no barrier in this kernel: warps may leave independently
  const int rows = int(min(int64_t(PROJECT_ROWS), R - r0));
  const uint32_t* signs[PROJECT_ROWS];
#pragma unroll
  for (int i = 0; i < PROJECT_ROWS; ++i) signs[i] = i < rows ? signs_of_slot[slots[r0 + i]] : nullptr;
  const int64_t K64 = (K + 63) / 64;
  const T* w_row = W + m * K;
  float base[PROJECT_ROWS] = {0.f, 0.f, 0.f, 0.f};
  float delta[PROJECT_ROWS] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t k = lane; k < K; k += 32) {
    const float w = widen<T>(w_row[k]);
#pragma unroll
    for (int i = 0; i < PROJECT_ROWS; ++i) {
      if (i < rows) {
        const float xv = x[(r0 + i) * K + k];
        base[i] = fmaf(xv, w, base[i]);
        if (signs[i] != nullptr) delta[i] += sign_bit(signs[i], K64, m, k) ? xv : -xv;
      }
    }
  }
#pragma unroll
  for (int i = 0; i < PROJECT_ROWS; ++i) {
    base[i] = warp_sum(base[i]);
    delta[i] = warp_sum(delta[i]);
  }
  if (lane != 0) return;
#pragma unroll  // unrolled with a guard, so the per-row arrays stay in registers
  for (int i = 0; i < PROJECT_ROWS; ++i) {
    if (i < rows) {
      const int64_t r = r0 + i;
      float p = base[i];
      if (signs[i] != nullptr) p = __fadd_rn(p, __fmul_rn(scales_of_slot[slots[r]][m], delta[i]));
      float* target = y + r * M + m;
      *target = accumulate ? __fadd_rn(*target, p) : p;
    }
  }
}

template <typename T> __device__ __forceinline__ T to_kv(float v);
template <> __device__ __forceinline__ float to_kv<float>(float v) { return v; }
template <> __device__ __forceinline__ __half to_kv<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 to_kv<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// RoPE on q and k of one row, then its key and value into the cache (see bitdelta_step.h for the layout), rounded to
// the cache's dtype TKV. Grid (launch_rows, rotary_blocks(...)): the row's (heads + kv_heads) * head_dim / 2 rotated
// pairs, then its kv_heads * head_dim values, one per thread (one block per row left each thread a chain of 32
// dependent loads and stores: 20 us a row on an H100).
template <typename TKV>
__global__ void __launch_bounds__(ROW_THREADS) rotary_cache_kernel(
    const int32_t* __restrict__ active,       // I32 [1]
    const int32_t* __restrict__ positions,    // I32 [launch_rows]
    const int32_t* __restrict__ cache_slots,  // I32 [launch_rows]
    const float* __restrict__ cosines,        // F32 [context, head_dim / 2]
    const float* __restrict__ sines,          // F32 [context, head_dim / 2]
    float* __restrict__ qkv,                  // F32 [launch_rows, (heads + 2 kv_heads) * head_dim]
    int64_t heads, int64_t kv_heads, int64_t head_dim,
    TKV* __restrict__ key_cache,              // TKV [blocks, kv_heads, block_size, head_dim]
    TKV* __restrict__ value_cache,            // TKV [blocks, kv_heads, block_size, head_dim]
    int64_t block_size) {
  pdl_enter();  // launched with programmatic dependent launch (bd_step_common.cuh)
  const int64_t r = blockIdx.x;
  if (r >= *active) return;
  const int64_t half = head_dim / 2;
  const int64_t width = (heads + 2 * kv_heads) * head_dim;
  float* row = qkv + r * width;
  const int64_t cache_slot = cache_slots[r];
  const int64_t block = cache_slot >= 0 ? cache_slot / block_size : 0;  // one division a thread: cheap beside its loads
  const int64_t offset = cache_slot >= 0 ? cache_slot - block * block_size : 0;
  const int64_t pairs = (heads + kv_heads) * half;
  const int64_t item = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (item < pairs) {
    const int64_t head = item / half, i = item % half;
    float* h = row + head * head_dim;
    const int64_t at = int64_t(positions[r]) * half + i;
    const float first = h[i], second = h[i + half], c = cosines[at], s = sines[at];
    const float a = __fsub_rn(__fmul_rn(first, c), __fmul_rn(second, s));
    const float b = __fadd_rn(__fmul_rn(second, c), __fmul_rn(first, s));
    h[i] = a;
    h[i + half] = b;
    if (head >= heads && cache_slot >= 0) {
      TKV* key = key_cache + ((block * kv_heads + (head - heads)) * block_size + offset) * head_dim;
      key[i] = to_kv<TKV>(a);
      key[i + half] = to_kv<TKV>(b);
    }
  } else if (cache_slot >= 0 && item - pairs < kv_heads * head_dim) {
    const int64_t e = item - pairs, head = e / head_dim, d = e % head_dim;
    value_cache[((block * kv_heads + head) * block_size + offset) * head_dim + d] =
        to_kv<TKV>(row[(heads + kv_heads) * head_dim + e]);
  }
}

inline int64_t rotary_blocks(int64_t heads, int64_t kv_heads, int64_t head_dim) {
  return ((heads + kv_heads) * (head_dim / 2) + kv_heads * head_dim + ROW_THREADS - 1) / ROW_THREADS;
}

// Attention of one (row, query head): pass 1 finds the max score; pass 2, in chunks of 128 positions, turns scores into
// exp weights (shared memory), adds them up in position order (thread 0) and accumulates the weighted values per
// dimension in position order: the CPU decoder's scalar order, so results match it up to exp's last bit (with an F32
// cache; TKV = half / bf16 only where bd_step_attention_prefill cannot take the head dimension).
template <typename TKV>
__global__ void __launch_bounds__(ATTENTION_THREADS) attention_kernel(
    const int32_t* __restrict__ active,              // I32 [1]
    const int32_t* __restrict__ positions,           // I32 [launch_rows]
    const int32_t* __restrict__ sequence_of_row,     // I32 [launch_rows]
    const int32_t* __restrict__ block_tables,        // I32 [sequences, *blocks_per_sequence]
    const int32_t* __restrict__ blocks_per_sequence, // I32 [1]
    const float* __restrict__ qkv,                   // F32 [launch_rows, (heads + 2 kv_heads) * head_dim]
    const TKV* __restrict__ key_cache,               // TKV [blocks, kv_heads, block_size, head_dim]
    const TKV* __restrict__ value_cache,             // TKV [blocks, kv_heads, block_size, head_dim]
    int64_t block_size, int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t window, float scale,
    float* __restrict__ out) {                       // F32 [launch_rows, heads * head_dim]
  extern __shared__ float shared[];
  float* query = shared;                            // [head_dim]
  float* weights = shared + head_dim;               // [ATTENTION_THREADS]
  __shared__ int64_t cache_offset[ATTENTION_THREADS];
  __shared__ float partial_max[ATTENTION_THREADS / 32];
  __shared__ float s_max, s_total;
  const int64_t r = blockIdx.x, head = blockIdx.y;
  if (r >= *active) return;  // uniform over the block
  const int tid = threadIdx.x;
  const int64_t width = (heads + 2 * kv_heads) * head_dim;
  for (int64_t d = tid; d < head_dim; d += ATTENTION_THREADS) query[d] = qkv[r * width + head * head_dim + d];
  const int64_t position = positions[r];
  const int64_t first = window > 0 ? max(int64_t(0), position - window + 1) : 0;
  const int64_t count = position - first + 1;
  const int32_t* table = block_tables + int64_t(sequence_of_row[r]) * int64_t(*blocks_per_sequence);
  const int64_t kv_head = head / (heads / kv_heads);
  __syncthreads();

  // Element offset of (position, kv_head, d = 0) in either cache.
  auto offset_of = [&](int64_t p) {
    const int64_t block = table[p / block_size];
    return ((block * kv_heads + kv_head) * block_size + p % block_size) * head_dim;
  };
  auto score = [&](int64_t base) {
    float sum = 0.f;
    for (int64_t d = 0; d < head_dim; ++d) sum = __fadd_rn(sum, __fmul_rn(query[d], widen<TKV>(key_cache[base + d])));
    return __fmul_rn(sum, scale);
  };

  float local_max = -INFINITY;
  for (int64_t j = tid; j < count; j += ATTENTION_THREADS) local_max = fmaxf(local_max, score(offset_of(first + j)));
  local_max = warp_max(local_max);
  if ((tid & 31) == 0) partial_max[tid >> 5] = local_max;
  __syncthreads();
  if (tid == 0) {
    float m = partial_max[0];
    for (int w = 1; w < ATTENTION_THREADS / 32; ++w) m = fmaxf(m, partial_max[w]);
    s_max = m;
    s_total = 0.f;
  }
  __syncthreads();
  const float max_score = s_max;

  float accumulator[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t chunk = 0; chunk < count; chunk += ATTENTION_THREADS) {
    const int n = int(min(int64_t(ATTENTION_THREADS), count - chunk));
    if (tid < n) {
      const int64_t base = offset_of(first + chunk + tid);
      cache_offset[tid] = base;
      weights[tid] = float(exp(double(__fsub_rn(score(base), max_score))));
    }
    __syncthreads();
    if (tid == 0) {
      float total = s_total;
      for (int j = 0; j < n; ++j) total = __fadd_rn(total, weights[j]);
      s_total = total;
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t d = tid + int64_t(u) * ATTENTION_THREADS;
      if (d < head_dim) {
        float sum = accumulator[u];
        for (int j = 0; j < n; ++j) sum = __fadd_rn(sum, __fmul_rn(weights[j], widen<TKV>(value_cache[cache_offset[j] + d])));
        accumulator[u] = sum;
      }
    }
    __syncthreads();
  }
  const float inverse_total = __fdiv_rn(1.0f, s_total);
  float* target = out + r * heads * head_dim + head * head_dim;
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int64_t d = tid + int64_t(u) * ATTENTION_THREADS;
    if (d < head_dim) target[d] = __fmul_rn(accumulator[u], inverse_total);
  }
}

// out[r, i] = silu(gate) * up, as the CPU: g / (1 + (float) exp(-g)) * u.
__global__ void __launch_bounds__(ROW_THREADS) swiglu_kernel(
    const int32_t* __restrict__ active,  // I32 [1]
    const float* __restrict__ gate_up,   // F32 [launch_rows, 2 * intermediate]
    float* __restrict__ out,             // F32 [launch_rows, intermediate]
    int64_t intermediate) {
  pdl_enter();  // launched with programmatic dependent launch (bd_step_common.cuh)
  const int64_t r = blockIdx.x, i = int64_t(blockIdx.y) * ROW_THREADS + threadIdx.x;
  if (r >= *active || i >= intermediate) return;
  const float g = gate_up[r * 2 * intermediate + i];
  const float u = gate_up[r * 2 * intermediate + intermediate + i];
  const float e = float(exp(double(-g)));
  out[r * intermediate + i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, e)), u);
}

__global__ void __launch_bounds__(ROW_THREADS) gather_kernel(
    const int32_t* __restrict__ active,     // I32 [1] output rows
    const int32_t* __restrict__ row_index,  // I32 [launch_rows]
    const float* __restrict__ in,           // F32 [*, columns]
    float* __restrict__ out,                // F32 [launch_rows, columns]
    int64_t columns) {
  pdl_enter();  // launched with programmatic dependent launch (bd_step_common.cuh)
  const int64_t i = blockIdx.x;
  if (i >= *active) return;
  const float* source = in + int64_t(row_index[i]) * columns;
  strided_visit(threadIdx.x, blockDim.x, columns, [&](int64_t k) { return source[k]; },
                [&](int64_t k, float v) { out[i * columns + k] = v; });
}

// logits[i, v] = x[i] . head_of_slot[slot of output row i][v]; warp w: column v, output rows i0 .. i0 + 3.
__global__ void __launch_bounds__(PROJECT_WARPS * 32) lm_head_kernel(
    const int32_t* __restrict__ active,            // I32 [1] output rows
    const int32_t* __restrict__ slots,             // I32 [rows]
    const int32_t* __restrict__ row_index,         // I32 [launch_rows]
    const void* const* __restrict__ head_of_slot,  // [slots] -> dtype [vocab, hidden]
    const int32_t* __restrict__ dtype_of_slot,     // I32 [slots]
    const float* __restrict__ x,                   // F32 [launch_rows, hidden]
    float* __restrict__ logits,                    // F32 [launch_rows, vocab]
    int64_t vocab, int64_t hidden) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t v = int64_t(blockIdx.x) * PROJECT_WARPS + warp;
  const int64_t i0 = int64_t(blockIdx.y) * PROJECT_ROWS;
  const int64_t R = *active;
  if (v >= vocab || i0 >= R) return;
  const int rows = int(min(int64_t(PROJECT_ROWS), R - i0));
  const void* head[PROJECT_ROWS];
  int dtype[PROJECT_ROWS];
#pragma unroll
  for (int i = 0; i < PROJECT_ROWS; ++i) {
    const int slot = i < rows ? slots[row_index[i0 + i]] : 0;
    head[i] = head_of_slot[slot];
    dtype[i] = dtype_of_slot[slot];
  }
  float sum[PROJECT_ROWS] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t k = lane; k < hidden; k += 32) {
#pragma unroll
    for (int i = 0; i < PROJECT_ROWS; ++i) {
      if (i < rows) sum[i] = fmaf(x[(i0 + i) * hidden + k], load_any(head[i], dtype[i], v * hidden + k), sum[i]);
    }
  }
#pragma unroll
  for (int i = 0; i < PROJECT_ROWS; ++i) sum[i] = warp_sum(sum[i]);
  if (lane != 0) return;
#pragma unroll
  for (int i = 0; i < PROJECT_ROWS; ++i) {
    if (i < rows) logits[(i0 + i) * vocab + v] = sum[i];
  }
}

// Grouped lm_head (16-bit models): the output rows of one tenant slot share one read of its head. Block (vocab tile,
// group): 8 warps x 4 vocabulary rows; a warp reads 16 bytes of each of its 4 head rows per lane and step and
// multiplies them with up to 8 of the group's rows of x at a time (F32 FMA, lane-strided, then a warp tree sum).
constexpr int LMG_WARPS = 8, LMG_VOCAB_PER_WARP = 4, LMG_ROWS = 8;
constexpr int LMG_VOCAB_PER_BLOCK = LMG_WARPS * LMG_VOCAB_PER_WARP;


template <typename TH>
__device__ __forceinline__ void lm_head_group(const TH* __restrict__ head, const int32_t* __restrict__ rows, int count,
                                              const float* __restrict__ x, float* __restrict__ logits, int64_t vocab,
                                              int64_t hidden, int64_t v0, int lane) {
  for (int first = 0; first < count; first += LMG_ROWS) {
    const int n = min(LMG_ROWS, count - first);
    int64_t row[LMG_ROWS];
#pragma unroll
    for (int i = 0; i < LMG_ROWS; ++i) row[i] = i < n ? rows[first + i] : rows[first];
    float sum[LMG_VOCAB_PER_WARP][LMG_ROWS];
#pragma unroll
    for (int v = 0; v < LMG_VOCAB_PER_WARP; ++v)
#pragma unroll
      for (int i = 0; i < LMG_ROWS; ++i) sum[v][i] = 0.f;
    for (int64_t k = int64_t(lane) * 8; k < hidden; k += 256) {
      float w[LMG_VOCAB_PER_WARP][8];
#pragma unroll
      for (int v = 0; v < LMG_VOCAB_PER_WARP; ++v) {
        if (v0 + v < vocab) {
          Chunk8<TH>::load(head + (v0 + v) * hidden + k, w[v]);
        } else {
#pragma unroll
          for (int e = 0; e < 8; ++e) w[v][e] = 0.f;
        }
      }
#pragma unroll
      for (int i = 0; i < LMG_ROWS; ++i) {
        if (i >= n) break;
        float xv[8];
        Chunk8<float>::load(x + row[i] * hidden + k, xv);
#pragma unroll
        for (int v = 0; v < LMG_VOCAB_PER_WARP; ++v)
#pragma unroll
          for (int e = 0; e < 8; ++e) sum[v][i] = fmaf(xv[e], w[v][e], sum[v][i]);
      }
    }
#pragma unroll
    for (int i = 0; i < LMG_ROWS; ++i) {
      if (i >= n) break;
#pragma unroll
      for (int v = 0; v < LMG_VOCAB_PER_WARP; ++v) {
        const float total = warp_sum(sum[v][i]);
        if (lane == v && v0 + v < vocab) logits[row[i] * vocab + v0 + v] = total;
      }
    }
  }
}

__global__ void __launch_bounds__(LMG_WARPS * 32) lm_head_grouped_kernel(
    const int32_t* __restrict__ groups,            // I32 [1] groups this step
    const int32_t* __restrict__ group_slot,        // I32 [launch_groups] tenant slot of each group
    const int32_t* __restrict__ group_offsets,     // I32 [launch_groups + 1] its rows in group_rows
    const int32_t* __restrict__ group_rows,        // I32 [launch_rows] output rows, grouped by slot
    const void* const* __restrict__ head_of_slot,  // [slots] -> dtype [vocab, hidden], 16-byte aligned
    const int32_t* __restrict__ dtype_of_slot,     // I32 [slots]
    const float* __restrict__ x,                   // F32 [launch_rows, hidden], hidden % 8 == 0
    float* __restrict__ logits,                    // F32 [launch_rows, vocab]
    int64_t vocab, int64_t hidden) {
  pdl_enter();  // launched with programmatic dependent launch (bd_step_common.cuh)
  const int group = blockIdx.y;
  if (group >= *groups) return;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t v0 = int64_t(blockIdx.x) * LMG_VOCAB_PER_BLOCK + warp * LMG_VOCAB_PER_WARP;
  if (v0 >= vocab) return;  // no barrier in this kernel
  const int slot = group_slot[group];
  const int begin = group_offsets[group], count = group_offsets[group + 1] - begin;
  const void* head = head_of_slot[slot];
  switch (dtype_of_slot[slot]) {
    case BD_DTYPE_F32:
      lm_head_group(static_cast<const float*>(head), group_rows + begin, count, x, logits, vocab, hidden, v0, lane);
      break;
    case BD_DTYPE_F16:
      lm_head_group(static_cast<const __half*>(head), group_rows + begin, count, x, logits, vocab, hidden, v0, lane);
      break;
    default:
      lm_head_group(static_cast<const __nv_bfloat16*>(head), group_rows + begin, count, x, logits, vocab, hidden, v0, lane);
      break;
  }
}

inline unsigned blocks_for(int64_t n, int64_t per_block) { return unsigned((n + per_block - 1) / per_block); }

}  // namespace step
}  // namespace bd

using namespace bd::step;

extern "C" {

int bd_step_embed(const int32_t* d_active, int64_t launch_rows, const int32_t* d_tokens, const int32_t* d_slots,
                  const void* const* d_table_of_slot, const int32_t* d_dtype_of_slot, int64_t hidden, float* d_out,
                  cudaStream_t stream) {
  if (!d_active || !d_tokens || !d_slots || !d_table_of_slot || !d_dtype_of_slot || !d_out)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_embed: a required pointer is NULL");
  if (launch_rows <= 0 || launch_rows > MAX_GRID_X || hidden <= 0)
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_embed: launch_rows %lld, hidden %lld", (long long)launch_rows, (long long)hidden);
  embed_kernel<<<unsigned(launch_rows), ROW_THREADS, 0, stream>>>(d_active, d_tokens, d_slots, d_table_of_slot,
                                                                   d_dtype_of_slot, hidden, d_out);
  BD_STEP_CHECK_LAUNCH("embed_kernel<<<%lld, %d>>> (hidden %lld)", (long long)launch_rows, ROW_THREADS, (long long)hidden);
  return BD_OK;
}

int bd_step_rmsnorm(const int32_t* d_active, int64_t launch_rows, const int32_t* d_slots, const int32_t* d_row_index,
                    const float* const* d_weight_of_slot, const float* d_in, float* d_out, int64_t hidden, float eps,
                    cudaStream_t stream) {
  if (!d_active || !d_slots || !d_weight_of_slot || !d_in || !d_out)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_rmsnorm: a required pointer is NULL");
  if (launch_rows <= 0 || launch_rows > MAX_GRID_X || hidden <= 0)
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_rmsnorm: launch_rows %lld, hidden %lld", (long long)launch_rows, (long long)hidden);
  if (d_in == d_out) return refuse(BD_ERR_BAD_SHAPE, "bd_step_rmsnorm: in and out alias");
  BD_STEP_CHECK_RESULT(launch_step(rmsnorm_kernel, dim3(unsigned(launch_rows)), dim3(ROW_THREADS), 0, stream, d_active, d_slots,
                                   d_row_index, d_weight_of_slot, d_in, d_out, hidden, eps),
                       "rmsnorm_kernel<<<%lld, %d>>> (hidden %lld)", (long long)launch_rows, ROW_THREADS, (long long)hidden);
  return BD_OK;
}

int bd_step_project(const int32_t* d_active, int64_t launch_rows, const int32_t* d_slots, int w_dtype, const void* d_W,
                    const uint32_t* const* d_signs_of_slot, const float* const* d_scales_of_slot, const float* d_x,
                    float* d_y, int64_t M, int64_t K, int accumulate, cudaStream_t stream) {
  if (!d_active || !d_slots || !d_W || !d_signs_of_slot || !d_scales_of_slot || !d_x || !d_y)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_project: a required pointer is NULL");
  if (!valid_dtype(w_dtype)) return refuse(BD_ERR_BAD_DTYPE, "bd_step_project: weight dtype code %d", w_dtype);
  const int64_t grid_x = (M + PROJECT_WARPS - 1) / PROJECT_WARPS, grid_y = (launch_rows + PROJECT_ROWS - 1) / PROJECT_ROWS;
  if (launch_rows <= 0 || M <= 0 || K <= 0 || M >= (int64_t(1) << 31) || K >= (int64_t(1) << 31) || grid_x > MAX_GRID_X ||
      grid_y > MAX_GRID_YZ)
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_project: W [%lld, %lld], launch_rows %lld", (long long)M, (long long)K,
                  (long long)launch_rows);
  if (static_cast<const void*>(d_x) == static_cast<const void*>(d_y))
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_project: x and y alias (W [%lld, %lld])", (long long)M, (long long)K);
  const dim3 grid{unsigned(grid_x), unsigned(grid_y)};
  switch (w_dtype) {
    case BD_DTYPE_F32:
      project_kernel<float><<<grid, PROJECT_WARPS * 32, 0, stream>>>(d_active, d_slots, static_cast<const float*>(d_W),
          d_signs_of_slot, d_scales_of_slot, d_x, d_y, M, K, accumulate);
      break;
    case BD_DTYPE_F16:
      project_kernel<__half><<<grid, PROJECT_WARPS * 32, 0, stream>>>(d_active, d_slots, static_cast<const __half*>(d_W),
          d_signs_of_slot, d_scales_of_slot, d_x, d_y, M, K, accumulate);
      break;
    default:
      project_kernel<__nv_bfloat16><<<grid, PROJECT_WARPS * 32, 0, stream>>>(d_active, d_slots,
          static_cast<const __nv_bfloat16*>(d_W), d_signs_of_slot, d_scales_of_slot, d_x, d_y, M, K, accumulate);
      break;
  }
  BD_STEP_CHECK_LAUNCH("project_kernel<dtype %d><<<(%lld, %lld), %d>>> (W [%lld, %lld], launch_rows %lld)", w_dtype,
                       (long long)grid_x, (long long)grid_y, PROJECT_WARPS * 32, (long long)M, (long long)K,
                       (long long)launch_rows);
  return BD_OK;
}

int bd_step_rotary_cache(const int32_t* d_active, int64_t launch_rows, const int32_t* d_positions,
                         const int32_t* d_cache_slots, const float* d_cos, const float* d_sin, float* d_qkv, int64_t heads,
                         int64_t kv_heads, int64_t head_dim, int kv_dtype, void* d_key_cache, void* d_value_cache,
                         int64_t block_size, cudaStream_t stream) {
  if (!d_active || !d_positions || !d_cache_slots || !d_cos || !d_sin || !d_qkv || !d_key_cache || !d_value_cache)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_rotary_cache: a required pointer is NULL");
  if (!valid_dtype(kv_dtype)) return refuse(BD_ERR_BAD_DTYPE, "bd_step_rotary_cache: KV dtype code %d", kv_dtype);
  if (launch_rows <= 0 || launch_rows > MAX_GRID_X || heads <= 0 || kv_heads <= 0 || heads % kv_heads != 0 ||
      head_dim <= 0 || head_dim % 2 != 0 || block_size <= 0)
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_rotary_cache: launch_rows %lld, heads %lld, kv_heads %lld, head_dim %lld, block_size %lld",
                  (long long)launch_rows, (long long)heads, (long long)kv_heads, (long long)head_dim, (long long)block_size);
  const int64_t blocks = rotary_blocks(heads, kv_heads, head_dim);
  if (blocks > MAX_GRID_YZ)
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_rotary_cache: heads %lld, kv_heads %lld, head_dim %lld need %lld blocks a row (at most %lld)",
                  (long long)heads, (long long)kv_heads, (long long)head_dim, (long long)blocks, (long long)MAX_GRID_YZ);
  const dim3 grid(static_cast<unsigned>(launch_rows), static_cast<unsigned>(blocks));
  cudaError_t e;
  switch (kv_dtype) {
    case BD_DTYPE_F32:
      e = launch_step(rotary_cache_kernel<float>, grid, dim3(ROW_THREADS), 0, stream, d_active, d_positions, d_cache_slots, d_cos,
                      d_sin, d_qkv, heads, kv_heads, head_dim, static_cast<float*>(d_key_cache), static_cast<float*>(d_value_cache),
                      block_size);
      break;
    case BD_DTYPE_F16:
      e = launch_step(rotary_cache_kernel<__half>, grid, dim3(ROW_THREADS), 0, stream, d_active, d_positions, d_cache_slots, d_cos,
                      d_sin, d_qkv, heads, kv_heads, head_dim, static_cast<__half*>(d_key_cache), static_cast<__half*>(d_value_cache),
                      block_size);
      break;
    default:
      e = launch_step(rotary_cache_kernel<__nv_bfloat16>, grid, dim3(ROW_THREADS), 0, stream, d_active, d_positions, d_cache_slots,
                      d_cos, d_sin, d_qkv, heads, kv_heads, head_dim, static_cast<__nv_bfloat16*>(d_key_cache),
                      static_cast<__nv_bfloat16*>(d_value_cache), block_size);
      break;
  }
  BD_STEP_CHECK_RESULT(e, "rotary_cache_kernel<kv dtype %d><<<(%lld, %lld), %d>>> (heads %lld, kv_heads %lld, head_dim %lld)", kv_dtype,
                       (long long)launch_rows, (long long)blocks, ROW_THREADS, (long long)heads, (long long)kv_heads, (long long)head_dim);
  return BD_OK;
}

int bd_step_attention(const int32_t* d_active, int64_t launch_rows, const int32_t* d_positions,
                      const int32_t* d_sequence_of_row, const int32_t* d_block_tables,
                      const int32_t* d_blocks_per_sequence, const float* d_qkv, int kv_dtype, const void* d_key_cache,
                      const void* d_value_cache, int64_t block_size, int64_t heads, int64_t kv_heads, int64_t head_dim,
                      int64_t window, float scale, float* d_out, cudaStream_t stream) {
  if (!d_active || !d_positions || !d_sequence_of_row || !d_block_tables || !d_blocks_per_sequence || !d_qkv ||
      !d_key_cache || !d_value_cache || !d_out)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_attention: a required pointer is NULL");
  if (!valid_dtype(kv_dtype)) return refuse(BD_ERR_BAD_DTYPE, "bd_step_attention: KV dtype code %d", kv_dtype);
  if (launch_rows <= 0 || launch_rows > MAX_GRID_X || heads <= 0 || heads > MAX_GRID_YZ || kv_heads <= 0 ||
      heads % kv_heads != 0 || head_dim < 2 || head_dim > ATTENTION_MAX_HEAD_DIM || block_size <= 0 || window < 0)
    return refuse(BD_ERR_BAD_SHAPE,
                  "bd_step_attention: launch_rows %lld, heads %lld, kv_heads %lld, head_dim %lld (2 .. %d), block_size %lld, window %lld",
                  (long long)launch_rows, (long long)heads, (long long)kv_heads, (long long)head_dim, ATTENTION_MAX_HEAD_DIM,
                  (long long)block_size, (long long)window);
  const size_t shared = sizeof(float) * size_t(head_dim + ATTENTION_THREADS);
  const dim3 grid{unsigned(launch_rows), unsigned(heads)};
  switch (kv_dtype) {
    case BD_DTYPE_F32:
      attention_kernel<float><<<grid, ATTENTION_THREADS, shared, stream>>>(d_active, d_positions, d_sequence_of_row, d_block_tables,
          d_blocks_per_sequence, d_qkv, static_cast<const float*>(d_key_cache), static_cast<const float*>(d_value_cache), block_size,
          heads, kv_heads, head_dim, window, scale, d_out);
      break;
    case BD_DTYPE_F16:
      attention_kernel<__half><<<grid, ATTENTION_THREADS, shared, stream>>>(d_active, d_positions, d_sequence_of_row, d_block_tables,
          d_blocks_per_sequence, d_qkv, static_cast<const __half*>(d_key_cache), static_cast<const __half*>(d_value_cache), block_size,
          heads, kv_heads, head_dim, window, scale, d_out);
      break;
    default:
      attention_kernel<__nv_bfloat16><<<grid, ATTENTION_THREADS, shared, stream>>>(d_active, d_positions, d_sequence_of_row,
          d_block_tables, d_blocks_per_sequence, d_qkv, static_cast<const __nv_bfloat16*>(d_key_cache),
          static_cast<const __nv_bfloat16*>(d_value_cache), block_size, heads, kv_heads, head_dim, window, scale, d_out);
      break;
  }
  BD_STEP_CHECK_LAUNCH("attention_kernel<kv dtype %d><<<(%lld, %lld), %d, %zu>>> (kv_heads %lld, head_dim %lld, block_size %lld)",
                       kv_dtype, (long long)launch_rows, (long long)heads, ATTENTION_THREADS, shared, (long long)kv_heads,
                       (long long)head_dim, (long long)block_size);
  return BD_OK;
}

int bd_step_swiglu(const int32_t* d_active, int64_t launch_rows, const float* d_gate_up, float* d_out,
                   int64_t intermediate, cudaStream_t stream) {
  if (!d_active || !d_gate_up || !d_out) return refuse(BD_ERR_NULL_POINTER, "bd_step_swiglu: a required pointer is NULL");
  const int64_t grid_y = (intermediate + ROW_THREADS - 1) / ROW_THREADS;
  if (launch_rows <= 0 || launch_rows > MAX_GRID_X || intermediate <= 0 || grid_y > MAX_GRID_YZ)
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_swiglu: launch_rows %lld, intermediate %lld", (long long)launch_rows,
                  (long long)intermediate);
  BD_STEP_CHECK_RESULT(launch_step(swiglu_kernel, dim3(unsigned(launch_rows), unsigned(grid_y)), dim3(ROW_THREADS), 0, stream,
                                   d_active, d_gate_up, d_out, intermediate),
                       "swiglu_kernel<<<(%lld, %lld), %d>>> (intermediate %lld)", (long long)launch_rows, (long long)grid_y,
                       ROW_THREADS, (long long)intermediate);
  return BD_OK;
}

int bd_step_gather_rows(const int32_t* d_active, int64_t launch_rows, const int32_t* d_row_index, const float* d_in,
                        float* d_out, int64_t columns, cudaStream_t stream) {
  if (!d_active || !d_row_index || !d_in || !d_out)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_gather_rows: a required pointer is NULL");
  if (launch_rows <= 0 || launch_rows > MAX_GRID_X || columns <= 0)
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_gather_rows: launch_rows %lld, columns %lld", (long long)launch_rows,
                  (long long)columns);
  if (d_in == d_out) return refuse(BD_ERR_BAD_SHAPE, "bd_step_gather_rows: in and out alias");
  BD_STEP_CHECK_RESULT(launch_step(gather_kernel, dim3(unsigned(launch_rows)), dim3(ROW_THREADS), 0, stream, d_active, d_row_index,
                                   d_in, d_out, columns),
                       "gather_kernel<<<%lld, %d>>> (columns %lld)", (long long)launch_rows, ROW_THREADS, (long long)columns);
  return BD_OK;
}

int bd_step_lm_head(const int32_t* d_active, int64_t launch_rows, const int32_t* d_slots, const int32_t* d_row_index,
                    const void* const* d_head_of_slot, const int32_t* d_dtype_of_slot, const float* d_x,
                    float* d_logits, int64_t vocab, int64_t hidden, cudaStream_t stream) {
  if (!d_active || !d_slots || !d_row_index || !d_head_of_slot || !d_dtype_of_slot || !d_x || !d_logits)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_lm_head: a required pointer is NULL");
  const int64_t grid_x = (vocab + PROJECT_WARPS - 1) / PROJECT_WARPS, grid_y = (launch_rows + PROJECT_ROWS - 1) / PROJECT_ROWS;
  if (launch_rows <= 0 || vocab <= 0 || hidden <= 0 || grid_x > MAX_GRID_X || grid_y > MAX_GRID_YZ)
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_lm_head: vocab %lld, hidden %lld, launch_rows %lld", (long long)vocab,
                  (long long)hidden, (long long)launch_rows);
  lm_head_kernel<<<dim3(unsigned(grid_x), unsigned(grid_y)), PROJECT_WARPS * 32, 0, stream>>>(
      d_active, d_slots, d_row_index, d_head_of_slot, d_dtype_of_slot, d_x, d_logits, vocab, hidden);
  BD_STEP_CHECK_LAUNCH("lm_head_kernel<<<(%lld, %lld), %d>>> (vocab %lld, hidden %lld)", (long long)grid_x, (long long)grid_y,
                       PROJECT_WARPS * 32, (long long)vocab, (long long)hidden);
  return BD_OK;
}

int bd_step_lm_head_grouped(const int32_t* d_groups, int64_t launch_groups, const int32_t* d_group_slot,
                            const int32_t* d_group_offsets, const int32_t* d_group_rows, const void* const* d_head_of_slot,
                            const int32_t* d_dtype_of_slot, const float* d_x, float* d_logits, int64_t vocab, int64_t hidden,
                            cudaStream_t stream) {
  if (!d_groups || !d_group_slot || !d_group_offsets || !d_group_rows || !d_head_of_slot || !d_dtype_of_slot || !d_x || !d_logits)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_lm_head_grouped: a required pointer is NULL");
  const int64_t grid_x = (vocab + LMG_VOCAB_PER_BLOCK - 1) / LMG_VOCAB_PER_BLOCK;
  if (launch_groups <= 0 || launch_groups > MAX_GRID_YZ || vocab <= 0 || hidden <= 0 || hidden % 8 != 0 || grid_x > MAX_GRID_X)
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_lm_head_grouped: vocab %lld, hidden %lld (a multiple of 8), launch_groups %lld",
                  (long long)vocab, (long long)hidden, (long long)launch_groups);
  if (!bd::aligned16(d_x)) return refuse(BD_ERR_MISALIGNED, "bd_step_lm_head_grouped: x is not 16-byte aligned");
  BD_STEP_CHECK_RESULT(launch_step(lm_head_grouped_kernel, dim3(unsigned(grid_x), unsigned(launch_groups)), dim3(LMG_WARPS * 32), 0,
                                   stream, d_groups, d_group_slot, d_group_offsets, d_group_rows, d_head_of_slot, d_dtype_of_slot, d_x,
                                   d_logits, vocab, hidden),
                       "lm_head_grouped_kernel<<<(%lld, %lld), %d>>> (vocab %lld, hidden %lld)", (long long)grid_x,
                       (long long)launch_groups, LMG_WARPS * 32, (long long)vocab, (long long)hidden);
  return BD_OK;
}

int bd_step_prepare(void) {
  cudaError_t e = prepare_project_kernels();
  if (e == cudaSuccess) e = prepare_attention_kernels();
  if (e != cudaSuccess) return fail(e, "bd_step_prepare: raising the shared-memory limits of the step kernels");
  return BD_OK;
}

}  // extern "C"
