/*
 * bitdelta_step.h -- the C ABI of the GPU decoder step (libbitdelta_cuda.so): the operations of one
 * Llama/Mistral decoder step over a batch whose rows belong to different tenants, CUDA graph capture of a step,
 * events, and sampling on the device. The Java side (org.bitdelta.cuda.CudaDecoderDevice through
 * org.bitdelta.cuda.internal.StepLibrary) is its only caller; the product kernels of bitdelta_cuda.h stay as they are.
 *
 * Conventions (as bitdelta_cuda.h): extern "C", status codes BD_OK / BD_ERR_* of bitdelta_cuda.h, d_* are device
 * pointers, nothing here allocates, frees or synchronizes (except the graph and event calls, which say so), work is
 * enqueued on `stream`, every launch is followed by cudaGetLastError() (a failed launch returns BD_ERR_CUDA,
 * bd_last_cuda_error() names the CUDA error).
 *
 * Two paths; the caller picks one per model (CudaDecoderDevice: the tensor-core path for models whose projections are
 * all F16 or all BF16 with input widths that are multiples of 8 up to BD_STEP_TC_MAX_K, the exact path otherwise).
 *
 * PRECISION of the exact path (what the Java CPU decoder does, reproduced): activations, the residual stream, the KV
 * cache and every accumulation are F32; weights are read in their own dtype (F32, F16, BF16) and widened to F32 in
 * registers. The CPU computes the same way, so the GPU's results differ from it only by summation order in the dot
 * products and in RMSNorm's double sum of squares; the element-wise operations use the CPU's exact operation order with
 * no FMA contraction (__fmul_rn/__fadd_rn, exp in double rounded to float as Java's (float) Math.exp), and attention
 * sums its weights and values in position order as the CPU's scalar path does. 16-bit activations would give about
 * 1e-3 relative error in the logits, enough to flip greedy near-ties and to move perplexities by more than 1e-4; F32
 * keeps the GPU within float rounding of the CPU.
 *
 * TENSOR-CORE PATH (16-bit models; bd_step_project.cu, bd_step_attention.cu): activations and the residual stream stay
 * F32, and so do RMSNorm and SwiGLU (the exact path's code). A projection's input x is first put into its SPLIT FORM
 * (bd_step_split_bytes: per row a power of two s with max|x| s in [2^14, 2^15); x s = hi + lo as F16, or hi + mid + lo
 * as BF16; q = rint(x s 2^8) as 24 bit-planes in binary-MMA fragment order), by RMSNorm as it writes its output, or by
 * bd_step_split (bd_step_swiglu_split: SwiGLU, then the split of its output). The product then runs on the tensor cores:
 *   base  W x = (sum over the parts of W part) / s: f16/bf16 mma.sync with exact products; each k256 stage's two mma
 *         per part start from zero and are added to F32 accumulators with round-to-nearest (the tensor cores truncate
 *         as they accumulate, so they never sum more than 32 products); parts hold x s to 2^-22 (F16) or 2^-25 (BF16)
 *         relative per element.
 *   delta S x = (S . q) / (s 2^8): mma.m16n8k256.b1 (AND + popcount) on the packed signs against the planes, exact in
 *         integers; q holds x to 2^-23 max|x| per element.
 * so the product stays within about F32 rounding of the exact path's (conformance: 2e-5 of the largest output at the
 * tested shapes) while W and every tenant's signs are read from memory once per step (decode: blocks of 16 rows; the
 * row chunks of an m16 tile of W run side by side and share it through L2) or once per tile of the prefill GEMMs. Per element, y = base + a (delta) is formed as the CPU forms it, then added to y where accumulating.
 * Attention computes in F32 with FMA and tree sums (F32 rounding from the CPU's order); its KV cache is F32 or the
 * model's dtype (keys and values then rounded to 16 bits: see CudaBackend.KvCachePrecision for the measured effect).
 *
 * ROW BOUNDS. A step runs `R` active rows; the kernels are launched for `launch_rows` >= R (a CUDA graph is
 * captured once per batch-size bucket, launch_rows = the bucket) and read R at run time from `d_active` (a device
 * int32): rows R .. launch_rows-1 are skipped (their outputs are not written). The per-row arrays (tokens, slots,
 * positions, ...) are I32 [launch_rows]; only the first R entries are read. Functions documented as eager (the prefill
 * product and attention) take their row counts as arguments instead.
 *
 * TENANT SLOTS. Slot 0 is the base model, slots 1 .. S-1 loaded tenants. Per-slot tables are DEVICE arrays
 * indexed by slot: for tensors every slot points at the tensor it uses (the base's where the tenant does not
 * replace it), so every lookup of an active row's slot is a valid pointer; for deltas a NULL entry means "no delta".
 *
 * SIGNS. Delta sign matrices are in the device layout of bitdelta_cuda.h (bd_repack_signs), scales are F32 per row.
 * The q|k|v and gate|up matrices of a layer are stacked along the outputs ([q+k+v, K], [2I, K]) for the base
 * weights and for every tenant's signs, with per-row scales (a per-matrix scale is repeated over its rows; a part
 * the tenant has no delta for has signs 0 and scales 0, so it adds exactly 0).
 *
 * PROGRAMMATIC DEPENDENT LAUNCH. On cc >= 9.0 the step's kernels but embedding, the exact path's products, attention
 * and lm_head, prefill attention and products, and sampling (that is: the tensor-core and vector products, splits,
 * RMSNorm, RoPE with the KV write, decode attention and its combine, SwiGLU, gather, the grouped lm_head; the exact path
 * shares RMSNorm, RoPE, SwiGLU and gather) are launched with programmatic stream serialization (bd_step_set_pdl turns
 * it off): each lets the kernel after it launch at its start (griddepcontrol.launch_dependents) and waits for the one
 * before (griddepcontrol.wait) before it reads anything that kernel wrote; every block passes the wait before it
 * returns. The products request their weights before the wait: what they read before it is written only by the
 * uploads before a step's first kernel.
 *
 * KV CACHE. Per layer, keys and values separately: kv_dtype [num_blocks, kv_heads, block_size, head_dim] (F32 on the
 * exact path); the token of cache slot c = block * block_size + offset lives at [block, h, offset, :]. A sequence's
 * block table lists its blocks in position order: position p is in block table[p / block_size] at offset
 * p % block_size.
 *
 * Launch configurations. The exact path (simple SIMT kernels, correct for every shape; every dimension is a loop):
 *   bd_step_embed:         embed_kernel, grid launch_rows, 256 threads (threads stride over hidden).
 *   bd_step_rmsnorm:       rmsnorm_kernel, grid launch_rows, 256 threads (double sum of squares, block reduced).
 *   bd_step_project:       project_kernel<T>, T in {float, half, bf16} = 3 kernels; grid (ceil(M / 8),
 *                          ceil(launch_rows / 4)), 256 threads: warp w computes output m = 8 * blockIdx.x + w for
 *                          4 rows, lanes stride over K, warp-shuffle reduction.
 *   bd_step_rotary_cache:  rotary_cache_kernel<TKV>, TKV in {float, half, bf16} (the cache's dtype) = 3 kernels, grid
 *                          (launch_rows, ceil(((heads + kv_heads) * head_dim / 2 + kv_heads * head_dim) / 256)), 256
 *                          threads: one rotated pair or one value per thread.
 *   bd_step_attention:     attention_kernel<TKV> = 3 kernels, grid (launch_rows, heads), 128 threads, dynamic shared
 *                          memory 4 * (head_dim + 128) bytes: pass 1 the max score, pass 2 in chunks of 128 positions the
 *                          exp weights, their sum and the weighted values (each in the CPU's sequential order). The
 *                          tensor-core path uses it only where its own attention kernels do not apply.
 *   bd_step_swiglu:        swiglu_kernel, grid (launch_rows, ceil(I / 256)), 256 threads.
 *   bd_step_gather_rows:   gather_kernel, grid launch_rows, 256 threads.
 *   bd_step_lm_head:       lm_head_kernel, grid (ceil(vocab / 8), ceil(launch_rows / 4)), 256 threads, as project.
 *   bd_step_argmax:        argmax_kernel, grid rows, 1024 threads.
 *   bd_step_sample:        argmax_kernel, then sort_key_kernel (grid ceil(max(rows * vocab, rows + 1) / 256), 256 threads), CUB
 *                          DeviceSegmentedRadixSort::SortPairsDescending (its own kernels), sample_kernel
 *                          (grid rows, 1024 threads).
 * The tensor-core path (T in {half, bf16}: the weights' dtype; PARTS = 2 for half, 3 for bf16):
 *   bd_step_split, bd_step_rmsnorm_split, bd_step_swiglu_split (swiglu_kernel as bd_step_swiglu, then the split of its
 *                          output):
 *                          split_kernel<T, SOURCE>, SOURCE in {copy, RMSNorm} = 4 kernels; grid (launch_rows, 8)
 *                          (block (r, i): the whole row's max |x|, then the eighth i of its k256 blocks: output, parts,
 *                          and with planes the quantized values in ceil(K/256/8) KB of dynamic shared memory, 24 ballots
 *                          per 32 columns for the planes); 256 threads.
 *   bd_step_project_tc:    project_tc_kernel<T, RW, TILES> = 6 kernels: (RW, TILES) in {(1, 2), (2, 2)} where a block may
 *                          have about 223 KB of shared memory (cc 9.0; 16 rows a block past 8 launch rows), else (1, 1)
 *                          (bd_step_set_tc_tiles forces it); one launch, grid (ceil(launch_rows / (8 RW)),
 *                          ceil(M / (16 TILES))) (block (c, mp): rows 8 RW c .. of the step, TILES m16 tiles from row
 *                          16 TILES mp of M; chunks of one tile adjacent in launch order), 256 TILES threads (8 warps a
 *                          tile), one block per SM; a cp.async pipeline of k256 stages in dynamic shared memory (per tile
 *                          a W tile of 8 KB and 512 B of sign lines a row; shared by the tiles 768 B of planes and 512 B
 *                          per part of x a row: F16 / BF16 (1, 1) 26 / 30 KB x 3 stages, (1, 2) 38 / 42 KB x 5,
 *                          (2, 2) 60 / 68 KB x 3) plus TILES * 8 * 16 * (8 RW + 1) floats of static shared memory for the
 *                          warps' base sums and TILES * 16 * 8 RW floats for the tenants' scales. Every copy's source is
 *                          a per-thread base plus the stage times a stride; x crosses from L2 once per block, not once
 *                          per tile. Warp 8 i + w: for tile i, the delta of rows w RW .. w RW + RW - 1 (3 binary mma per
 *                          row and stage), k32 step w of every stage of the base product (2 mma per row tile and part,
 *                          A and B fragments from shared memory). W, the sign lines and the tenants' scales stream
 *                          before griddepcontrol.wait, the split form only after it.
 *   bd_step_project_vector: project_vector_kernel<T> = 2 kernels; grid ceil(M / 16), 256 threads (8 warps), two
 *                          blocks per SM, 8 * 4 * BD_STEP_VECTOR_ROWS floats of static shared memory. Block mt: rows
 *                          16 mt .. of M; warp w: 4 of them (w & 3: rows g, g + 1, g + 8, g + 9 of the tile, sharing sign
 *                          words) over column half w >> 2 of each 1024 columns, lane l 8 columns of each 256; 8 loads
 *                          of 16 bytes of W in flight per lane (the next 1024 columns requested before these are used).
 *                          The first columns of W stream before griddepcontrol.wait.
 *   bd_step_project_prefill: segment_tenants_kernel (grid ceil(segments / 256), 256 threads), then per part bd_prefill of
 *                          bitdelta_cuda.h (F32 output: on cc 9.0 the wgmma base pass and delta pass, accumulating from
 *                          the second part on), then unscale_kernel (grid (rows, ceil(M / 1024)), 256 threads).
 *   bd_step_attention_decode: attention_decode_kernel<TKV, P, G>, P in {2, 4} (head_dim up to 64 P), G in {1, 8} (group
 *                          1, else up to 8), = 12 kernels, and attention_decode_wide_kernel<TKV> (head_dim 258 .. 512)
 *                          = 3 kernels; grid (launch_rows, heads / group, splits), 128 threads; group = the largest
 *                          divisor of heads / kv_heads up to 8 (query heads sharing one read of their KV head's keys
 *                          and values); splits = enough blocks for two per SM, at most 16 and one per 32 positions of
 *                          max_positions (block (r, g, s) takes chunks s, s + splits, ... of 32 positions).
 *                          attention_decode_kernel: warp w takes positions 8 w .. 8 w + 7 of each chunk and loads their
 *                          keys and values at once (8 positions in flight for P = 2, 4 for P = 4; lane l holds
 *                          dimensions 2 l + 64 i, + 1; a full batch inside one cache block from one table entry), an
 *                          online softmax per warp, the warps merged through (1 + 4) * group * head_dim floats of
 *                          dynamic shared memory (the queries and the warps' accumulators); 96 registers for G = 1 and
 *                          16-bit caches (5 blocks per SM), about 155 (P = 2) and 180 to 200 (P = 4) for G = 8.
 *                          The wide kernel: group * head_dim floats, at most 80 registers, scores by warps, an online
 *                          softmax by a warp per query head, weighted values by threads over the dimensions. With
 *                          splits > 1 attention_combine_kernel, grid (launch_rows, heads), 128 threads.
 *   bd_step_attention_prefill: attention_prefill_kernel<TKV> = 3 kernels, grid (tiles, heads), 128 threads (4 per query
 *                          row), dynamic shared memory 4 * (32 (hd + 1) + 32 (hd + 1) + 32 hd + 32 * 33) bytes (hd =
 *                          head_dim; 52 KB at 128, 103 KB at 256, the most given): the tile's queries, 32 keys and
 *                          values at a time, their probabilities; online softmax per query row.
 *   bd_step_lm_head_grouped: lm_head_grouped_kernel, grid (ceil(vocab / 32), launch_groups), 256 threads: warp w of
 *                          block (v, g) computes vocabulary rows 32 v + 4 w .. + 3 of group g's head for its rows, 8 rows
 *                          per pass (16-byte loads of the head, evict-first), F32 FMA and warp sums.
 *   Total: 49 step kernels (17 of the exact path, sampling included, and 32 of the tensor-core path; CUB's sort kernels
 *   aside).
 *
 * PREDICTIONS made before the first measurement (docs/benchmarks.md has the measured step, 1.79x its floor at 16
 * tenants; H100, Llama-2-7B shape, 16 tenants of one row each, context 256, F16 KV cache):
 *   bytes per step: base projections 12.95 GB + 16 tenants' signs and scales 12.96 GB + 16 lm_heads 4.19 GB + keys and
 *   values 2.15 GB = 32.3 GB, 10.7 ms at 3.02 TB/s. Per launch of project_tc at 16 rows, per warp and k256 stage about
 *   110 instructions against 16 KB of DRAM reads per block stage (W 8 KB + signs 8 KB): about 55 warp instructions per
 *   KB, some 6x under the issue rate at which 3 TB/s would be issue-bound; L2 also carries each block's parts and planes
 *   of x (452 KB per block at K = 4096, 16 rows), so the products are expected near the 16-row times of
 *   bd_decode's version 3 (1.4-1.6x of their floors): about 12 ms of projections, 1.7 ms of lm_heads, 1 ms of attention
 *   and 1-1.5 ms of small kernels: 15-17 ms per step (1.4-1.6x of the floor; the 1.3x goal is not expected without
 *   persistent product blocks and fewer launches), about 1000 tokens/s. The base alone at batch 1: 4.4 ms floor,
 *   6-7 ms expected (the per-launch costs of 13 kernels per layer weigh more at 1 row). Prefill: 2 parts x (base pass
 *   + delta pass) of bd_prefill: about 4.5x the time of one dense F16 GEMM of the same tokens (cuBLAS).
  */
