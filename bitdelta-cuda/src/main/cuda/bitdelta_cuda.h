/*
 * bitdelta_cuda.h -- the one C ABI of libbitdelta_cuda.so (BitDelta W1A16 kernels, multi-tenant).
 *
 * Conventions (every function):
 *   - extern "C", no C++ types, no exceptions; callable through Panama (java.lang.foreign) as is.
 *   - Pointers named d_* are DEVICE pointers (cudaMalloc'd or sub-ranges of such); nothing here allocates,
 *     frees or synchronizes. Work is enqueued on the caller's `stream` (0 = legacy default stream).
 *   - Shapes are int64_t; matrices are row-major and dense (row stride == number of columns).
 *   - The return value is a status: BD_OK (0) or one of the BD_ERR_* codes below; bd_status_string() turns
 *     it into a message, bd_last_cuda_error() gives the CUDA error string of the last failed launch on the
 *     calling thread. Every launch is followed by cudaGetLastError(); a failed launch returns BD_ERR_CUDA.
 *     Asynchronous faults (a bad pointer) surface, as always with CUDA, at the caller's next synchronizing
 *     call on the stream.
 *   - Argument checks done here: null pointers, non-positive shapes, dtype codes, 16-byte alignment where a
 *     fast path needs it (it then falls back to a slower path rather than failing, see each function),
 *     workspace size. NOT checked here (cannot be, without a device round trip): tenant indices inside device
 *     arrays, segment offsets inside device arrays, that pointers are device pointers. The kernels never read
 *     out of bounds because of a bad tenant index: a row whose tenant index is >= num_tenants gets NaN in y
 *     (a tenant index < 0 means "base only, no delta"). The Java side validates these before the call.
 *
 * Dtype codes (BD_DTYPE_*): weights W and activations x share one dtype (F16 or BF16); y may be that dtype
 * or F32. All accumulation is in F32 (tensor-core mma.sync with F32 accumulators).
 *
 * Sign matrices. Host/file layout ("packed"): U8 [M, ceil(K/8)] row-major; bit i (LSB first) of byte b of
 * row m is the sign of column 8b+i: 1 means +1 (delta >= 0), 0 means -1; padding bits are 0.
 * Device layout ("repacked", what the product kernels read): U32 words, one sign matrix =
 *     words[ ((mt * K64) + kb) * 32 + lane ],   mt = m / 16 (M16 = ceil(M/16) tiles), kb = k / 64
 *     (K64 = ceil(K/64) blocks), lane = 0..31 with g = lane / 4, t = lane % 4.
 *   Word (mt, kb, lane) holds the 32 signs that warp lane `lane` needs as mma.sync m16n8k16 A-fragments for
 *   rows 16*mt + {g, g+8} and four k16 steps of block kb, already in register order:
 *     q = 8*s + 4*j + h  (s = k32 half of the block, j = k16 step in it, h = A-fragment half2 register 0..3),
 *     element e = 0/1 of the half2  ->  bit (15 - q) for e = 0, bit (31 - q) for e = 1;
 *     row m = 16*mt + g + 8*(h & 1),  column k = 64*kb + 32*s + 8*t + 4*j + 2*(h >> 1) + e.
 *   (The k order inside a k32 piece is permuted consistently for A and B, so that each lane loads its W and
 *   x fragments with one 16-byte load: W[m][k0+8t .. k0+8t+7].) Bits outside [M, K] are 0.
 *   Size: bd_signs_device_bytes(M, K) = ceil(M/16) * ceil(K/64) * 128 bytes (about M*K/8, plus padding).
 *   Expansion in the kernels: half2 = (~(word << q) & 0x80008000) | ONE_PAIR -- a shift and one LOP3 per
 *   two weights; the ±1 fragments live in registers (mma.sync kernels) or, in the sm_90a delta-only prefill, in
 *   a shared-memory tile per block and k64 stage read by wgmma -- never in global memory.
 *
 * Tenant tables (decode and prefill): d_tenant_signs is a DEVICE array [num_tenants] of device pointers, each
 * to one repacked sign matrix [M, K] (bd_signs_device_bytes). d_tenant_scales is a DEVICE array
 * [num_tenants] of device pointers, each to F32 [1] (scale_per_row = 0) or F32 [M] (scale_per_row = 1).
 * Pointer arrays let tenants be uploaded / evicted independently; the arrays themselves are tiny.
 *
 * Alignment: the fast (vectorized) paths need W and x 16-byte aligned and K % 8 == 0 (prefill's staged 16-bit
 * output also M % 8 == 0); other inputs take a slower scalar path, same results. Every repacked sign matrix
 * (what d_tenant_signs points to) must be 16-byte aligned: the decode kernels copy its 128-byte lines with
 * 16-byte cp.async (cudaMalloc gives 256). The decode workspace must be 256-byte aligned, the compression
 * workspace 16-byte aligned. Pointers inside device arrays cannot be checked here: the Java side checks them.
 * Dynamic shared memory limits are raised once per kernel with cudaFuncSetAttribute on the first call (for the
 * device current then); a process using several GPUs is not supported yet (the other devices would not get the
 * raised limit and those launches fail with BD_ERR_CUDA).
 *
 * GPU targets (bench/build.sh): sm_80 SASS, sm_90a SASS and compute_90 PTX.
 *   - sm_80 SASS also runs on every other cc 8.x GPU (sm_86, sm_89) by binary compatibility, so separate sm_86 /
 *     sm_89 SASS would only repeat it. Nothing depends on a per-arch compile-time constant: the shared-memory
 *     limits are raised at run time (cudaFuncSetAttribute), resident blocks per SM are queried at run time
 *     (cudaOccupancy*), the one form that exceeds the 99 KB a block gets on cc 8.6, 8.9 and 12.x (the lean decode
 *     with RW = 2: 96 KB of stages plus its static arrays) is checked against the device's limit at run time and
 *     replaced by version 3 there, and the only __CUDA_ARCH__ tests (griddepcontrol, wgmma) match host decisions
 *     made from the device's compute capability.
 *   - sm_90a SASS (runs on cc 9.0 only) holds the wgmma prefill kernel; BD_HAVE_SM90A tells the host code so.
 *   - compute_90 PTX is JIT-compiled by the driver for newer GPUs (cc 10.x, 12.x); they take the mma.sync paths.
 *   Only Hopper (H100) has run these kernels; the sm_80 code is compiled, not run.
 *
 * Instantiated launch configurations of the release library (what Maven packages: only what the automatic choice
 * can reach). T in {half, bf16}, TY in {T, float}, VEC in {true, false} (VEC: W and x 16-byte aligned, K % 8 == 0)
 * throughout; every block has 256 threads unless stated.
 *   bd_repack_signs:  repack_signs_kernel, one thread per device word.                                    1 kernel
 *   bd_unpack_signs:  unpack_signs_kernel, one thread per packed byte.                                    1 kernel
 *   bd_decode (rows are processed in launches of at most 32; W is read once per launch):
 *     version 1  decode_kernel<T, TY, NT = 1, VEC>: 8 warps split K, one block per 16 rows of M, up to 8 rows
 *                of x (the automatic choice for R <= 8).                                                 8 kernels
 *     version 2  decode2_kernel<T, TY, RW, MT = 1, VEC>, RW (rows of x per warp) in {1, 2, 4}: cp.async pipeline
 *                of k128 stages (3..12 stages in 96 KB), warps split the rows, one block per 16 rows of M (the
 *                automatic choice for R > 8 without a large enough workspace).                          24 kernels
 *     version 3  xplanes_kernel<T, VEC> (the pre-pass: 8 blocks per row of x, at most 24 KB of shared memory),
 *                                                                                                        4 kernels
 *                then decode3_kernel<T, TY, RW, MT = 1, VEC>, RW in {1, 2, 4}: k256 stages in up to 96 KB, two
 *                blocks per SM, one block per 16 rows of M; launched with programmatic dependent launch on cc >= 9.0
 *                (its block setup overlaps the pre-pass; griddepcontrol.wait precedes the first bit-plane read).
 *                                                                                                       24 kernels
 *                or, lean form (K % 256 == 0 and VEC), decode3_lean_kernel<T, TY, RW, PERSISTENT>, RW in {1, 2, 4},
 *                PERSISTENT only for RW <= 2: the same pre-pass and arithmetic, k256 stages in up to 96 KB, two
 *                blocks per SM; one block per 16 rows of M, or (PERSISTENT, up to 16 rows of x, more 16-row tiles
 *                than resident blocks) one block per resident slot, each taking every gridDim.x-th tile.   20 kernels
 *   bd_prefill:       prefill_kernel<T, TY, WITH_BASE, VEC>, 8 warps as 4 (M) x 2 (rows), block tile 128 (M) x 128
 *                     (rows of one segment) x 64 (K), 4-stage cp.async pipeline for x (64 KB).          16 kernels
 *                     On cc 9.0 (sm_90a SASS), with VEC: prefill_wgmma_ws_kernel<T, TY, BASE = false> for the
 *                     delta-only product (d_W == NULL), 384 threads: warpgroup 0 copies x and expands the sign tile to
 *                     ±1 in shared memory, warpgroups 1 and 2 run wgmma.m64n256k16 (F32 accumulators) on 64 rows each;
 *                     block tile 256 (M) x 128 (rows) x 64 (K), 4 stages of 48 KB with full/empty mbarriers (193 KB,
 *                     one block per SM).                                                                  4 kernels
 *                     Base + delta with F32 y runs two passes there: prefill_wgmma_ws_kernel<T, float, BASE = true>
 *                     (the producer copies the W tile instead of expanding signs) writes W x, then the delta kernel
 *                     adds to it. 16-bit y keeps the fused prefill_kernel (two passes would round twice).  2 kernels
 *   bd_compress:      a 64-byte cudaMemsetAsync of the workspace header, then compress_rows_kernel<T, VEC>, one block
 *                     per row, loads issued in rounds of 6 x 2 x 16 bytes per thread; the last block to finish
 *                     finalizes.                                                                           4 kernels
 *   Total: 108 kernels.
 * The experiment build (-DBD_EXPERIMENTS=1; bench/build.sh sets it for the harness only) adds the forms that only
 * bd_debug_set_decode_variant can select, and BD_PREFILL_KERNEL=mma_sync in the environment to force prefill_kernel
 * on cc 9.0:
 *     version 1  decode_kernel<T, TY, NT, VEC>, NT in {2, 4} (9..32 rows of x per launch).             16 kernels
 *     version 2  decode2_kernel<T, TY, RW, MT = 2, VEC> (32 rows of M per block).                       24 kernels
 *     version 3  decode3_kernel<T, TY, RW, MT = 2, VEC> (32 rows of M per block, up to 200 KB of shared memory, one
 *                block per SM: Hopper only).                                                            24 kernels
 *   Total: 172 kernels.
 */
