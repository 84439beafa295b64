// bd_step_attention.cu -- attention of 16-bit models over the paged KV cache (bitdelta_step.h, "TENSOR-CORE PATH"):
// F32 arithmetic (SIMT) on keys and values stored as F32, F16 or BF16.
//
//   decode (one row per sequence): attention_decode_kernel<TKV, P, G> (head_dim up to 64 P, P = 2, 4; G = 1 where a
//     block takes one query head, else 8), one block per (row, group of query heads that share a KV head, split of
//     the positions). The block reads each key and value of its positions once for all query heads of its group;
//     positions go in chunks of 32, 8 per warp, each warp loading the keys and values of 8 of them at once (4 for
//     P = 4; a decode step's attention is bound by the bytes in flight: one load at a time per warp left it at a
//     seventh of the bandwidth) with an online softmax of its own; the warps' states merge at the end. attention_decode_wide_kernel<TKV> takes head_dim 258 .. 512 (scores by warps, softmax by a warp per
//     query head, values by threads over the dimensions). With more than one split (few rows: the grid would not fill
//     the GPU), each split writes (max, sum, unnormalized output) and attention_combine_kernel merges them.
//   prefill (chunks of consecutive rows of one sequence): attention_prefill_kernel<TKV>, flash-style: one block per
//     (tile of up to 32 consecutive rows of one sequence, query head); key and value tiles of 32 positions go through
//     shared memory once per tile of queries instead of once per query.
// Scores are F32 dot products (FMA, lane-strided then a warp tree): the CPU sums them in order, so the two differ by
// F32 rounding, as the products do.
#include "bd_step_common.cuh"

#include <cmath>