#ifndef BITDELTA_STEP_H
#define BITDELTA_STEP_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BD_STEP_ABI_VERSION 4   /* 3: bd_step_project_vector; 4: bd_step_set_tc_tiles */

/* The largest K of the tensor-core products (bd_step_split*, bd_step_project_tc, bd_step_project_prefill). */
#define BD_STEP_TC_MAX_K 98304

int bd_step_abi_version(void);   /* BD_STEP_ABI_VERSION of the library */

/* Thread-local text of the last failure of a bd_step_* call on this thread: the function, its shapes and, for
 * BD_ERR_CUDA, the CUDA error's name and string ("" if none). */
const char* bd_step_last_error(void);

/* ---- the operations of a step ---- */

/* out[r, :] = table_of_slot[slot[r]][token[r], :] widened to F32.
 * d_active:        I32 [1] active rows R <= launch_rows
 * d_tokens:        I32 [launch_rows] token ids (0 <= id < vocab: checked by the caller)
 * d_slots:         I32 [launch_rows]
 * d_table_of_slot: device array [slots] of const void*, each dtype [vocab, hidden]
 * d_dtype_of_slot: I32 [slots] BD_DTYPE_F32 / F16 / BF16 of each table
 * d_out:           F32 [launch_rows, hidden] */
int bd_step_embed(const int32_t* d_active, int64_t launch_rows, const int32_t* d_tokens, const int32_t* d_slots,
                  const void* const* d_table_of_slot, const int32_t* d_dtype_of_slot, int64_t hidden, float* d_out,
                  cudaStream_t stream);