#ifndef BITDELTA_CUDA_H
#define BITDELTA_CUDA_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BD_ABI_VERSION 2   /* 2: BD_ERR_NOT_BUILT, enum bd_decode_variant */

/* ---- status codes ---- */
#define BD_OK                      0
#define BD_ERR_NULL_POINTER        1  /* a required pointer is NULL */
#define BD_ERR_BAD_SHAPE           2  /* a shape is <= 0 or too large (M, K < 2^31; R, segments limits) */
#define BD_ERR_BAD_DTYPE           3  /* unsupported dtype code or combination */
#define BD_ERR_WORKSPACE           4  /* workspace NULL or smaller than the *_workspace_bytes() answer */
#define BD_ERR_MISALIGNED          5  /* a pointer lacks the alignment the function requires (documented) */
#define BD_ERR_CUDA                6  /* a CUDA call or launch failed: see bd_last_cuda_error() */
#define BD_ERR_NOT_BUILT           7  /* this library was built without that code path (an experiment form) */

/* ---- dtype codes ---- */
#define BD_DTYPE_F32   0
#define BD_DTYPE_F16   1
#define BD_DTYPE_BF16  2

/* ---- scale granularity ---- */
#define BD_SCALE_PER_MATRIX 0   /* each tenant's scale array is F32 [1] */
#define BD_SCALE_PER_ROW    1   /* each tenant's scale array is F32 [M] */