namespace bd {
namespace step {

constexpr int AD_THREADS = 128;
constexpr int AD_CHUNK = 32;        // positions per chunk (the wide kernel: one per lane in the softmax step)
constexpr int AD_MAX_GROUP = 8;     // query heads per block
constexpr int AD_MAX_SPLITS = 16;
constexpr int AD_MAX_HEAD_DIM = 512;
constexpr int AD_DIMS_PER_THREAD = AD_MAX_HEAD_DIM / AD_THREADS;  // 4 (the wide kernel)
constexpr int AD_WARPS = AD_THREADS / 32;
constexpr int AD_WARP_POSITIONS = AD_CHUNK / AD_WARPS;  // 8 positions of a chunk per warp
constexpr int AD_MAX_PAIRS = 4;                        // attention_decode_kernel: head_dim up to 64 * 4

constexpr int AP_THREADS = 128;     // 4 threads per query row
constexpr int AP_ROWS = 32;         // query rows per tile
constexpr int AP_KEYS = 32;         // positions per key/value tile
constexpr int AP_MAX_HEAD_DIM = 256;

template <typename T> __device__ __forceinline__ float kv_load(const T* p) { return widen<T>(*p); }
// Two consecutive cache elements (p even-aligned: head_dim is even, so every (position, head) row starts even).
__device__ __forceinline__ float2 kv_load2(const float* p) { return __ldg(reinterpret_cast<const float2*>(p)); }
__device__ __forceinline__ float2 kv_load2(const __half* p) { return __half22float2(*reinterpret_cast<const __half2*>(p)); }
__device__ __forceinline__ float2 kv_load2(const __nv_bfloat16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}

// Element offset of (position p, kv head, d = 0) in either cache of a layer.
__device__ __forceinline__ int64_t cache_offset(const int32_t* table, int64_t p, int64_t block_size, int64_t kv_heads,
                                                int64_t kv_head, int64_t head_dim) {
  const int64_t block = table[p / block_size];
  return ((block * kv_heads + kv_head) * block_size + p % block_size) * head_dim;
}

// Grid (launch_rows, heads / group, splits), AD_THREADS threads. Block (r, hb, split): query heads hb * group ..
// + group - 1 of row r (one KV head), chunks c = split, split + splits, ... of its positions first .. p; warp w takes
// positions 8 w .. 8 w + 7 of each chunk, lane l dimensions 2 l + 64 i and 2 l + 64 i + 1 (i < P) of them.
// Dynamic shared memory: (1 + AD_WARPS) * group * head_dim floats (the queries, the warps' accumulators for the merge).
// head_dim even (RoPE pairs its halves), at most 64 P; group at most G (G = 1: the registers hold one query head's
// state instead of eight, 96 instead of about 155 with a 16-bit cache: 5 blocks per SM instead of 3).
template <typename TKV, int P, int G>
__global__ void __launch_bounds__(AD_THREADS) attention_decode_kernel(
    const int32_t* __restrict__ active,               // I32 [1]
    const int32_t* __restrict__ positions,            // I32 [launch_rows]
    const int32_t* __restrict__ sequence_of_row,      // I32 [launch_rows]
    const int32_t* __restrict__ block_tables,         // I32 [sequences, *blocks_per_sequence]
    const int32_t* __restrict__ blocks_per_sequence,  // I32 [1]
    const float* __restrict__ qkv,                    // F32 [launch_rows, (heads + 2 kv_heads) * head_dim]
    const TKV* __restrict__ key_cache,                // TKV [blocks, kv_heads, block_size, head_dim]
    const TKV* __restrict__ value_cache,              // TKV [blocks, kv_heads, block_size, head_dim]
    int64_t block_size, int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t window, float scale, int group,
    int splits,
    float* __restrict__ out,                          // F32 [launch_rows, heads * head_dim] (splits == 1)
    float* __restrict__ partials) {                   // F32 [launch_rows, heads, splits, head_dim + 2] (splits > 1)
  pdl_enter();  // launched with programmatic dependent launch (bd_step_common.cuh)
  constexpr int B = P <= 2 ? AD_WARP_POSITIONS : AD_WARP_POSITIONS / 2;  // positions in flight per warp (registers)
  extern __shared__ float shared[];
  float* query = shared;                              // [group][head_dim]
  float* merge = shared + group * head_dim;           // [AD_WARPS][group][head_dim]
  __shared__ float warp_max_of[AD_WARPS][G], warp_sum_of[AD_WARPS][G];
  const int64_t r = blockIdx.x;
  if (r >= *active) return;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t head0 = int64_t(blockIdx.y) * group;
  const int64_t kv_head = head0 / (heads / kv_heads);
  const int64_t position = positions[r];
  const int64_t first = window > 0 ? max(int64_t(0), position - window + 1) : 0;
  const int64_t chunks = (position - first + 1 + AD_CHUNK - 1) / AD_CHUNK;
  const int split = blockIdx.z;
  if (split >= chunks) return;  // no positions for this split (the combine reads only splits < chunks)
  const int32_t* table = block_tables + int64_t(sequence_of_row[r]) * int64_t(*blocks_per_sequence);
  const int64_t width = (heads + 2 * kv_heads) * head_dim;
  for (int64_t i = tid; i < group * head_dim; i += AD_THREADS) query[i] = qkv[r * width + head0 * head_dim + i];
  __syncthreads();

  float run_max[G], run_sum[G];
  float2 acc[G][P];
#pragma unroll
  for (int hg = 0; hg < G; ++hg) {
    run_max[hg] = -INFINITY;
    run_sum[hg] = 0.f;
#pragma unroll
    for (int i = 0; i < P; ++i) acc[hg][i] = make_float2(0.f, 0.f);
  }

  const int cache_block_size = int(block_size);
  for (int64_t chunk = split; chunk < chunks; chunk += splits) {
    for (int part = 0; part < AD_WARP_POSITIONS; part += B) {
      const int64_t start = first + chunk * AD_CHUNK + warp * AD_WARP_POSITIONS + part;
      const int n = int(min(int64_t(B), position + 1 - start));
      if (n <= 0) break;  // uniform over the warp
      // Every key and value of the batch's positions requested before any is used. A full batch inside one cache
      // block (every batch but a sequence's last and one crossing a block edge): one table read, rows head_dim
      // apart, no per-position bounds. Otherwise a 32-bit division for the first position, then a walk through the
      // blocks (a 64-bit division per position cost about as much as the loads it addressed).
      float2 k[B][P], v[B][P];
      int block_index = int(start) / cache_block_size, in_block = int(start) - block_index * cache_block_size;
      if (n == B && in_block + B <= cache_block_size) {  // uniform over the warp
        const int64_t base = ((int64_t(table[block_index]) * kv_heads + kv_head) * block_size + in_block) * head_dim;
        const TKV* key_row = key_cache + base;
        const TKV* value_row = value_cache + base;
        const int row_stride = int(head_dim);
#pragma unroll
        for (int j = 0; j < B; ++j)
#pragma unroll
          for (int i = 0; i < P; ++i) {
            const int d = 2 * lane + 64 * i;
            const bool valid = d < head_dim;
            k[j][i] = valid ? kv_load2(key_row + j * row_stride + d) : make_float2(0.f, 0.f);
            v[j][i] = valid ? kv_load2(value_row + j * row_stride + d) : make_float2(0.f, 0.f);
          }
      } else {
#pragma unroll
        for (int j = 0; j < B; ++j) {
          const int64_t base = j < n ? ((int64_t(table[block_index]) * kv_heads + kv_head) * block_size + in_block) * head_dim : 0;
          if (++in_block == cache_block_size) {
            in_block = 0;
            ++block_index;
          }
#pragma unroll
          for (int i = 0; i < P; ++i) {
            const int d = 2 * lane + 64 * i;
            const bool valid = j < n && d < head_dim;
            k[j][i] = valid ? kv_load2(key_cache + base + d) : make_float2(0.f, 0.f);
            v[j][i] = valid ? kv_load2(value_cache + base + d) : make_float2(0.f, 0.f);
          }
        }
      }
#pragma unroll
      for (int hg = 0; hg < G; ++hg) {
        if (hg < group) {
          float score[B];
          float chunk_max = -INFINITY;
#pragma unroll
          for (int j = 0; j < B; ++j) {
            float dot = 0.f;
#pragma unroll
            for (int i = 0; i < P; ++i) {
              const int d = 2 * lane + 64 * i;
              if (d < head_dim) {
                const float2 q = *reinterpret_cast<const float2*>(query + hg * head_dim + d);
                dot = fmaf(q.x, k[j][i].x, dot);
                dot = fmaf(q.y, k[j][i].y, dot);
              }
            }
            score[j] = j < n ? warp_sum(dot) * scale : -INFINITY;
            chunk_max = fmaxf(chunk_max, score[j]);
          }
          const float new_max = fmaxf(run_max[hg], chunk_max);  // finite: n >= 1
          const float correction = run_max[hg] == -INFINITY ? 0.f : expf(run_max[hg] - new_max);
          float weight_sum = 0.f;
          float2 weighted[P];
#pragma unroll
          for (int i = 0; i < P; ++i) weighted[i] = make_float2(0.f, 0.f);
#pragma unroll
          for (int j = 0; j < B; ++j) {
            const float e = j < n ? expf(score[j] - new_max) : 0.f;
            weight_sum += e;
#pragma unroll
            for (int i = 0; i < P; ++i) {
              weighted[i].x = fmaf(e, v[j][i].x, weighted[i].x);
              weighted[i].y = fmaf(e, v[j][i].y, weighted[i].y);
            }
          }
          run_sum[hg] = fmaf(run_sum[hg], correction, weight_sum);
          run_max[hg] = new_max;
#pragma unroll
          for (int i = 0; i < P; ++i) {
            acc[hg][i].x = fmaf(acc[hg][i].x, correction, weighted[i].x);
            acc[hg][i].y = fmaf(acc[hg][i].y, correction, weighted[i].y);
          }
        }
      }
    }
  }

  // The warps' states (a warp without positions: max -inf, sum 0, weight 0 below) merged per output element.
#pragma unroll
  for (int hg = 0; hg < G; ++hg) {
    if (hg < group) {
      if (lane == 0) {
        warp_max_of[warp][hg] = run_max[hg];
        warp_sum_of[warp][hg] = run_sum[hg];
      }
#pragma unroll
      for (int i = 0; i < P; ++i) {
        const int d = 2 * lane + 64 * i;
        if (d < head_dim) *reinterpret_cast<float2*>(merge + (warp * group + hg) * head_dim + d) = acc[hg][i];
      }
    }
  }
  __syncthreads();
  for (int64_t e = tid; e < group * head_dim; e += AD_THREADS) {
    const int hg = int(e / head_dim);
    const int64_t d = e % head_dim;
    float block_max = -INFINITY;
#pragma unroll
    for (int w = 0; w < AD_WARPS; ++w) block_max = fmaxf(block_max, warp_max_of[w][hg]);
    float total = 0.f, value = 0.f;
#pragma unroll
    for (int w = 0; w < AD_WARPS; ++w) {
      const float weight = warp_max_of[w][hg] == -INFINITY ? 0.f : expf(warp_max_of[w][hg] - block_max);
      total = fmaf(warp_sum_of[w][hg], weight, total);
      value = fmaf(merge[(w * group + hg) * head_dim + d], weight, value);
    }
    const int64_t head = head0 + hg;
    if (splits == 1) {
      out[r * heads * head_dim + head * head_dim + d] = value / total;
    } else {
      float* partial = partials + ((r * heads + head) * splits + split) * (head_dim + 2);
      if (d == 0) {
        partial[0] = block_max;
        partial[1] = total;
      }
      partial[2 + d] = value;
    }
  }
}

// The same for head_dim 258 .. 512: grid (launch_rows, heads / group, splits), AD_THREADS threads; block (r, hb,
// split) as above. Dynamic shared memory: group * head_dim floats (the queries).
template <typename TKV>
__global__ void __launch_bounds__(AD_THREADS, 6) attention_decode_wide_kernel(
    const int32_t* __restrict__ active,               // I32 [1]
    const int32_t* __restrict__ positions,            // I32 [launch_rows]
    const int32_t* __restrict__ sequence_of_row,      // I32 [launch_rows]
    const int32_t* __restrict__ block_tables,         // I32 [sequences, *blocks_per_sequence]
    const int32_t* __restrict__ blocks_per_sequence,  // I32 [1]
    const float* __restrict__ qkv,                    // F32 [launch_rows, (heads + 2 kv_heads) * head_dim]
    const TKV* __restrict__ key_cache,                // TKV [blocks, kv_heads, block_size, head_dim]
    const TKV* __restrict__ value_cache,              // TKV [blocks, kv_heads, block_size, head_dim]
    int64_t block_size, int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t window, float scale, int group,
    int splits,
    float* __restrict__ out,                          // F32 [launch_rows, heads * head_dim] (splits == 1)
    float* __restrict__ partials) {                   // F32 [launch_rows, heads, splits, head_dim + 2] (splits > 1)
  pdl_enter();  // launched with programmatic dependent launch (bd_step_common.cuh)
  extern __shared__ float query[];                    // [group][head_dim]
  __shared__ float scores[AD_MAX_GROUP][AD_CHUNK];    // scores, then exp weights
  __shared__ int64_t offsets[AD_CHUNK];
  __shared__ float run_max[AD_MAX_GROUP], run_sum[AD_MAX_GROUP], correction[AD_MAX_GROUP];
  const int64_t r = blockIdx.x;
  if (r >= *active) return;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t head0 = int64_t(blockIdx.y) * group;
  const int64_t kv_head = head0 / (heads / kv_heads);
  const int64_t position = positions[r];
  const int64_t first = window > 0 ? max(int64_t(0), position - window + 1) : 0;
  const int64_t count = position - first + 1;
  const int64_t chunks = (count + AD_CHUNK - 1) / AD_CHUNK;
  const int split = blockIdx.z;
  if (split >= chunks) return;  // no positions for this split (the combine reads only splits < chunks)
  const int32_t* table = block_tables + int64_t(sequence_of_row[r]) * int64_t(*blocks_per_sequence);
  const int64_t width = (heads + 2 * kv_heads) * head_dim;
  for (int64_t i = tid; i < group * head_dim; i += AD_THREADS) query[i] = qkv[r * width + head0 * head_dim + i];
  if (tid < AD_MAX_GROUP) {
    run_max[tid] = -INFINITY;
    run_sum[tid] = 0.f;
  }
  float acc[AD_MAX_GROUP][AD_DIMS_PER_THREAD];
#pragma unroll
  for (int hg = 0; hg < AD_MAX_GROUP; ++hg)
#pragma unroll
    for (int u = 0; u < AD_DIMS_PER_THREAD; ++u) acc[hg][u] = 0.f;
  __syncthreads();

  for (int64_t chunk = split; chunk < chunks; chunk += splits) {
    const int64_t start = first + chunk * AD_CHUNK;
    const int n = int(min(int64_t(AD_CHUNK), position + 1 - start));
    // Scores: warp w takes positions w, w + 4, ...; lanes stride over the dimensions, a tree sum per query head.
    for (int j = warp; j < n; j += AD_THREADS / 32) {
      const int64_t base = cache_offset(table, start + j, block_size, kv_heads, kv_head, head_dim);
      if (lane == 0) offsets[j] = base;
      float dot[AD_MAX_GROUP];
#pragma unroll
      for (int hg = 0; hg < AD_MAX_GROUP; ++hg) dot[hg] = 0.f;
      for (int d = 2 * lane; d < int(head_dim); d += 64) {  // pairs: head_dim is even
        const float2 k = kv_load2(key_cache + base + d);
        const float* q = query + d;
#pragma unroll
        for (int hg = 0; hg < AD_MAX_GROUP; ++hg) {
          if (hg < group) {
            dot[hg] = fmaf(q[0], k.x, dot[hg]);
            dot[hg] = fmaf(q[1], k.y, dot[hg]);
          }
          q += head_dim;
        }
      }
#pragma unroll
      for (int hg = 0; hg < AD_MAX_GROUP; ++hg) {
        if (hg < group) {
          const float sum = warp_sum(dot[hg]);
          if (lane == 0) scores[hg][j] = sum * scale;
        }
      }
    }
    __syncthreads();
    // Online softmax, one warp per query head (lane j: position j of the chunk).
    for (int hg = warp; hg < group; hg += AD_THREADS / 32) {
      const float s = lane < n ? scores[hg][lane] : -INFINITY;
      const float chunk_max = warp_max(s);
      const float old_max = run_max[hg];
      const float new_max = fmaxf(old_max, chunk_max);
      const float e = lane < n && new_max != -INFINITY ? expf(s - new_max) : 0.f;
      const float chunk_sum = warp_sum(e);
      scores[hg][lane] = e;
      if (lane == 0) {
        const float c = old_max == -INFINITY ? 0.f : expf(old_max - new_max);
        correction[hg] = c;
        run_sum[hg] = run_sum[hg] * c + chunk_sum;
        run_max[hg] = new_max;
      }
    }
    __syncthreads();
    // Weighted values: thread tid owns dimensions tid, tid + 128, ... of every query head of the group.
#pragma unroll
    for (int u = 0; u < AD_DIMS_PER_THREAD; ++u) {
      const int64_t d = tid + int64_t(u) * AD_THREADS;
      if (d >= head_dim) break;
      float v_sum[AD_MAX_GROUP];
#pragma unroll
      for (int hg = 0; hg < AD_MAX_GROUP; ++hg) v_sum[hg] = 0.f;
      for (int j = 0; j < n; ++j) {
        const float v = kv_load(value_cache + offsets[j] + d);
#pragma unroll
        for (int hg = 0; hg < AD_MAX_GROUP; ++hg)
          if (hg < group) v_sum[hg] = fmaf(scores[hg][j], v, v_sum[hg]);
      }
#pragma unroll
      for (int hg = 0; hg < AD_MAX_GROUP; ++hg)
        if (hg < group) acc[hg][u] = fmaf(acc[hg][u], correction[hg], v_sum[hg]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int hg = 0; hg < AD_MAX_GROUP; ++hg) {
    if (hg >= group) break;
    const int64_t head = head0 + hg;
    if (splits == 1) {
      const float inverse = 1.f / run_sum[hg];
#pragma unroll
      for (int u = 0; u < AD_DIMS_PER_THREAD; ++u) {
        const int64_t d = tid + int64_t(u) * AD_THREADS;
        if (d < head_dim) out[r * heads * head_dim + head * head_dim + d] = acc[hg][u] * inverse;
      }
    } else {
      float* partial = partials + ((r * heads + head) * splits + split) * (head_dim + 2);
      if (tid == 0) {
        partial[0] = run_max[hg];
        partial[1] = run_sum[hg];
      }
#pragma unroll
      for (int u = 0; u < AD_DIMS_PER_THREAD; ++u) {
        const int64_t d = tid + int64_t(u) * AD_THREADS;
        if (d < head_dim) partial[2 + d] = acc[hg][u];
      }
    }
  }
}

// Grid (launch_rows, heads), AD_THREADS threads: merges the splits that had positions (split < chunks).
__global__ void __launch_bounds__(AD_THREADS) attention_combine_kernel(
    const int32_t* __restrict__ active, const int32_t* __restrict__ positions, int64_t heads, int64_t head_dim,
    int64_t window, int splits,
    const float* __restrict__ partials,  // F32 [launch_rows, heads, splits, head_dim + 2]
    float* __restrict__ out) {           // F32 [launch_rows, heads * head_dim]
  pdl_enter();  // launched with programmatic dependent launch (bd_step_common.cuh)
  const int64_t r = blockIdx.x, head = blockIdx.y;
  if (r >= *active) return;
  const int64_t position = positions[r];
  const int64_t first = window > 0 ? max(int64_t(0), position - window + 1) : 0;
  const int64_t chunks = (position - first + 1 + AD_CHUNK - 1) / AD_CHUNK;
  const int used = int(min(int64_t(splits), chunks));
  const float* partial = partials + (r * heads + head) * splits * (head_dim + 2);
  float max_all = -INFINITY;
  for (int s = 0; s < used; ++s) max_all = fmaxf(max_all, partial[s * (head_dim + 2)]);
  float total = 0.f;
  for (int s = 0; s < used; ++s) total += partial[s * (head_dim + 2) + 1] * expf(partial[s * (head_dim + 2)] - max_all);
  const float inverse = 1.f / total;
  for (int64_t d = threadIdx.x; d < head_dim; d += AD_THREADS) {
    float sum = 0.f;
    for (int s = 0; s < used; ++s) sum = fmaf(partial[s * (head_dim + 2) + 2 + d], expf(partial[s * (head_dim + 2)] - max_all), sum);
    out[r * heads * head_dim + head * head_dim + d] = sum * inverse;
  }
}

// Grid (tiles, heads), AP_THREADS threads: tile i is rows tile_first[i] .. + tile_rows[i] - 1 (at most 32, one
// sequence). Thread (row qi = tid / 4, part = tid % 4): scores of keys 8 part .. 8 part + 7 of each key tile, and output
// dimensions part, part + 4, ... Dynamic shared memory: ap_smem_bytes(head_dim).
template <typename TKV>
__global__ void __launch_bounds__(AP_THREADS) attention_prefill_kernel(
    const int32_t* __restrict__ tile_first, const int32_t* __restrict__ tile_rows,  // I32 [tiles]
    const int32_t* __restrict__ positions, const int32_t* __restrict__ sequence_of_row, const int32_t* __restrict__ block_tables,
    const int32_t* __restrict__ blocks_per_sequence, const float* __restrict__ qkv, const TKV* __restrict__ key_cache,
    const TKV* __restrict__ value_cache, int64_t block_size, int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t window,
    float scale, float* __restrict__ out) {
  extern __shared__ float shared[];
  float* q_tile = shared;                                   // [AP_ROWS][head_dim + 1]
  float* k_tile = q_tile + AP_ROWS * (head_dim + 1);        // [AP_KEYS][head_dim + 1]
  float* v_tile = k_tile + AP_KEYS * (head_dim + 1);        // [AP_KEYS][head_dim]
  float* p_tile = v_tile + AP_KEYS * head_dim;              // [AP_ROWS][AP_KEYS + 1]
  __shared__ int64_t key_offsets[AP_KEYS];
  __shared__ int64_t s_low, s_high;
  const int tid = threadIdx.x, qi = tid >> 2, part = tid & 3;
  const int64_t row0 = tile_first[blockIdx.x];
  const int rows = tile_rows[blockIdx.x];
  const int64_t head = blockIdx.y, kv_head = head / (heads / kv_heads);
  const int64_t width = (heads + 2 * kv_heads) * head_dim;
  const int32_t* table = block_tables + int64_t(sequence_of_row[row0]) * int64_t(*blocks_per_sequence);
  for (int64_t i = tid; i < AP_ROWS * head_dim; i += AP_THREADS) {
    const int64_t row = i / head_dim, d = i % head_dim;
    q_tile[row * (head_dim + 1) + d] = row < rows ? qkv[(row0 + row) * width + head * head_dim + d] : 0.f;
  }
  if (tid == 0) {
    int64_t low = INT64_MAX, high = -1;
    for (int row = 0; row < rows; ++row) {
      const int64_t p = positions[row0 + row];
      low = min(low, window > 0 ? max(int64_t(0), p - window + 1) : int64_t(0));
      high = max(high, p);
    }
    s_low = low;
    s_high = high;
  }
  const bool active_row = qi < rows;
  const int64_t my_position = active_row ? positions[row0 + qi] : -1;
  const int64_t my_first = window > 0 ? max(int64_t(0), my_position - window + 1) : 0;
  const int dims = int((head_dim - part + 3) / 4);  // this thread's output dimensions: part + 4 i, i < dims
  float acc[AP_MAX_HEAD_DIM / 4];
#pragma unroll
  for (int i = 0; i < AP_MAX_HEAD_DIM / 4; ++i) acc[i] = 0.f;
  float run_max = -INFINITY, run_sum = 0.f;
  __syncthreads();
  const int64_t low = s_low, high = s_high;

  for (int64_t start = low; start <= high; start += AP_KEYS) {
    const int n = int(min(int64_t(AP_KEYS), high + 1 - start));
    if (tid < n) key_offsets[tid] = cache_offset(table, start + tid, block_size, kv_heads, kv_head, head_dim);
    __syncthreads();
    for (int64_t i = tid; i < AP_KEYS * head_dim; i += AP_THREADS) {
      const int j = int(i / head_dim);
      const int64_t d = i % head_dim;
      float k = 0.f, v = 0.f;
      if (j < n) {
        k = kv_load(key_cache + key_offsets[j] + d);
        v = kv_load(value_cache + key_offsets[j] + d);
      }
      k_tile[j * (head_dim + 1) + d] = k;
      v_tile[j * head_dim + d] = v;
    }
    __syncthreads();
    float s[8];
#pragma unroll
    for (int jj = 0; jj < 8; ++jj) s[jj] = 0.f;
    for (int64_t d = 0; d < head_dim; ++d) {
      const float qv = q_tile[qi * (head_dim + 1) + d];
#pragma unroll
      for (int jj = 0; jj < 8; ++jj) s[jj] = fmaf(qv, k_tile[(part * 8 + jj) * (head_dim + 1) + d], s[jj]);
    }
    float tile_max = -INFINITY;
#pragma unroll
    for (int jj = 0; jj < 8; ++jj) {
      const int64_t p = start + part * 8 + jj;
      const bool valid = active_row && part * 8 + jj < n && p <= my_position && p >= my_first;
      s[jj] = valid ? s[jj] * scale : -INFINITY;
      tile_max = fmaxf(tile_max, s[jj]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    const float new_max = fmaxf(run_max, tile_max);
    float tile_sum = 0.f;
#pragma unroll
    for (int jj = 0; jj < 8; ++jj) {
      const float e = new_max == -INFINITY || s[jj] == -INFINITY ? 0.f : expf(s[jj] - new_max);
      p_tile[qi * (AP_KEYS + 1) + part * 8 + jj] = e;
      tile_sum += e;
    }
    tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 1);
    tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, 2);
    const float c = run_max == -INFINITY ? 0.f : expf(run_max - new_max);
    run_sum = run_sum * c + tile_sum;
    run_max = new_max;
    __syncwarp();  // the row's four threads (one warp) wrote its probabilities
#pragma unroll
    for (int i = 0; i < AP_MAX_HEAD_DIM / 4; ++i) {
      if (i >= dims) break;
      const int64_t d = part + 4 * int64_t(i);
      float sum = 0.f;
      for (int j = 0; j < n; ++j) sum = fmaf(p_tile[qi * (AP_KEYS + 1) + j], v_tile[j * head_dim + d], sum);
      acc[i] = fmaf(acc[i], c, sum);
    }
    __syncthreads();
  }
  if (!active_row) return;
  const float inverse = 1.f / run_sum;
  float* target = out + (row0 + qi) * heads * head_dim + head * head_dim;
#pragma unroll
  for (int i = 0; i < AP_MAX_HEAD_DIM / 4; ++i) {
    if (i >= dims) break;
    target[part + 4 * i] = acc[i] * inverse;
  }
}

inline size_t ap_smem_bytes(int64_t head_dim) {
  return sizeof(float) * size_t(AP_ROWS * (head_dim + 1) + AP_KEYS * (head_dim + 1) + AP_KEYS * head_dim + AP_ROWS * (AP_KEYS + 1));
}

// Query heads per decode block: the largest divisor of heads / kv_heads up to AD_MAX_GROUP.
inline int decode_group(int64_t heads, int64_t kv_heads) {
  const int64_t ratio = heads / kv_heads;
  for (int g = AD_MAX_GROUP; g > 1; --g)
    if (ratio % g == 0) return g;
  return 1;
}

// Splits of the positions: enough blocks for two per SM, at most AD_MAX_SPLITS and one per chunk of the longest span.
inline int decode_splits(int64_t launch_rows, int64_t blocks_per_row, int64_t max_positions, int sms) {
  const int64_t base = launch_rows * blocks_per_row;
  const int64_t wanted = (2 * int64_t(sms) + base - 1) / base;
  const int64_t chunks = (max_positions + AD_CHUNK - 1) / AD_CHUNK;
  return int(max(int64_t(1), min(min(wanted, chunks), int64_t(AD_MAX_SPLITS))));
}

// The decode kernel launch_attention_decode takes (for messages).
inline const char* decode_kernel_form(int64_t head_dim, int group) {
  if (head_dim > 64 * AD_MAX_PAIRS) return "attention_decode_wide_kernel";
  if (head_dim <= 128) return group == 1 ? "attention_decode_kernel<P 2, G 1>" : "attention_decode_kernel<P 2, G 8>";
  return group == 1 ? "attention_decode_kernel<P 4, G 1>" : "attention_decode_kernel<P 4, G 8>";
}

template <typename TKV>
static cudaError_t launch_attention_decode(const int32_t* active, int64_t launch_rows, const int32_t* positions,
                                           const int32_t* sequence_of_row, const int32_t* block_tables,
                                           const int32_t* blocks_per_sequence, const float* qkv, const void* keys,
                                           const void* values, int64_t block_size, int64_t heads, int64_t kv_heads,
                                           int64_t head_dim, int64_t window, float scale, int group, int splits, float* out,
                                           float* partials, cudaStream_t stream) {
  const dim3 grid(unsigned(launch_rows), unsigned(heads / group), unsigned(splits));
  const TKV* key_cache = static_cast<const TKV*>(keys);
  const TKV* value_cache = static_cast<const TKV*>(values);
  const size_t smem = sizeof(float) * size_t(group * head_dim) * (1 + AD_WARPS);
  // (P = 1 for head_dim <= 64 spilled registers; P = 2 leaves the second pair's lanes idle.)
#define BD_ATTENTION_DECODE(P, G)                                                                                      \
  launch_step(attention_decode_kernel<TKV, P, G>, grid, dim3(AD_THREADS), smem, stream, active, positions, sequence_of_row,   \
              block_tables, blocks_per_sequence, qkv, key_cache, value_cache, block_size, heads, kv_heads, head_dim, window,  \
              scale, group, splits, out, partials)
  cudaError_t e;
  if (head_dim <= 128 && group == 1)
    e = BD_ATTENTION_DECODE(2, 1);
  else if (head_dim <= 128)
    e = BD_ATTENTION_DECODE(2, AD_MAX_GROUP);
  else if (head_dim <= 64 * AD_MAX_PAIRS && group == 1)
    e = BD_ATTENTION_DECODE(AD_MAX_PAIRS, 1);
  else if (head_dim <= 64 * AD_MAX_PAIRS)
    e = BD_ATTENTION_DECODE(AD_MAX_PAIRS, AD_MAX_GROUP);
  else
    e = launch_step(attention_decode_wide_kernel<TKV>, grid, dim3(AD_THREADS), sizeof(float) * size_t(group * head_dim), stream,
                    active, positions, sequence_of_row, block_tables, blocks_per_sequence, qkv, key_cache, value_cache, block_size,
                    heads, kv_heads, head_dim, window, scale, group, splits, out, partials);
#undef BD_ATTENTION_DECODE
  if (e != cudaSuccess || splits == 1) return e;
  return launch_step(attention_combine_kernel, dim3(unsigned(launch_rows), unsigned(heads)), dim3(AD_THREADS), 0, stream, active,
                     positions, heads, head_dim, window, splits, static_cast<const float*>(partials), out);
}

template <typename TKV>
static cudaError_t launch_attention_prefill(int64_t tiles, const int32_t* tile_first, const int32_t* tile_rows,
                                            const int32_t* positions, const int32_t* sequence_of_row,
                                            const int32_t* block_tables, const int32_t* blocks_per_sequence,
                                            const float* qkv, const void* keys, const void* values, int64_t block_size,
                                            int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t window, float scale,
                                            float* out, cudaStream_t stream) {
  attention_prefill_kernel<TKV><<<dim3(unsigned(tiles), unsigned(heads)), AP_THREADS, ap_smem_bytes(head_dim), stream>>>(
      tile_first, tile_rows, positions, sequence_of_row, block_tables, blocks_per_sequence, qkv, static_cast<const TKV*>(keys),
      static_cast<const TKV*>(values), block_size, heads, kv_heads, head_dim, window, scale, out);
  return cudaGetLastError();
}

// The most dynamic shared memory the flash kernel is given: what AP_MAX_HEAD_DIM needs, or less on devices that give a
// block less (1 KB is left for its static arrays). bd_step_attention_prefill takes the head dimensions that fit it.
inline int ap_smem_limit(const DeviceInfo& device) {
  return int(min(int64_t(ap_smem_bytes(AP_MAX_HEAD_DIM)), int64_t(device.smem_optin) - 1024));
}

cudaError_t prepare_attention_kernels() {
  DeviceInfo device;
  cudaError_t e = device_info(&device);
  if (e != cudaSuccess) return e;
  const int bytes = ap_smem_limit(device);
  e = cudaFuncSetAttribute(attention_prefill_kernel<float>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e == cudaSuccess) e = cudaFuncSetAttribute(attention_prefill_kernel<__half>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e == cudaSuccess) e = cudaFuncSetAttribute(attention_prefill_kernel<__nv_bfloat16>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  return e;
}

}  // namespace step
}  // namespace bd

using namespace bd::step;

extern "C" {

size_t bd_step_attention_workspace_bytes(int64_t launch_rows, int64_t heads, int64_t head_dim) {
  if (launch_rows <= 0 || heads <= 0 || head_dim <= 0) return 0;
  return sizeof(float) * size_t(launch_rows) * size_t(heads) * AD_MAX_SPLITS * size_t(head_dim + 2);
}

int bd_step_attention_decode(const int32_t* d_active, int64_t launch_rows, const int32_t* d_positions,
                             const int32_t* d_sequence_of_row, const int32_t* d_block_tables,
                             const int32_t* d_blocks_per_sequence, const float* d_qkv, int kv_dtype, const void* d_key_cache,
                             const void* d_value_cache, int64_t block_size, int64_t heads, int64_t kv_heads, int64_t head_dim,
                             int64_t window, float scale, int64_t max_positions, float* d_out, void* d_workspace,
                             size_t workspace_bytes, cudaStream_t stream) {
  if (!d_active || !d_positions || !d_sequence_of_row || !d_block_tables || !d_blocks_per_sequence || !d_qkv || !d_key_cache ||
      !d_value_cache || !d_out)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_attention_decode: a required pointer is NULL");
  if (!valid_dtype(kv_dtype)) return refuse(BD_ERR_BAD_DTYPE, "bd_step_attention_decode: KV dtype code %d", kv_dtype);
  if (launch_rows <= 0 || launch_rows > MAX_GRID_X || heads <= 0 || kv_heads <= 0 || heads % kv_heads != 0 || head_dim < 2 ||
      head_dim % 2 != 0 || head_dim > AD_MAX_HEAD_DIM || block_size <= 0 || window < 0 || max_positions <= 0 || heads > MAX_GRID_YZ)
    return refuse(BD_ERR_BAD_SHAPE,
                  "bd_step_attention_decode: launch_rows %lld, heads %lld, kv_heads %lld, head_dim %lld (even, up to %d), block_size %lld, "
                  "window %lld, max_positions %lld",
                  (long long)launch_rows, (long long)heads, (long long)kv_heads, (long long)head_dim, AD_MAX_HEAD_DIM,
                  (long long)block_size, (long long)window, (long long)max_positions);
  bd::DeviceInfo device;
  const cudaError_t device_error = bd::device_info(&device);
  if (device_error != cudaSuccess) return fail(device_error, "bd_step_attention_decode: device properties");
  const int group = decode_group(heads, kv_heads);
  const int splits = decode_splits(launch_rows, heads / group, max_positions, device.sms);
  if (splits > 1 && (d_workspace == nullptr || workspace_bytes < bd_step_attention_workspace_bytes(launch_rows, heads, head_dim)))
    return refuse(BD_ERR_WORKSPACE, "bd_step_attention_decode: %d splits need %zu bytes of workspace, %zu given", splits,
                  bd_step_attention_workspace_bytes(launch_rows, heads, head_dim), workspace_bytes);
  float* partials = static_cast<float*>(d_workspace);
  cudaError_t e;
  switch (kv_dtype) {
    case BD_DTYPE_F32:
      e = launch_attention_decode<float>(d_active, launch_rows, d_positions, d_sequence_of_row, d_block_tables, d_blocks_per_sequence,
          d_qkv, d_key_cache, d_value_cache, block_size, heads, kv_heads, head_dim, window, scale, group, splits, d_out, partials, stream);
      break;
    case BD_DTYPE_F16:
      e = launch_attention_decode<__half>(d_active, launch_rows, d_positions, d_sequence_of_row, d_block_tables, d_blocks_per_sequence,
          d_qkv, d_key_cache, d_value_cache, block_size, heads, kv_heads, head_dim, window, scale, group, splits, d_out, partials, stream);
      break;
    default:
      e = launch_attention_decode<__nv_bfloat16>(d_active, launch_rows, d_positions, d_sequence_of_row, d_block_tables,
          d_blocks_per_sequence, d_qkv, d_key_cache, d_value_cache, block_size, heads, kv_heads, head_dim, window, scale, group, splits,
          d_out, partials, stream);
      break;
  }
  if (e != cudaSuccess)
    return fail(e, "bd_step_attention_decode: %s (kv dtype %d)<<<(%lld, %lld, %d), %d>>>%s (head_dim %lld)",
                decode_kernel_form(head_dim, group), kv_dtype, (long long)launch_rows, (long long)(heads / group), splits, AD_THREADS,
                splits > 1 ? " and attention_combine_kernel" : "", (long long)head_dim);
  return BD_OK;
}

int bd_step_attention_prefill_fits(int64_t head_dim) {
  bd::DeviceInfo device;
  if (bd::device_info(&device) != cudaSuccess) return 0;
  return head_dim >= 1 && head_dim <= AP_MAX_HEAD_DIM && int64_t(ap_smem_bytes(head_dim)) <= ap_smem_limit(device) ? 1 : 0;
}

int bd_step_attention_prefill(int64_t tiles, const int32_t* d_tile_first, const int32_t* d_tile_rows, const int32_t* d_positions,
                              const int32_t* d_sequence_of_row, const int32_t* d_block_tables,
                              const int32_t* d_blocks_per_sequence, const float* d_qkv, int kv_dtype, const void* d_key_cache,
                              const void* d_value_cache, int64_t block_size, int64_t heads, int64_t kv_heads, int64_t head_dim,
                              int64_t window, float scale, float* d_out, cudaStream_t stream) {
  if (!d_tile_first || !d_tile_rows || !d_positions || !d_sequence_of_row || !d_block_tables || !d_blocks_per_sequence || !d_qkv ||
      !d_key_cache || !d_value_cache || !d_out)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_attention_prefill: a required pointer is NULL");
  if (!valid_dtype(kv_dtype)) return refuse(BD_ERR_BAD_DTYPE, "bd_step_attention_prefill: KV dtype code %d", kv_dtype);
  bd::DeviceInfo device;
  const cudaError_t device_error = bd::device_info(&device);
  if (device_error != cudaSuccess) return fail(device_error, "bd_step_attention_prefill: device properties");
  if (tiles <= 0 || tiles > MAX_GRID_X || heads <= 0 || heads > MAX_GRID_YZ || kv_heads <= 0 || heads % kv_heads != 0 ||
      head_dim < 1 || head_dim > AP_MAX_HEAD_DIM || int64_t(ap_smem_bytes(head_dim)) > ap_smem_limit(device) || block_size <= 0 ||
      window < 0)
    return refuse(BD_ERR_BAD_SHAPE,
                  "bd_step_attention_prefill: tiles %lld, heads %lld, kv_heads %lld, head_dim %lld (up to %d and %zu bytes of shared "
                  "memory, %d on this device), block_size %lld, window %lld",
                  (long long)tiles, (long long)heads, (long long)kv_heads, (long long)head_dim, AP_MAX_HEAD_DIM, ap_smem_bytes(head_dim),
                  ap_smem_limit(device), (long long)block_size, (long long)window);
  cudaError_t e;
  switch (kv_dtype) {
    case BD_DTYPE_F32:
      e = launch_attention_prefill<float>(tiles, d_tile_first, d_tile_rows, d_positions, d_sequence_of_row, d_block_tables,
          d_blocks_per_sequence, d_qkv, d_key_cache, d_value_cache, block_size, heads, kv_heads, head_dim, window, scale, d_out, stream);
      break;
    case BD_DTYPE_F16:
      e = launch_attention_prefill<__half>(tiles, d_tile_first, d_tile_rows, d_positions, d_sequence_of_row, d_block_tables,
          d_blocks_per_sequence, d_qkv, d_key_cache, d_value_cache, block_size, heads, kv_heads, head_dim, window, scale, d_out, stream);
      break;
    default:
      e = launch_attention_prefill<__nv_bfloat16>(tiles, d_tile_first, d_tile_rows, d_positions, d_sequence_of_row, d_block_tables,
          d_blocks_per_sequence, d_qkv, d_key_cache, d_value_cache, block_size, heads, kv_heads, head_dim, window, scale, d_out, stream);
      break;
  }
  if (e != cudaSuccess)
    return fail(e, "bd_step_attention_prefill: attention_prefill_kernel<kv dtype %d><<<(%lld, %lld), %d, %zu>>>", kv_dtype,
                (long long)tiles, (long long)heads, AP_THREADS, ap_smem_bytes(head_dim));
  return BD_OK;
}

}  // extern "C"