/* out[r, k] = w[k] * (in[r, k] * inv_r), inv_r = (float)(1 / sqrt((double)((float)(sumsq_r / hidden) + eps))),
 * sumsq_r = sum_k (float)(in[r,k] * in[r,k]) in double (HF LlamaRMSNorm, as the CPU decoder computes it).
 * d_row_index:      I32 [launch_rows] or NULL: the slot of row r is d_slots[d_row_index ? d_row_index[r] : r]
 *                   (the final norm runs over output rows, whose slots are those of the rows they come from)
 * d_weight_of_slot: device array [slots] of const float*, each F32 [hidden]
 * d_in, d_out:      F32 [launch_rows, hidden] (may not alias) */
int bd_step_rmsnorm(const int32_t* d_active, int64_t launch_rows, const int32_t* d_slots, const int32_t* d_row_index,
                    const float* const* d_weight_of_slot, const float* d_in, float* d_out, int64_t hidden, float eps,
                    cudaStream_t stream);

/* y[r, m] (+)= sum_k x[r,k] W[m,k]  +  a_s[m] * sum_k x[r,k] S_s[m,k],  s = slot[r]; no delta term where
 * d_signs_of_slot[s] is NULL. Computed as the CPU does: p = base + (float)(a * delta), then y = y + p (accumulate).
 * w_dtype:          BD_DTYPE_F32 / F16 / BF16 of d_W
 * d_W:              w_dtype [M, K]
 * d_signs_of_slot:  device array [slots] of const U32* (device sign layout [M, K]) or NULL
 * d_scales_of_slot: device array [slots] of const float* (F32 [M]); read only where the signs are not NULL
 * d_x:              F32 [launch_rows, K]
 * d_y:              F32 [launch_rows, M] (may not alias d_x)
 * accumulate:       0: y = product; 1: y += product */