int         bd_abi_version(void);                 /* BD_ABI_VERSION of the library */
const char* bd_status_string(int status);         /* static string, never NULL */
const char* bd_last_cuda_error(void);             /* thread-local; "" if none since the thread started */

/* ====================================================================================================== */
/* Sign repacking (host/file layout -> device layout). Call once per tenant matrix at upload.             */
/* ====================================================================================================== */

/* Bytes of one repacked sign matrix: ceil(M/16) * ceil(K/64) * 128. */
size_t bd_signs_device_bytes(int64_t M, int64_t K);

/* d_packed:  U8  [M, ceil(K/8)]   host/file layout, already copied to the device
 * d_signs:   U32 [bd_signs_device_bytes(M,K) / 4]   device layout (output; every word is written)
 * M, K:      matrix shape [out, in] */
int bd_repack_signs(const uint8_t* d_packed, uint32_t* d_signs, int64_t M, int64_t K, cudaStream_t stream);

/* Inverse (device layout -> host/file layout), for tests and for merging on the GPU.
 * d_signs: U32 device layout; d_packed: U8 [M, ceil(K/8)] (output, padding bits 0). */
int bd_unpack_signs(const uint32_t* d_signs, uint8_t* d_packed, int64_t M, int64_t K, cudaStream_t stream);