int bd_step_project(const int32_t* d_active, int64_t launch_rows, const int32_t* d_slots, int w_dtype, const void* d_W,
                    const uint32_t* const* d_signs_of_slot, const float* const* d_scales_of_slot, const float* d_x,
                    float* d_y, int64_t M, int64_t K, int accumulate, cudaStream_t stream);

/* RoPE (HF rotate_half: element i pairs with i + head_dim/2 in every head) on the q and k parts of qkv, in place, by
 * each row's position; then the row's rotated key and its value are written to the cache at d_cache_slots[r]
 * (a negative slot writes nothing), rounded to the cache's dtype.
 * d_positions:       I32 [launch_rows], 0 <= p < context (rows of the tables)
 * d_cache_slots:     I32 [launch_rows], block * block_size + offset
 * d_cos, d_sin:      F32 [context, head_dim / 2]
 * d_qkv:             F32 [launch_rows, (heads + 2 * kv_heads) * head_dim]
 * kv_dtype:          BD_DTYPE_F32 / F16 / BF16 of the cache
 * d_key_cache, d_value_cache: kv_dtype [num_blocks, kv_heads, block_size, head_dim] of this layer */
int bd_step_rotary_cache(const int32_t* d_active, int64_t launch_rows, const int32_t* d_positions,
                         const int32_t* d_cache_slots, const float* d_cos, const float* d_sin, float* d_qkv, int64_t heads,
                         int64_t kv_heads, int64_t head_dim, int kv_dtype, void* d_key_cache, void* d_value_cache,
                         int64_t block_size, cudaStream_t stream);

/* Causal grouped-query attention over the paged cache: row r's query head h attends to kv head
 * h / (heads / kv_heads) at positions first .. p of its sequence, p = d_positions[r], first = max(0, p - window + 1)
 * (window > 0) or 0; scores scaled by `scale`, softmax in F32 with the max subtracted. The exact path: sums in the CPU's
 * order (see PRECISION).
 * d_sequence_of_row:      I32 [launch_rows]
 * d_block_tables:         I32 [sequences, *d_blocks_per_sequence] block ids (entries up to p / block_size are read)
 * d_blocks_per_sequence:  I32 [1] width of the block tables this step
 * d_qkv:                  F32 [launch_rows, (heads + 2 * kv_heads) * head_dim] (the q part is read)
 * kv_dtype, d_key_cache, d_value_cache: as bd_step_rotary_cache
 * d_out:                  F32 [launch_rows, heads * head_dim]
 * head_dim:               2 .. 512 */
int bd_step_attention(const int32_t* d_active, int64_t launch_rows, const int32_t* d_positions,
                      const int32_t* d_sequence_of_row, const int32_t* d_block_tables,
                      const int32_t* d_blocks_per_sequence, const float* d_qkv, int kv_dtype, const void* d_key_cache,
                      const void* d_value_cache, int64_t block_size, int64_t heads, int64_t kv_heads, int64_t head_dim,
                      int64_t window, float scale, float* d_out, cudaStream_t stream);

/* out[r, i] = g / (1 + (float)exp(-g)) * u,  g = gate_up[r, i], u = gate_up[r, I + i].
 * d_gate_up: F32 [launch_rows, 2 * intermediate];  d_out: F32 [launch_rows, intermediate] */
int bd_step_swiglu(const int32_t* d_active, int64_t launch_rows, const float* d_gate_up, float* d_out,
                   int64_t intermediate, cudaStream_t stream);

/* out[i, :] = in[d_row_index[i], :] for the active output rows i < *d_active.
 * d_row_index: I32 [launch_rows];  d_in: F32 [*, columns];  d_out: F32 [launch_rows, columns] */
int bd_step_gather_rows(const int32_t* d_active, int64_t launch_rows, const int32_t* d_row_index, const float* d_in,
                        float* d_out, int64_t columns, cudaStream_t stream);

/* logits[i, v] = sum_k x[i, k] * head[v, k], head = d_head_of_slot[slot of output row i] (the slot of output row i
 * is d_slots[d_row_index[i]]).
 * d_head_of_slot:  device array [slots] of const void*, each dtype [vocab, hidden]
 * d_dtype_of_slot: I32 [slots]
 * d_x:             F32 [launch_rows, hidden];  d_logits: F32 [launch_rows, vocab] */