/* ====================================================================================================== */
/* Decode: one (or a few) rows per tenant, base product fused (W is read once for all rows).              */
/*   y[r, m] = sum_k x[r,k] * W[m,k]  +  a_t[m] * sum_k x[r,k] * S_t[m,k],   t = d_row_tenant[r]          */
/*   t < 0: base only.  t >= num_tenants: y[r, :] = NaN.  a_t[m] = scale[t][per_row ? m : 0].            */
/* ====================================================================================================== */

/* Workspace bytes for the fastest path: R * ceil(K/256) * 512 bytes of x bit-planes, plus 68 * R, each part
 * rounded up to 256 bytes. The workspace must be 256-byte aligned. With a NULL or smaller workspace (or K > 98304)
 * bd_decode still works: R > 8 then takes version 2 instead of 3 (the result differs only by rounding).
 * Kernel versions (see enum bd_decode_variant below): 1 = warps split K, f16/bf16 tensor cores with signs expanded
 * to ±1 in registers; 2 = cp.async pipeline, same arithmetic, no workspace; 3 = the delta on binary tensor cores
 * (mma.m16n8k256.b1, AND + popcount) against 16 bit-planes of x quantized per row to 16-bit fixed point relative to
 * max|x_r| (error <= 2^-16 max|x_r| per element). The base product W x is always f16/bf16 tensor cores with F32
 * accumulation. The automatic choice: version 1 for R <= 8; version 3 for 9 <= R <= 16; version 3's lean form for
 * R > 16 (where it applies: K % 256 == 0, W and x 16-byte aligned; else version 3), and from R = 5 up when it applies
 * and M has more than 2 x (SM count) 16-row tiles; version 2 instead of 3 without a large enough workspace. */
size_t bd_decode_workspace_bytes(int64_t M, int64_t K, int64_t R);