int bd_step_lm_head(const int32_t* d_active, int64_t launch_rows, const int32_t* d_slots, const int32_t* d_row_index,
                    const void* const* d_head_of_slot, const int32_t* d_dtype_of_slot, const float* d_x,
                    float* d_logits, int64_t vocab, int64_t hidden, cudaStream_t stream);

/* ---- the tensor-core path (16-bit models; see TENSOR-CORE PATH above) ---- */

/* Bytes of the split form of F32 activations x [capacity, K] for products with dtype (F16 / BF16) weights:
 *   parts   dtype [PARTS][capacity][K] at offset 0: x_r * s_r = sum of the parts (F16: hi, lo; BF16: hi, mid, lo),
 *           s_r the row's power of two with max|x_r| s_r in [2^14, 2^15)
 *   planes  U32 [capacity][ceil(K/256)][192] at up256(PARTS * capacity * K * 2): the 24 bit-planes of
 *           q = rint(x_r s_r 2^8) (two's complement, |q| < 2^23) as mma.m16n8k256.b1 B fragments: word
 *           [group (planes 8 group .. 8 group + 7)][lane (4 * plane in group + t)][register]
 *   rscale  F32 [capacity]: 1 / s_r;   qsum  I64 [capacity][8]: sums of q over the eighths of the k256 blocks
 * each piece 256-byte aligned (up256: rounded up to a multiple of 256). 0 for a bad argument. */
size_t bd_step_split_bytes(int64_t capacity, int64_t K, int dtype);

/* The split form of rows 0 .. *d_active - 1 of d_x (F32 [launch_rows, K]) into d_split (bd_step_split_bytes(capacity,
 * K, dtype) bytes, 256-byte aligned). planes = 0 writes only the parts and rscale (what bd_step_project_prefill reads);
 * planes = 1 everything (bd_step_project_tc). K: a multiple of 8 up to BD_STEP_TC_MAX_K. */
int bd_step_split(const int32_t* d_active, int64_t launch_rows, const float* d_x, int64_t K, int dtype, int planes,
                  void* d_split, int64_t capacity, cudaStream_t stream);

/* bd_step_rmsnorm (d_row_index NULL), writing d_out as it does, and the split form of d_out. */
int bd_step_rmsnorm_split(const int32_t* d_active, int64_t launch_rows, const int32_t* d_slots,
                          const float* const* d_weight_of_slot, const float* d_in, float* d_out, int64_t hidden, float eps,
                          int dtype, int planes, void* d_split, int64_t capacity, cudaStream_t stream);

/* bd_step_swiglu, writing d_out as it does, and the split form of d_out. */
int bd_step_swiglu_split(const int32_t* d_active, int64_t launch_rows, const float* d_gate_up, float* d_out,
                         int64_t intermediate, int dtype, int planes, void* d_split, int64_t capacity, cudaStream_t stream);

/* bd_step_project for dtype (F16 / BF16) weights from the split form (planes = 1) of x:
 *   y[r, m] (+)= (sum_parts x_part W^T)[r, m] / s_r + a_s[m] * ((S_s . q_r)[m] / (s_r 2^8)),  s = slot[r]
 * d_W:    dtype [M, K], 16-byte aligned, K % 8 == 0, K <= BD_STEP_TC_MAX_K
 * d_split: the split form of the step's x, capacity >= launch_rows rows;  d_y: F32 [launch_rows, M]
 * Blocks of 16 rows (8 when launch_rows <= 8); the row chunks of one m16 tile of W run side by side, so W is read from
 * memory about once. M up to 65535 * 16. BD_ERR_BAD_SHAPE where the split form holds more than 2^32 - 1 16-bit
 * elements (parts * capacity * K) or plane words (the kernel's offsets are 32-bit). */
int bd_step_project_tc(const int32_t* d_active, int64_t launch_rows, const int32_t* d_slots, int dtype, const void* d_W,
                       const uint32_t* const* d_signs_of_slot, const float* const* d_scales_of_slot, const void* d_split,
                       int64_t capacity, float* d_y, int64_t M, int64_t K, int accumulate, cudaStream_t stream);

/* Decode rows up to this take bd_step_project_vector. */
#define BD_STEP_VECTOR_ROWS 2

/* bd_step_project for dtype (F16 / BF16) weights and at most BD_STEP_VECTOR_ROWS rows, straight from F32 x: each
 * product exact, F32 sums (no split form). At one or two rows a product is bound by reading W; this streams it in
 * 16-byte loads where the tensor-core path pays the split form's launches and reads.
 * d_W: dtype [M, K], 16-byte aligned, K % 8 == 0;  d_x: F32 [launch_rows, K], 16-byte aligned;  d_y: F32 [launch_rows, M] */
int bd_step_project_vector(const int32_t* d_active, int64_t launch_rows, const int32_t* d_slots, int dtype, const void* d_W,
                           const uint32_t* const* d_signs_of_slot, const float* const* d_scales_of_slot, const float* d_x,
                           float* d_y, int64_t M, int64_t K, int accumulate, cudaStream_t stream);

/* Workspace of bd_step_project_prefill: up256(4 * segments) + up256(4 * rows * M) bytes. */
size_t bd_step_project_prefill_workspace_bytes(int64_t rows, int64_t segments, int64_t M);

/* The same product for many rows per tenant (eager steps; `rows` rows, not *d_active): bd_prefill (bitdelta_cuda.h)
 * over each part of the split form (planes = 0 suffices) with F32 output, then y (+)= that / s_r.
 * d_segment_offsets: I32 [segments + 1], 0 = first <= ... <= last = rows: runs of rows of one tenant slot
 * d_segment_slots:   I32 [segments] their slots;  slots: entries of the slot tables
 * d_workspace:       >= bd_step_project_prefill_workspace_bytes(rows, segments, M), 256-byte aligned
 * rows, segments:    1 .. 65535 */
int bd_step_project_prefill(int64_t rows, const int32_t* d_segment_offsets, const int32_t* d_segment_slots, int64_t segments,
                            int dtype, const void* d_W, const uint32_t* const* d_signs_of_slot,
                            const float* const* d_scales_of_slot, int64_t slots, const void* d_split, int64_t capacity,
                            float* d_y, int64_t M, int64_t K, int accumulate, void* d_workspace, size_t workspace_bytes,
                            cudaStream_t stream);

/* Workspace of bd_step_attention_decode: launch_rows * heads * 16 * (head_dim + 2) * 4 bytes (the splits' partials). */
size_t bd_step_attention_workspace_bytes(int64_t launch_rows, int64_t heads, int64_t head_dim);

/* bd_step_attention's result for decode steps, computed in F32 with other summation orders (see the launch list):
 * max_positions: the most positions a row attends to (min(context, window) or the context), fixing the splits;
 * head_dim even, 2 .. 512; d_workspace: bd_step_attention_workspace_bytes(launch_rows, heads, head_dim) (NULL allowed when
 * launch_rows * heads / group >= 2 * SMs: a single split). */
int bd_step_attention_decode(const int32_t* d_active, int64_t launch_rows, const int32_t* d_positions,
                             const int32_t* d_sequence_of_row, const int32_t* d_block_tables,
                             const int32_t* d_blocks_per_sequence, const float* d_qkv, int kv_dtype, const void* d_key_cache,
                             const void* d_value_cache, int64_t block_size, int64_t heads, int64_t kv_heads, int64_t head_dim,
                             int64_t window, float scale, int64_t max_positions, float* d_out, void* d_workspace,
                             size_t workspace_bytes, cudaStream_t stream);

/* bd_step_attention's result for prefill steps (eager): d_tile_first / d_tile_rows (I32 [tiles]) cut the step's rows
 * into tiles of 1 .. 32 consecutive rows of one sequence each; every row of the step is in one tile. head_dim 1 .. 256
 * where the flash kernel's shared memory fits the device (else BD_ERR_BAD_SHAPE: use bd_step_attention). */
int bd_step_attention_prefill(int64_t tiles, const int32_t* d_tile_first, const int32_t* d_tile_rows, const int32_t* d_positions,
                              const int32_t* d_sequence_of_row, const int32_t* d_block_tables,
                              const int32_t* d_blocks_per_sequence, const float* d_qkv, int kv_dtype, const void* d_key_cache,
                              const void* d_value_cache, int64_t block_size, int64_t heads, int64_t kv_heads, int64_t head_dim,
                              int64_t window, float scale, float* d_out, cudaStream_t stream);

/* 1 when bd_step_attention_prefill takes this head dimension on the current device, else 0. */
int bd_step_attention_prefill_fits(int64_t head_dim);

/* bd_step_lm_head with the output rows grouped by tenant slot, so that each head is read once per step:
 * d_groups:        I32 [1] groups G this step (<= launch_groups)
 * d_group_slot:    I32 [launch_groups]; d_group_offsets: I32 [launch_groups + 1] (group g: entries
 *                  d_group_offsets[g] .. d_group_offsets[g + 1] - 1 of d_group_rows)
 * d_group_rows:    I32 [launch_groups] output rows (indices into d_x and d_logits), every output row once
 * d_x:             F32 [*, hidden], 16-byte aligned, hidden % 8 == 0;  d_logits: F32 [*, vocab]
 * heads:           16-byte aligned */
int bd_step_lm_head_grouped(const int32_t* d_groups, int64_t launch_groups, const int32_t* d_group_slot,
                            const int32_t* d_group_offsets, const int32_t* d_group_rows, const void* const* d_head_of_slot,
                            const int32_t* d_dtype_of_slot, const float* d_x, float* d_logits, int64_t vocab, int64_t hidden,
                            cudaStream_t stream);