/* dtype:            BD_DTYPE_F16 or BD_DTYPE_BF16: dtype of d_W and d_x
 * y_dtype:          dtype of d_y: same as dtype, or BD_DTYPE_F32
 * d_W:              dtype [M, K]         shared base weight (HF Linear.weight layout [out, in])
 * d_x:              dtype [R, K]         activations, one row per token
 * d_row_tenant:     I32   [R]            tenant index of each row (-1 = base only)
 * R:                1 .. 65535           rows (typically one per tenant, 1..64); processed 32 rows per launch
 * d_tenant_signs:   device array [num_tenants] of const U32* (device layout, see above)
 * d_tenant_scales:  device array [num_tenants] of const F32* (F32 [1] or F32 [M], see scale_per_row)
 * num_tenants:      >= 0 (0 allowed when every row's tenant is -1)
 * scale_per_row:    BD_SCALE_PER_MATRIX or BD_SCALE_PER_ROW
 * d_y:              y_dtype [R, M]       output; every element is written
 * M, K:             1 .. 2^31-1
 * d_workspace, workspace_bytes: >= bd_decode_workspace_bytes(M, K, R), 256-byte aligned; or NULL/0 (slower) */
int bd_decode(int dtype, int y_dtype,
              const void* d_W, const void* d_x, const int32_t* d_row_tenant, int64_t R,
              const uint32_t* const* d_tenant_signs, const float* const* d_tenant_scales, int64_t num_tenants,
              int scale_per_row, void* d_y, int64_t M, int64_t K,
              void* d_workspace, size_t workspace_bytes, cudaStream_t stream);

/* Decode kernel versions that benchmarks and checks can force (bd_debug_set_decode_variant). "M16" / "M32": one
 * block per 16 / 32 rows of M. The _M32 forms exist only in the experiment build (-DBD_EXPERIMENTS=1). */
typedef enum bd_decode_variant {
  BD_DECODE_AUTO = 0,          /* the automatic choice (default), see bd_decode_workspace_bytes */
  BD_DECODE_SPLIT_K = 1,       /* version 1; the release build has it for up to 8 rows of x per launch, so more
                                  rows run in launches of 8 there (32 in the experiment build) */
  BD_DECODE_PIPELINED = 2,     /* version 2, M16 */
  BD_DECODE_PIPELINED_M32 = 3, /* version 2, M32: experiment build only */
  BD_DECODE_BINARY = 4,        /* version 3, M16 */
  BD_DECODE_BINARY_M32 = 5,    /* version 3, M32 (up to 200 KB of shared memory: Hopper): experiment build only */
  BD_DECODE_BINARY_LEAN = 6    /* version 3's lean form; version 3 (M16) where it does not apply */
} bd_decode_variant;
/* Versions 3 fall back to version 2 (M16) without a large enough workspace. */

/* For benchmarks and checks only (not thread-safe, process-wide): force a decode kernel version (a
 * bd_decode_variant). Returns BD_OK, BD_ERR_NOT_BUILT for a form this library was built without (the variant in
 * force is then unchanged), BD_ERR_BAD_SHAPE for a number outside the enum. */
int bd_debug_set_decode_variant(int variant);

/* Benchmarks only: 1 (the default) = version 3's lean form runs persistent blocks for up to 16 rows (one per
 * resident slot, each taking every gridDim.x-th 16-row tile) when M has more tiles than the GPU holds at once; 0 =
 * one block per tile. Not thread-safe; returns BD_ERR_BAD_SHAPE for other values. */
int bd_debug_set_decode_persistent(int persistent);

/* ====================================================================================================== */
/* Prefill: many rows (tokens) per tenant, rows grouped in segments, tensor cores.                        */
/*   for rows r in segment s (d_seg_offsets[s] <= r < d_seg_offsets[s+1]), t = d_seg_tenant[s]:           */
/*   y[r, m] = (accumulate ? y[r, m] : 0) + (d_W ? sum_k x[r,k] W[m,k] : 0) + a_t[m] * sum_k x[r,k] S_t[m,k] */
/*   t < 0: no delta term. t >= num_tenants: y rows of the segment = NaN. Rows not in any segment: untouched. */
/* ====================================================================================================== */