/* Raises the shared-memory limits of the step kernels on the current device; call once per device before the first
 * step (outside graph capture). */
int bd_step_prepare(void);

/* Benchmarks: 1 (the default) launches the step's kernels with programmatic dependent launch on cc >= 9.0 (see
 * PROGRAMMATIC DEPENDENT LAUNCH above); 0 launches them plainly. Process-wide, not thread-safe; a captured graph keeps
 * the launches it was captured with. */
int bd_step_set_pdl(int enabled);

/* Checks: 0 (the default) lets bd_step_project_tc shape its blocks for the device (two m16 tiles of W a block where a
 * block may have their 223 KB of shared memory, as on cc 9.0; else one tile and 8 rows a block); 1 forces the one-tile
 * form, so that it can be checked on a device that would not run it. Process-wide, not thread-safe. */
int bd_step_set_tc_tiles(int tiles);

/* ---- sampling (after a step, launched eagerly for exactly `rows` output rows) ---- */

/* tokens[i] = the index of the largest logit of row i, ties to the lowest index (org.bitdelta.internal.model
 * .Sampler.argmax exactly: NaN never wins, except that a NaN at index 0 gives 0).
 * d_logits: F32 [rows, vocab];  d_tokens: I32 [rows] */
int bd_step_argmax(int64_t rows, const float* d_logits, int64_t vocab, int32_t* d_tokens, cudaStream_t stream);

/* Workspace bytes of bd_step_sample for up to `rows` rows (sort keys and values, segment offsets, CUB's storage). */
size_t bd_step_sample_workspace_bytes(int64_t rows, int64_t vocab);

/* Sampler.sample of org.bitdelta.internal.model for every row: temperature 0 is greedy (bd_step_argmax); otherwise
 * the candidates in descending logit order (ties: lower id first, Java's Float.compare order), the first top_k
 * (0: all), weights exp((logit - max) / temperature) in double, the smallest prefix whose probability reaches
 * top_p (1: all), and the first candidate whose cumulative weight exceeds uniform * (sum of kept weights), with
 * uniform = org.bitdelta.spi.Sampling.uniform(seed, draw) (SplitMix64, identical bits). The sums are in double in
 * parallel order (the CPU's are sequential): a different token needs uniform within about 1e-16 of a boundary.
 * d_temperature, d_top_p: F32 [rows];  d_top_k, d_draw: I32 [rows];  d_seed: I64 [rows]
 * d_tokens:  I32 [rows] output
 * d_workspace: >= bd_step_sample_workspace_bytes(rows, vocab) bytes, 256-byte aligned */
int bd_step_sample(int64_t rows, const float* d_logits, int64_t vocab, const float* d_temperature,
                   const int32_t* d_top_k, const float* d_top_p, const int64_t* d_seed, const int32_t* d_draw,
                   int32_t* d_tokens, void* d_workspace, size_t workspace_bytes, cudaStream_t stream);

/* ---- CUDA graphs and events ---- */

/* Starts capturing `stream` (cudaStreamCaptureModeThreadLocal): the launches that follow on this thread are recorded,
 * not run, until bd_step_graph_end or bd_step_graph_abort. */
int bd_step_graph_begin(cudaStream_t stream);
/* Ends the capture and instantiates it: *graph_exec receives a cudaGraphExec_t (NULL on failure). */
int bd_step_graph_end(cudaStream_t stream, void** graph_exec);
/* Ends a capture that failed (a launch error inside it) and discards what was recorded; the stream is usable again. */
int bd_step_graph_abort(cudaStream_t stream);
/* Enqueues one replay of an instantiated graph on `stream`. */
int bd_step_graph_launch(void* graph_exec, cudaStream_t stream);
int bd_step_graph_destroy(void* graph_exec);

/* Events (cudaEventDisableTiming): record after an upload, synchronize before the host buffer is reused. */
int bd_step_event_create(void** event);
int bd_step_event_record(void* event, cudaStream_t stream);
int bd_step_event_synchronize(void* event);
int bd_step_event_destroy(void* event);

/* ---- benchmarks ---- */

/* An event that records time (bd_step_event_record records it, bd_step_event_destroy destroys it). */
int bd_step_timer_create(void** event);
/* Waits for `end` and gives the milliseconds from `start` to `end`. */
int bd_step_timer_elapsed(void* start, void* end, float* milliseconds);
/* The device-to-device copy bandwidth, bytes read + written per second: the median of `repetitions` cudaMemcpyAsync of
 * `bytes` bytes each timed with events, after one warm-up copy, on a stream of its own. Allocates and frees 2 x bytes;
 * synchronous. */
int bd_step_copy_bandwidth(int64_t bytes, int repetitions, double* bytes_per_second);

#ifdef __cplusplus
}
#endif
#endif /* BITDELTA_STEP_H */