size_t bd_prefill_workspace_bytes(int64_t M, int64_t K, int64_t R, int64_t num_segments);  /* currently 0 */

/* dtype, y_dtype:    as bd_decode
 * d_W:               dtype [M, K] or NULL. NULL: delta product only (the base product is computed elsewhere,
 *                    e.g. by a dense GEMM, and added through `accumulate`)
 * d_x:               dtype [R, K]
 * d_seg_offsets:     I32 [num_segments + 1], nondecreasing, d_seg_offsets[0] >= 0, last <= R
 * d_seg_tenant:      I32 [num_segments]
 * num_segments:      1 .. 65535
 * d_tenant_signs, d_tenant_scales, num_tenants, scale_per_row: as bd_decode
 * accumulate:        0: y = product;  1: y += product (y is read first, in y_dtype)
 * d_y:               y_dtype [R, M] */
int bd_prefill(int dtype, int y_dtype,
               const void* d_W, const void* d_x, int64_t R,
               const int32_t* d_seg_offsets, const int32_t* d_seg_tenant, int64_t num_segments,
               const uint32_t* const* d_tenant_signs, const float* const* d_tenant_scales, int64_t num_tenants,
               int scale_per_row, int accumulate, void* d_y, int64_t M, int64_t K,
               void* d_workspace, size_t workspace_bytes, cudaStream_t stream);

/* ====================================================================================================== */
/* Compression on the GPU: signs and mean |ft - base| scales, bit-identical to the CPU compressor.        */
/*   d = (float)ft - (float)base  (F32 subtraction, round to nearest);  sign bit = (d >= 0)               */
/*   row_sum[m]   = sum_k |d[m,k]| in double, k = 0, 1, ..., K-1 left to right                            */
/*   row_scale[m] = (float)(row_sum[m] / (double)K)                                                      */
/*   matrix_scale = (float)(T / ((double)M * (double)K)),  T = sum of row_sum[m] in double, m = 0..M-1     */
/* How the GPU matches that sequential order: when every |d| of a row is a multiple of 2^-40 (always for F16   */
/* inputs; for BF16 whenever both inputs are 0 or >= 2^-33 in magnitude), no |d| >= 1024 occurs and the row    */
/* sum stays below 2^13, every partial sum of ANY summation order is a multiple of 2^-40 below 2^53 units, so   */
/* every double addition is exact: the GPU's parallel double sum equals the CPU's left-to-right one bit for     */
/* bit. Rows outside that (or with Inf/NaN) are recomputed by one thread strictly left to right (slow, rare).   */
/* The matrix total T: exact 128-bit integer in units of 2^-40 (atomics); when T < 2^13 the double sum is       */
/* exact; otherwise the float is taken when the whole interval T * (1 +- (M + K + 8) * 2^-53), which contains  */
/* the CPU's rounded left-to-right total, rounds to one float; else one thread sums the row sums in order.      */
/* ====================================================================================================== */

/* Workspace: 64 + (4 * M rounded up to 16) + 8 * M bytes, 16-byte aligned. */
size_t bd_compress_workspace_bytes(int64_t M, int64_t K);

/* dtype:          BD_DTYPE_F16 or BD_DTYPE_BF16: dtype of d_base and d_ft
 * d_base, d_ft:   dtype [M, K]
 * d_signs_packed: U8 [M, ceil(K/8)]  output, host/file layout (bd_repack_signs turns it into device layout)
 * d_row_scales:   F32 [M] output, or NULL
 * d_matrix_scale: F32 [1] output, or NULL
 * d_row_sums:     F64 [M] output (the double row sums above), or NULL
 * d_workspace:    >= bd_compress_workspace_bytes(M, K) bytes, 16-byte aligned */
int bd_compress(int dtype, const void* d_base, const void* d_ft, int64_t M, int64_t K,
                uint8_t* d_signs_packed, float* d_row_scales, float* d_matrix_scale, double* d_row_sums,
                void* d_workspace, size_t workspace_bytes, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif /* BITDELTA_CUDA_H */
