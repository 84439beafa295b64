// bd_step_project.cu -- the tensor-core products of 16-bit models in the decoder step (bitdelta_step.h, "TENSOR-CORE
// PATH"): F32 activations are split into 16-bit parts (the base product on f16/bf16 tensor cores) and 24 bit-planes
// of a fixed-point copy (the delta on the binary tensor cores), so that the product keeps about F32's accuracy while
// reading the weights and signs from memory once per step (decode: the 16-row chunks of one m16 tile of W run side by
// side and share it through L2).
//
//   split_kernel<T, SOURCE>   the split form of x (bd_step_split, bd_step_rmsnorm_split; bd_step_swiglu_split: SwiGLU
//                             by bd_step_swiglu, then the split of its output)
//   project_tc_kernel<T, RW, TILES>  decode rows: y (+)= x W^T + a_t (x S_t^T), 8 RW rows and TILES m16 tiles of W per
//                             block (bd_step_project_tc)
//   bd_prefill (bd_prefill.cu) over each 16-bit part, then unscale_kernel: prefill chunks (bd_step_project_prefill)
//   project_vector_kernel<T>  decode steps of one or two rows, straight from F32 x (bd_step_project_vector): SIMT, W
//                             streamed in 16-byte loads; no split form
//
// Accuracy, per output y[r, m] (x = x_r, s = the row's power-of-two scale, K inputs):
//   base: x s = hi + lo (F16: |x s| < 2^15, each part rounded to F16, |x s - hi - lo| <= 2^-11 |lo| <= 2^-22 |x s|,
//         plus F16's subnormal step 2^-24 << 2^-38 max|x s|) or hi + mid + lo (BF16, the same to 2^-25 |x s|).
//         Products of 16-bit values are exact; each k256 stage's two mma per part start from zero and are added to an
//         F32 accumulator with round-to-nearest, so the tensor cores' truncating accumulation acts on 32 products at a
//         time, not on a whole row of K.
//   delta: q_k = rint(x_k s 2^8), |q_k| < 2^23 (24-bit two's complement, 24 bit-planes): |x_k - q_k / (s 2^8)| <=
//         2^-9 / s <= 2^-23 max|x|; S . q is exact (integer popcounts).
// Each is about F32 rounding (2^-24 relative per element); the phase-1 SIMT product is exact per product and differs
// from the CPU only by summation order.
#include "bd_step_common.cuh"
#include "bd_tile.cuh"

namespace bd {
namespace step {

constexpr int SPLIT_THREADS = 256;
constexpr int SPLIT_BLOCKS_PER_ROW = 8;  // each block of a row splits (and with planes quantizes) 1/8 of its k256 blocks
constexpr int PLANE_WORDS_PER_K256 = 192;  // 3 groups of 8 planes x 32 lanes x 2 registers
constexpr int Q_MAX = (1 << 23) - 1;
constexpr int VECTOR_ROWS = BD_STEP_VECTOR_ROWS;  // decode rows up to this take project_vector_kernel
constexpr int VECTOR_WARPS = 8;                    // 4 groups of 4 rows of M x 2 halves of each step of columns
constexpr int VECTOR_STEP = 1024;                  // columns per iteration: 2 halves x 2 chunks x 32 lanes x 8

template <typename T> struct Split;
template <> struct Split<__half> { static constexpr int PARTS = 2; };
template <> struct Split<__nv_bfloat16> { static constexpr int PARTS = 3; };

inline int split_parts(int dtype) { return dtype == BD_DTYPE_BF16 ? 3 : 2; }

// Byte offsets of the pieces of a split buffer (bitdelta_step.h: bd_step_split_bytes).
struct SplitLayout {
  int64_t parts, planes, rscale, qsum, total;
};
__host__ __device__ inline int64_t up256(int64_t bytes) { return (bytes + 255) / 256 * 256; }
__host__ __device__ inline SplitLayout split_layout(int64_t capacity, int64_t K, int parts) {
  SplitLayout l;
  l.parts = 0;
  l.planes = up256(int64_t(parts) * capacity * K * 2);
  l.rscale = l.planes + up256(capacity * ((K + 255) / 256) * PLANE_WORDS_PER_K256 * 4);
  l.qsum = l.rscale + up256(capacity * 4);
  l.total = l.qsum + up256(capacity * SPLIT_BLOCKS_PER_ROW * 8);
  return l;
}

// s = 2^(15 - e) for max in [2^(e-1), 2^e): max * s in [2^14, 2^15). 1 for a row of zeros or with Inf/NaN.
__device__ __forceinline__ float split_scale(float row_max) {
  if (!(row_max > 0.f) || !isfinite(row_max)) return 1.f;
  int e;
  frexpf(row_max, &e);
  const int shift = max(-126, min(126, 15 - e));
  return ldexpf(1.f, shift);
}

enum SplitSource { SOURCE_COPY = 0, SOURCE_RMSNORM = 1 };

// The value x_k of row r that the split form holds: the row itself (COPY) or its RMSNorm with the row's tenant's
// weight (computed exactly as rmsnorm_kernel).
template <int SOURCE>
struct SourceRow {
  const float* in;      // F32 [*, K] row r
  const float* weight;  // RMSNORM: F32 [K]
  float inverse;        // RMSNORM: 1 / rms
  __device__ __forceinline__ float operator()(int64_t k) const {
    if (SOURCE == SOURCE_COPY) return in[k];
    return __fmul_rn(weight[k], __fmul_rn(in[k], inverse));
  }
};

// Grid (launch_rows, blocks_per_row), SPLIT_THREADS threads; with planes, ceil(K256 / 8) KB of dynamic shared memory.
// Block (r, part): the whole row's max |x| (every block of the row computes the same value), then for its part of the
// row -- k256 blocks [K256 * part / blocks, K256 * (part + 1) / blocks) -- the F32 output (RMSNORM), the
// 16-bit parts (zero past K only inside the row's part buffers: parts are [PARTS][capacity][K], dense), and with
// planes the quantized values, their sum, and the 24 bit-planes as mma.m16n8k256.b1 B fragments (warp votes, as
// xplanes_kernel of bd_decode3.cuh does for 16 planes).
template <typename T, int SOURCE>
__global__ void __launch_bounds__(SPLIT_THREADS) split_kernel(
    const int32_t* __restrict__ active,               // I32 [1]
    const int32_t* __restrict__ slots,                // RMSNORM: I32 [launch_rows]
    const float* const* __restrict__ weight_of_slot,  // RMSNORM: [slots] -> F32 [K]
    float eps,                                        // RMSNORM
    const float* __restrict__ in,                     // F32 [launch_rows, K]
    float* __restrict__ out,                          // RMSNORM: F32 [launch_rows, K]; COPY: unused
    int64_t K, int planes,
    unsigned char* __restrict__ split, int64_t capacity) {
  constexpr int PARTS = Split<T>::PARTS;
  extern __shared__ int q_s[];  // [part's k256 blocks * 256] quantized values of this block's part
  __shared__ double partial_sum[SPLIT_THREADS / 32];
  __shared__ float partial_max[SPLIT_THREADS / 32];
  __shared__ long long partial_q[SPLIT_THREADS / 32];
  __shared__ float s_inverse;
  pdl_enter();  // the product launched after this may start its copies (bd_step_common.cuh)
  const int64_t r = blockIdx.x;
  if (r >= *active) return;  // uniform over the block
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int blocks = gridDim.y, part = blockIdx.y;
  const int64_t K256 = (K + 255) / 256;
  const int64_t kb_begin = K256 * part / blocks, kb_end = K256 * (part + 1) / blocks;
  const int64_t k_begin = kb_begin * 256;

  SourceRow<SOURCE> source{in + r * K, nullptr, 0.f};
  if (SOURCE == SOURCE_RMSNORM) {  // rmsnorm_kernel's reduction, operation for operation
    source.weight = weight_of_slot[slots[r]];
    double sum = 0;  // in rmsnorm_kernel's order
    strided_visit(tid, SPLIT_THREADS, K, [&](int64_t k) { return source.in[k]; },
                  [&](int64_t, float v) { sum += double(__fmul_rn(v, v)); });
    sum = warp_sum(sum);
    if (lane == 0) partial_sum[warp] = sum;
    __syncthreads();
    if (tid == 0) {
      double total = 0;
      for (int w = 0; w < SPLIT_THREADS / 32; ++w) total += partial_sum[w];
      const float mean = float(total / double(K));
      s_inverse = float(1.0 / sqrt(double(__fadd_rn(mean, eps))));
    }
    __syncthreads();
    source.inverse = s_inverse;
  }

  float mx = 0.f;
  strided_visit(tid, SPLIT_THREADS, K, [&](int64_t k) { return source(k); }, [&](int64_t, float v) { mx = fmaxf(mx, fabsf(v)); });
  mx = warp_max(mx);
  if (lane == 0) partial_max[warp] = mx;
  __syncthreads();
  mx = partial_max[0];
  for (int w = 1; w < SPLIT_THREADS / 32; ++w) mx = fmaxf(mx, partial_max[w]);
  const float s = split_scale(mx);

  const SplitLayout layout = split_layout(capacity, K, PARTS);
  T* parts = reinterpret_cast<T*>(split + layout.parts);
  long long q_sum = 0;
  for (int64_t k = k_begin + tid; k < kb_end * 256; k += SPLIT_THREADS) {
    int q = 0;
    if (k < K) {
      const float v = source(k);
      if (SOURCE != SOURCE_COPY) out[r * K + k] = v;
      const float y = __fmul_rn(v, s);  // exact: s is a power of two
      const T hi = Dtype<T>::from_float(y);
      const float r1 = __fsub_rn(y, Dtype<T>::to_float(hi));  // exact
      const T second = Dtype<T>::from_float(r1);
      parts[(0 * capacity + r) * K + k] = hi;
      parts[(1 * capacity + r) * K + k] = second;
      if (PARTS == 3) {
        const float r2 = __fsub_rn(r1, Dtype<T>::to_float(second));  // exact
        parts[(2 * capacity + r) * K + k] = Dtype<T>::from_float(r2);
      }
      q = max(-Q_MAX, min(Q_MAX, __float2int_rn(__fmul_rn(y, 256.f))));
    }
    if (planes) {
      q_s[k - k_begin] = q;
      q_sum += q;
    }
  }
  if (!planes) {
    if (part == 0 && tid == 0) reinterpret_cast<float*>(split + layout.rscale)[r] = 1.f / s;
    return;
  }
  q_sum = warp_sum(q_sum);
  if (lane == 0) partial_q[warp] = q_sum;
  __syncthreads();
  uint32_t* out_planes = reinterpret_cast<uint32_t*>(split + layout.planes) + r * K256 * PLANE_WORDS_PER_K256;
  transpose_planes<24, SPLIT_THREADS / 32>(q_s, k_begin, kb_begin, kb_end, warp, lane, out_planes);
  if (tid == 0) {
    long long total = 0;
    for (int w = 0; w < SPLIT_THREADS / 32; ++w) total += partial_q[w];
    reinterpret_cast<long long*>(split + layout.qsum)[r * SPLIT_BLOCKS_PER_ROW + part] = total;
    if (part == 0) reinterpret_cast<float*>(split + layout.rscale)[r] = 1.f / s;
  }
}

// ---- the decode product ----

// Stages of k256. Per m16 tile of W (TILES of them a block): its W tile (16 rows of M) and each row's tenant's four
// k64 sign lines of it; shared by the tiles: each row's 24 planes and its 16-bit parts of x, each part laid out as a W
// tile of ROWS rows (so that the base product's B fragments load as its A fragments do). Stages fill what is left of
// the block's shared memory: TILES = 2 on devices that give a block 227 KB (cc 9.0), TILES = 1 within 99 KB.
template <typename T, int RW, int TILES>
struct TcShape {
  static constexpr int ROWS = 8 * RW, KC = 256, PARTS = Split<T>::PARTS, THREADS = 256 * TILES;
  static constexpr int W_TILE_BYTES = 16 * KC * 2;                  // 8 KB
  static constexpr int S_TILE_BYTES = ROWS * 512;                   // a row's four k64 lines of one tile: 512 B
  static constexpr int PLANE_BYTES = ROWS * PLANE_WORDS_PER_K256 * 4;  // 768 B a row
  static constexpr int PART_BYTES = ROWS * KC * 2;                  // one part of x: 512 B a row
  static constexpr int S_OFFSET = TILES * W_TILE_BYTES;
  static constexpr int PLANE_OFFSET = S_OFFSET + TILES * S_TILE_BYTES;
  static constexpr int PART_OFFSET = PLANE_OFFSET + PLANE_BYTES;
  static constexpr int STAGE_BYTES = PART_OFFSET + PARTS * PART_BYTES;
  // The kernel's static arrays: s_part, s_tenant_scale, s_signs and s_scales.
  static constexpr int STATIC_BYTES = (TILES * 8 * 16 * (ROWS + 1) + TILES * ROWS * 16) * 4 + ROWS * 16;
  static constexpr int BUDGET = (TILES == 2 ? 227 : 99) * 1024 - STATIC_BYTES - 1024;
  static constexpr int STAGES = BUDGET / STAGE_BYTES > 6 ? 6 : BUDGET / STAGE_BYTES;
  static_assert(STAGES >= 3, "project_tc_kernel needs three stages (two in flight)");
  static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES;
  // Stages by dtype (F16 / BF16): RW 1 TILES 1 26 / 30 KB x 3; RW 1 TILES 2 38 / 42 KB x 5; RW 2 TILES 2 60 / 68 KB x 3.
};

// Whether the device gives a block the shared memory of the two-tile shapes (every dtype and RW).
inline bool tc_two_tiles(const DeviceInfo& device) {
  constexpr int need = TcShape<__nv_bfloat16, 2, 2>::SMEM_BYTES + TcShape<__nv_bfloat16, 2, 2>::STATIC_BYTES;
  static_assert(need >= TcShape<__half, 2, 2>::SMEM_BYTES + TcShape<__half, 2, 2>::STATIC_BYTES &&
                    need >= TcShape<__nv_bfloat16, 1, 2>::SMEM_BYTES + TcShape<__nv_bfloat16, 1, 2>::STATIC_BYTES &&
                    need >= TcShape<__half, 1, 2>::SMEM_BYTES + TcShape<__half, 1, 2>::STATIC_BYTES,
                "the BF16 RW 2 shape is the largest");
  return device.smem_optin >= need;
}

// Block (c, mp): rows 8 RW c .. 8 RW c + 8 RW - 1 of the step and the TILES m16 tiles TILES mp .. TILES mp + TILES - 1
// of M, 8 warps per tile, k256 stages of a cp.async pipeline (TcShape). The row chunks are the grid's x so that the
// blocks of one tile run side by side: W comes from DRAM once per tile and from L2 for the tile's other chunks (more
// than 16 rows). The tiles of a block share each stage's planes and parts of x, so x crosses from L2 once per TILES
// tiles. Warp w = 8 tile + v: for its tile, the delta of rows v RW .. v RW + RW - 1 (per row and stage one A fragment
// from the sign lines, three binary mma against its plane groups), and k32 step v of every stage of the base product
// for all rows and parts (A from the W tile, B from the parts). W, the sign lines and the epilogue's tenant scales are
// requested before griddepcontrol.wait, so that they stream while the kernels before still run; the planes, parts,
// scales and y only after it. What is read before the wait (active, slots, the slot tables, W, signs, tenant scales)
// is written only by the uploads before a step's first kernel, never by a step kernel: with every kernel letting the
// next launch at its start, this part may overlap several kernels before.
template <typename T, int RW, int TILES>
__global__ void __launch_bounds__(256 * TILES, 1) project_tc_kernel(
    const int32_t* __restrict__ active,                 // I32 [1] active rows of the step
    const int32_t* __restrict__ slots,                  // I32 [launch_rows]
    const T* __restrict__ W,                            // T [M, K], K % 8 == 0, 16-byte aligned
    const uint32_t* const* __restrict__ signs_of_slot,  // [slots] -> U32 device sign layout [M, K] or NULL
    const float* const* __restrict__ scales_of_slot,    // [slots] -> F32 [M]
    const unsigned char* __restrict__ split,            // split form of x (capacity rows, K)
    int64_t capacity,
    float* __restrict__ y,                              // F32 [launch_rows, M]
    int64_t M, int64_t K, int accumulate) {             // grid (ceil(launch_rows / (8 RW)), ceil(M / (16 TILES))),
                                                        // 256 TILES threads, TcShape::SMEM_BYTES dynamic shared memory
  using Sh = TcShape<T, RW, TILES>;
  constexpr int PARTS = Sh::PARTS, ROWS = Sh::ROWS, KC = Sh::KC, STAGES = Sh::STAGES, STAGE_BYTES = Sh::STAGE_BYTES;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ const uint32_t* s_signs[ROWS];
  __shared__ const float* s_scales[ROWS];
  __shared__ float s_part[TILES][8][16][ROWS + 1];     // each warp's base sums: [tile][warp of the tile][m][row]
  __shared__ float s_tenant_scale[TILES][ROWS][16];    // each row's tenant scales of each tile's 16 outputs

  pdl_launch_dependents();  // the kernel after this one may launch (bd_step_common.cuh)
  const int row0 = int(blockIdx.x) * ROWS;
  const int R = min(ROWS, *active - row0);
  if (R <= 0) {  // uniform: this block's rows are all padding
    pdl_wait();  // every block passes the wait before it returns
    return;
  }
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int tile = warp >> 3, v = warp & 7;  // the warp's tile and its warp within the tile
  const int64_t K64 = (K + 63) / 64, K256 = (K + 255) / 256;
  const int KCH = int(K256);

  if (tid < ROWS) {
    const uint32_t* signs = nullptr;
    const float* scales = nullptr;
    if (tid < R) {
      const int slot = slots[row0 + tid];
      signs = signs_of_slot[slot];
      if (signs != nullptr) scales = scales_of_slot[slot];
    }
    s_signs[tid] = signs;
    s_scales[tid] = scales;
  }
  __syncthreads();

  // Copy roles, fixed for the whole loop: each copy's source is a per-thread base plus kc times its stride, and whether
  // it is inside the matrix is one comparison of kc with a per-thread end (the address arithmetic of a per-stage
  // recomputation was most of the loop's instructions). Thread tid = 256 ct + 32 c_row + c_ch copies 16-byte chunk
  // c_ch (0..31) of rows c_row and c_row + 8 of tile ct's W tile, of tile ct's sign lines of rows c_row + 8 i (i < RW),
  // and of the parts p = ct, ct + TILES, ... of x rows c_row + 8 i; a chunk outside the matrix copies zeros (src-size
  // 0, W as a source that is not read).
  const uint32_t smem0 = smem_u32(smem);
  const int ct = tid >> 8, c_row = (tid >> 5) & 7, c_ch = tid & 31;
  const int64_t m0_copy = (int64_t(blockIdx.y) * TILES + ct) * 16;  // first row of M of tile ct
  const bool tile_ok = m0_copy < M;                                  // a last block's tile past M copies nothing
  const int w_stages = int((K - c_ch * 8 + KC - 1) / KC);  // stages kc < w_stages hold this chunk's columns
  bool w_ok[2];  // row c_row + 8 i: its chunk at w_src + 8 i K + kc KC
#pragma unroll
  for (int i = 0; i < 2; ++i) w_ok[i] = m0_copy + c_row + 8 * i < M;
  const T* w_src = W + (m0_copy + c_row) * K + c_ch * 8;  // dereferenced only where w_ok and kc < w_stages
  const uint32_t chunk_dst = (c_row * KC + swz(c_ch, c_row) * 8) * 2;  // row c_row + 8 i: + 8 i rows (same parity)
  const uint32_t w_dst = ct * Sh::W_TILE_BYTES + chunk_dst;
  const int s_line = c_ch >> 3;  // the k64 line (of four per stage) this chunk belongs to
  const int s_end = int((K64 - s_line + 3) / 4);  // stages kc < s_end hold this line
  bool s_ok[RW];
#pragma unroll
  for (int i = 0; i < RW; ++i) s_ok[i] = tile_ok && s_signs[c_row + 8 * i] != nullptr;  // warp-uniform
  const uint32_t s_off = uint32_t((m0_copy / 16) * K64 * 32 + c_ch * 4);  // words into each row's sign layout (+ 128 kc)
  const uint32_t s_dst = Sh::S_OFFSET + ct * Sh::S_TILE_BYTES + c_row * 512 + c_ch * 16;
  // Planes: chunk c = tid + THREADS j of the stage's ROWS * 48 (row c / 48, chunk c % 48); a row without delta copies
  // zeros (its planes are never read; src-size 0 reads nothing).
  constexpr int PLANE_CHUNKS = ROWS * 48, PLANE_COPIES = (PLANE_CHUNKS + Sh::THREADS - 1) / Sh::THREADS;
  const SplitLayout layout = split_layout(capacity, K, PARTS);
  const uint32_t* planes = reinterpret_cast<const uint32_t*>(split + layout.planes);
  bool p_on[PLANE_COPIES];
  uint32_t p_off[PLANE_COPIES];  // words from `planes` (kc: + 192 kc)
#pragma unroll
  for (int j = 0; j < PLANE_COPIES; ++j) {
    const int c = tid + Sh::THREADS * j, row = c / 48, ch = c - row * 48;
    p_on[j] = c < PLANE_CHUNKS && s_signs[row < ROWS ? row : 0] != nullptr;
    p_off[j] = p_on[j] ? uint32_t((int64_t(row0 + row) * K256) * PLANE_WORDS_PER_K256 + ch * 4) : 0u;
  }
  const uint32_t p_dst = Sh::PLANE_OFFSET + tid * 16;  // chunk c lands at c * 16 (a row's 48 chunks are 768 bytes)
  // Parts: rows past the step's R copy zeros (their outputs are not stored).
  const T* parts = reinterpret_cast<const T*>(split + layout.parts);
  const uint32_t part_stride = uint32_t(capacity * K);  // elements (the split buffer's parts are far below 2^32)
  bool x_ok[RW];
#pragma unroll
  for (int i = 0; i < RW; ++i) x_ok[i] = c_row + 8 * i < R;
  const T* x_src = parts + (int64_t(row0) + c_row) * K + c_ch * 8;  // dereferenced only where x_ok and kc < w_stages
  auto load_ws = [&](uint32_t stage, int kc) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const bool ok = w_ok[i] && kc < w_stages;
      cp16(stage + w_dst + i * 8 * KC * 2, ok ? static_cast<const void*>(w_src + i * 8 * K + kc * KC) : static_cast<const void*>(W), ok);
    }
    const bool line_ok = kc < s_end;
#pragma unroll
    for (int i = 0; i < RW; ++i)  // nothing for a row without delta: its lines are never read
      if (s_ok[i])
        cp16(stage + s_dst + i * 8 * 512, line_ok ? static_cast<const void*>(s_signs[c_row + 8 * i] + (s_off + kc * 128)) : static_cast<const void*>(W), line_ok);
  };
  auto load_x = [&](uint32_t stage, int kc) {  // each row's 48 chunks of planes, and this thread's chunks of the parts
#pragma unroll
    for (int j = 0; j < PLANE_COPIES; ++j)
      if (PLANE_CHUNKS % Sh::THREADS == 0 || tid + Sh::THREADS * j < PLANE_CHUNKS)
        cp16(stage + p_dst + j * (Sh::THREADS * 16), planes + (p_off[j] + kc * PLANE_WORDS_PER_K256), p_on[j]);
#pragma unroll
    for (int p = 0; p < PARTS; ++p) {
      if (p % TILES != ct) continue;
#pragma unroll
      for (int i = 0; i < RW; ++i) {
        const bool ok = x_ok[i] && kc < w_stages;
        cp16(stage + Sh::PART_OFFSET + p * Sh::PART_BYTES + chunk_dst + i * 8 * KC * 2,
             ok ? static_cast<const void*>(x_src + (uint32_t(i * 8 * K) + uint32_t(kc * KC) + p * part_stride)) : static_cast<const void*>(W), ok);
      }
    }
  };

  // The epilogue's tenant scales, requested now into shared memory (registers held through the loop spilled):
  // thread tid < 16 ROWS TILES takes tile tid / (16 ROWS), row (tid / 16) % ROWS, m = its tile's first + tid % 16
  // (read after the loop's barriers).
  if (tid < TILES * ROWS * 16) {
    const int st = tid / (ROWS * 16), sr = (tid >> 4) % ROWS;
    const float* scales = s_scales[sr];
    const int64_t m = (int64_t(blockIdx.y) * TILES + st) * 16 + (tid & 15);
    s_tenant_scale[st][sr][tid & 15] = scales != nullptr && m < M ? __ldg(scales + m) : 0.f;
  }

#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st)
    if (st < KCH) load_ws(smem0 + st * STAGE_BYTES, st);
  pdl_wait();  // the split form of x is complete from here on
#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st) {  // group 0: W and signs of the first stages and stage 0's planes and parts
    if (st < KCH) load_x(smem0 + st * STAGE_BYTES, st);
    cp_async_commit_group();
  }

  // This warp's fragments: k32 step v of each stage; A rows g and g + 8 of its tile, B rows nt * 8 + g of each part.
  const uint32_t frag_off = g * (KC * 2) + swz(v * 4 + t, g) * 16;  // row g + 8: + 8 rows (same parity)
  const uint32_t a_off = tile * Sh::W_TILE_BYTES + frag_off;
  const uint32_t x_off = Sh::PART_OFFSET + frag_off;
  bool row_on[RW];
#pragma unroll
  for (int i = 0; i < RW; ++i) row_on[i] = s_signs[v * RW + i] != nullptr;
  const uint32_t sign_off = Sh::S_OFFSET + tile * Sh::S_TILE_BYTES + v * RW * 512 + lane * 4;
  const uint32_t plane_off = Sh::PLANE_OFFSET + v * RW * (PLANE_WORDS_PER_K256 * 4) + lane * 8;

  float acc_b[RW][4];
  int acc_d[RW][3][4];
#pragma unroll
  for (int i = 0; i < RW; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      acc_b[i][e] = 0.f;
#pragma unroll
      for (int group = 0; group < 3; ++group) acc_d[i][group][e] = 0;
    }

  int st_read = 0, st_write = STAGES - 1;
  for (int kc = 0; kc < KCH; ++kc) {
    cp_async_wait_group<STAGES - 2>();
    __syncthreads();
    if (kc + STAGES - 1 < KCH) {
      const uint32_t stage = smem0 + st_write * STAGE_BYTES;
      load_ws(stage, kc + STAGES - 1);
      load_x(stage, kc + STAGES - 1);
    }
    cp_async_commit_group();
    st_write = st_write + 1 == STAGES ? 0 : st_write + 1;
    const uint32_t stage = smem0 + st_read * STAGE_BYTES;
    st_read = st_read + 1 == STAGES ? 0 : st_read + 1;

    // Delta: binary tensor cores, one k256 step per row and plane group.
#pragma unroll
    for (int i = 0; i < RW; ++i) {
      if (!row_on[i]) continue;  // warp-uniform
      const uint32_t sa = stage + sign_off + i * 512, pa = stage + plane_off + i * (PLANE_WORDS_PER_K256 * 4);
      uint32_t a[4];
      binary_a_fragments(lds32(sa), lds32(sa + 128), lds32(sa + 256), lds32(sa + 384), a);
#pragma unroll
      for (int group = 0; group < 3; ++group) {
        const uint2 b = lds64(pa + group * 256);
        mma_b1(acc_d[i][group], a[0], a[1], a[2], a[3], b.x, b.y);
      }
    }
    // Base: this warp's k32 step; each part's two mma start from zero and are added with round-to-nearest, smallest
    // part first.
    const uint4 a0 = lds128(stage + a_off), a1 = lds128(stage + a_off + 8 * KC * 2);
#pragma unroll
    for (int nt = 0; nt < RW; ++nt) {
      if (nt * 8 >= R) continue;  // warp-uniform
      float sum[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int p = PARTS - 1; p >= 0; --p) {
        const uint4 xf = lds128(stage + x_off + p * Sh::PART_BYTES + nt * 8 * KC * 2);
        float c[4] = {0.f, 0.f, 0.f, 0.f};
        mma16816<T>(c, a0.x, a1.x, a0.y, a1.y, xf.x, xf.y);
        mma16816<T>(c, a0.z, a1.z, a0.w, a1.w, xf.z, xf.w);
#pragma unroll
        for (int e = 0; e < 4; ++e) sum[e] = __fadd_rn(sum[e], c[e]);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) acc_b[nt][e] = __fadd_rn(acc_b[nt][e], sum[e]);
    }
  }
  cp_async_wait_group<0>();

  // Accumulator fragment: c0, c1 -> (m = g, rows 2t, 2t + 1), c2, c3 -> (m = g + 8, ...).
#pragma unroll
  for (int nt = 0; nt < RW; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) s_part[tile][v][g + 8 * (e >> 1)][nt * 8 + 2 * t + (e & 1)] = acc_b[nt][e];
  __syncthreads();
  const int64_t m0 = (int64_t(blockIdx.y) * TILES + tile) * 16;
  if (m0 >= M) return;  // warp-uniform: a last block's tile past M
  const float* rscale = reinterpret_cast<const float*>(split + layout.rscale);
  const long long* qsum = reinterpret_cast<const long long*>(split + layout.qsum);
#pragma unroll
  for (int i = 0; i < RW; ++i) {
    const int r = v * RW + i;
    if (r >= R) continue;  // warp-uniform
    long long part[2] = {0, 0};
    if (row_on[i]) {
      long long q_total = 0;
#pragma unroll
      for (int j = 0; j < SPLIT_BLOCKS_PER_ROW; ++j) q_total += qsum[int64_t(row0 + r) * SPLIT_BLOCKS_PER_ROW + j];
      plane_sums(acc_d[i], q_total, t, part);
    }
    if (t != 0) continue;
    const float inverse = rscale[row0 + r];  // 1 / s, a power of two
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int mm = g + 8 * h;
      const int64_t m = m0 + mm;
      if (m >= M) continue;
      float base = 0.f;
#pragma unroll
      for (int w = 0; w < 8; ++w) base = __fadd_rn(base, s_part[tile][w][mm][r]);  // fixed warp order: deterministic
      float value = __fmul_rn(base, inverse);
      if (row_on[i]) {
        const float delta = __fmul_rn(__ll2float_rn(part[h]), __fmul_rn(inverse, 1.f / 256.f));
        value = __fadd_rn(value, __fmul_rn(s_tenant_scale[tile][r][mm], delta));
      }
      float* target = y + int64_t(row0 + r) * M + m;
      *target = accumulate ? __fadd_rn(*target, value) : value;
    }
  }
}

// ---- prefill: bd_prefill over the parts, then the unscaled sum into y ----

__global__ void __launch_bounds__(256) segment_tenants_kernel(
    const int32_t* __restrict__ segment_slots,          // I32 [segments]
    const uint32_t* const* __restrict__ signs_of_slot,  // [slots] -> U32 or NULL
    int64_t segments,
    int32_t* __restrict__ segment_tenants) {            // I32 [segments]: the slot where it has signs, else -1
  const int64_t s = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= segments) return;
  const int slot = segment_slots[s];
  segment_tenants[s] = signs_of_slot[slot] != nullptr ? slot : -1;
}

// y[r, m] (+)= product[r, m] * rscale[r]; grid (rows, ceil(M / 1024)), 256 threads, 4 columns per thread.
__global__ void __launch_bounds__(256) unscale_kernel(
    const float* __restrict__ product,  // F32 [rows, M]
    const float* __restrict__ rscale,   // F32 [rows]
    float* __restrict__ y,              // F32 [rows, M]
    int64_t M, int accumulate) {
  const int64_t r = blockIdx.x;
  const float inverse = rscale[r];
  for (int u = 0; u < 4; ++u) {
    const int64_t m = int64_t(blockIdx.y) * 1024 + u * 256 + threadIdx.x;
    if (m >= M) return;
    const float value = __fmul_rn(product[r * M + m], inverse);
    float* target = y + r * M + m;
    *target = accumulate ? __fadd_rn(*target, value) : value;
  }
}

// ---- the vector product: decode steps of up to VECTOR_ROWS rows ----

// Block mt: rows 16 mt .. 16 mt + 15 of M (one m16 tile, whose rows' sign bits share words). Warp w: rows
// m_j = 16 mt + 2 (w & 3) + (j & 1) + 8 (j >> 1), j < 4 (sign-layout row g = 2 (w & 3) + (j & 1), half hl = j >> 1:
// rows g and g + 8 take their bits from one word), and of every VECTOR_STEP columns the two 256-column chunks at
// 512 (w >> 2) + 256 u; lane l the 8 columns 8 l of a chunk. W streams in 16-byte loads, the next step's 8 per lane
// requested before the present step is used; W's first step is requested before griddepcontrol.wait, x and y only
// after it. SIMT F32: every product exact, F32 sums (as bd_step_project's, in another order); the delta adds +-x by
// flipping x's sign bit. The two column halves' sums meet in shared memory, added in a fixed order.
template <typename T>
__global__ void __launch_bounds__(VECTOR_WARPS * 32, 2) project_vector_kernel(
    const int32_t* __restrict__ active,                 // I32 [1] active rows (at most VECTOR_ROWS)
    const int32_t* __restrict__ slots,                  // I32 [launch_rows]
    const T* __restrict__ W,                            // T [M, K], K % 8 == 0, 16-byte aligned
    const uint32_t* const* __restrict__ signs_of_slot,  // [slots] -> U32 device sign layout [M, K] or NULL
    const float* const* __restrict__ scales_of_slot,    // [slots] -> F32 [M]
    const float* __restrict__ x,                        // F32 [launch_rows, K], 16-byte aligned
    float* __restrict__ y,                              // F32 [launch_rows, M]
    int64_t M, int64_t K, int accumulate) {             // grid ceil(M / 16), VECTOR_WARPS * 32 threads
  __shared__ float s_base[4][4][VECTOR_ROWS], s_delta[4][4][VECTOR_ROWS];  // the second column half's sums
  pdl_launch_dependents();  // the kernel after this one may launch (bd_step_common.cuh)
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int group = warp & 3, half = warp >> 2;
  const int64_t mt = blockIdx.x;
  bool m_ok[4];
  const T* w_row[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t m = mt * 16 + 2 * group + (j & 1) + 8 * (j >> 1);
    m_ok[j] = m < M;
    w_row[j] = W + (m_ok[j] ? m : 0) * K + 512 * half + 8 * lane;
  }
  auto load_w = [&](uint4 (&w)[2][4], int64_t k0) {
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const bool k_ok = k0 + 512 * half + 256 * u + 8 * lane < K;
#pragma unroll
      for (int j = 0; j < 4; ++j)
        w[u][j] = m_ok[j] && k_ok ? __ldcs(reinterpret_cast<const uint4*>(w_row[j] + k0 + 256 * u)) : make_uint4(0, 0, 0, 0);
    }
  };
  uint4 w_next[2][4];
  load_w(w_next, 0);
  const int R = min(*active, VECTOR_ROWS);
  const uint32_t* signs[VECTOR_ROWS];
  const float* scales[VECTOR_ROWS];
#pragma unroll
  for (int r = 0; r < VECTOR_ROWS; ++r) {
    const int slot = r < R ? slots[r] : 0;
    signs[r] = r < R ? signs_of_slot[slot] : nullptr;
    scales[r] = signs[r] != nullptr ? scales_of_slot[slot] : nullptr;
  }
  pdl_wait();  // x (and y when accumulating) are complete from here on
  const int64_t K64 = (K + 63) / 64;
  const int s = (lane >> 2) & 1, t = lane & 3;  // the lane's 8 columns: bits q = 8 s + ... of words 4 g + t
  float base[4][VECTOR_ROWS], delta[4][VECTOR_ROWS];
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int r = 0; r < VECTOR_ROWS; ++r) base[j][r] = delta[j][r] = 0.f;

  for (int64_t k0 = 0; k0 < K; k0 += VECTOR_STEP) {
    uint4 w[2][4];
#pragma unroll
    for (int u = 0; u < 2; ++u)
#pragma unroll
      for (int j = 0; j < 4; ++j) w[u][j] = w_next[u][j];
    if (k0 + VECTOR_STEP < K) load_w(w_next, k0 + VECTOR_STEP);
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int64_t k = k0 + 512 * half + 256 * u + 8 * lane;
      if (k >= K) continue;  // K % 8 == 0: a lane's 8 columns are all in or all out
      float wf[4][8];
#pragma unroll
      for (int j = 0; j < 4; ++j) widen8<T>(w[u][j], wf[j]);
#pragma unroll
      for (int r = 0; r < VECTOR_ROWS; ++r) {
        if (r >= R) break;
        float xv[8];
        Chunk8<float>::load(x + r * K + k, xv);
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int e = 0; e < 8; ++e) base[j][r] = fmaf(xv[e], wf[j][e], base[j][r]);
        if (signs[r] == nullptr) continue;
        // Element i = 4 jj + 2 hh + e of the lane's columns, row half hl: bit q = 8 s + (i & 6) + hl at 15 - q (e = 0)
        // or 31 - q (e = 1) of the word of row g (bitdelta_cuda.h; sign_bit). Shifted left by 8 s, then by
        // (e ? 0 : 16) + (i & 6) + hl, the bit lands on bit 31: set means +x.
        const uint32_t* line = signs[r] + (mt * K64 + (k >> 6)) * 32 + 8 * group + t;
        const uint32_t word[2] = {__ldg(line) << (8 * s), __ldg(line + 4) << (8 * s)};
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            const uint32_t flip = ~(word[j & 1] << (((i & 1) ? 0 : 16) + (i & 6) + (j >> 1))) & 0x80000000u;
            delta[j][r] += __uint_as_float(__float_as_uint(xv[i]) ^ flip);
          }
      }
    }
  }
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int r = 0; r < VECTOR_ROWS; ++r) {
      base[j][r] = warp_sum(base[j][r]);
      delta[j][r] = warp_sum(delta[j][r]);
    }
  if (half == 1 && lane == 0)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int r = 0; r < VECTOR_ROWS; ++r) {
        s_base[group][j][r] = base[j][r];
        s_delta[group][j][r] = delta[j][r];
      }
  __syncthreads();
  if (half != 0 || lane != 0) return;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (!m_ok[j]) continue;
    const int64_t m = mt * 16 + 2 * group + (j & 1) + 8 * (j >> 1);
#pragma unroll
    for (int r = 0; r < VECTOR_ROWS; ++r) {
      if (r >= R) break;
      float value = __fadd_rn(base[j][r], s_base[group][j][r]);
      if (signs[r] != nullptr)
        value = __fadd_rn(value, __fmul_rn(__ldg(scales[r] + m), __fadd_rn(delta[j][r], s_delta[group][j][r])));
      float* target = y + r * M + m;
      *target = accumulate ? __fadd_rn(*target, value) : value;
    }
  }
}

// ---- launches ----

static int g_pdl = 1;  // bd_step_set_pdl
static int g_tc_one_tile = 0;  // bd_step_set_tc_tiles

bool pdl_enabled() {
  if (!g_pdl) return false;
  DeviceInfo device;
  return device_info(&device) == cudaSuccess && device.major >= 9;
}

inline int split_smem_bytes(int64_t K, bool planes) {
  return planes ? int(((K + 255) / 256 + SPLIT_BLOCKS_PER_ROW - 1) / SPLIT_BLOCKS_PER_ROW * 256 * 4) : 0;
}

template <typename T, int SOURCE>
static cudaError_t launch_split_typed(const int32_t* active, int64_t launch_rows, const int32_t* slots,
                                      const float* const* weight_of_slot, float eps, const float* in, float* out, int64_t K,
                                      int planes, unsigned char* split, int64_t capacity, cudaStream_t stream) {
  // 8 blocks a row with or without planes: one block a row left each thread a chain of K / 256 loads and stores.
  const dim3 grid(unsigned(launch_rows), SPLIT_BLOCKS_PER_ROW);
  return launch_step(split_kernel<T, SOURCE>, grid, dim3(SPLIT_THREADS), split_smem_bytes(K, planes), stream, active, slots,
                     weight_of_slot, eps, in, out, K, planes, split, capacity);
}

template <int SOURCE>
static int check_split(const char* what, const int32_t* active, int64_t launch_rows, const int32_t* slots,
                       const float* const* weight_of_slot, const float* in, const float* out, int64_t K, int dtype, int planes,
                       const void* split, int64_t capacity) {
  if (!active || !in || !split || (SOURCE != SOURCE_COPY && !out) || (SOURCE == SOURCE_RMSNORM && (!slots || !weight_of_slot)))
    return refuse(BD_ERR_NULL_POINTER, "%s: a required pointer is NULL", what);
  if (dtype != BD_DTYPE_F16 && dtype != BD_DTYPE_BF16) return refuse(BD_ERR_BAD_DTYPE, "%s: dtype code %d (F16 or BF16)", what, dtype);
  if (launch_rows <= 0 || launch_rows > capacity || launch_rows > MAX_GRID_X || K <= 0 || K % 8 != 0 || K > BD_STEP_TC_MAX_K ||
      (planes != 0 && planes != 1))
    return refuse(BD_ERR_BAD_SHAPE, "%s: launch_rows %lld, capacity %lld, K %lld (a multiple of 8 up to %d), planes %d", what,
                  (long long)launch_rows, (long long)capacity, (long long)K, BD_STEP_TC_MAX_K, planes);
  if (static_cast<const void*>(in) == static_cast<const void*>(out))
    return refuse(BD_ERR_BAD_SHAPE, "%s: in and out alias", what);
  return BD_OK;
}

// The launch of checked arguments (check_split).
template <int SOURCE>
static int launch_split(const char* what, const int32_t* active, int64_t launch_rows, const int32_t* slots,
                        const float* const* weight_of_slot, float eps, const float* in, float* out, int64_t K, int dtype,
                        int planes, void* split, int64_t capacity, cudaStream_t stream) {
  unsigned char* bytes = static_cast<unsigned char*>(split);
  const cudaError_t e = dtype == BD_DTYPE_F16
      ? launch_split_typed<__half, SOURCE>(active, launch_rows, slots, weight_of_slot, eps, in, out, K, planes, bytes, capacity, stream)
      : launch_split_typed<__nv_bfloat16, SOURCE>(active, launch_rows, slots, weight_of_slot, eps, in, out, K, planes, bytes, capacity,
                                                  stream);
  if (e != cudaSuccess)
    return fail(e, "%s: split_kernel<dtype %d, source %d><<<(%lld, %d), %d, %d>>> (K %lld)", what, dtype, SOURCE,
                (long long)launch_rows, SPLIT_BLOCKS_PER_ROW, SPLIT_THREADS, split_smem_bytes(K, planes), (long long)K);
  return BD_OK;
}

template <int SOURCE>
static int run_split(const char* what, const int32_t* active, int64_t launch_rows, const int32_t* slots,
                     const float* const* weight_of_slot, float eps, const float* in, float* out, int64_t K, int dtype,
                     int planes, void* split, int64_t capacity, cudaStream_t stream) {
  const int status = check_split<SOURCE>(what, active, launch_rows, slots, weight_of_slot, in, out, K, dtype, planes, split, capacity);
  return status != BD_OK ? status
      : launch_split<SOURCE>(what, active, launch_rows, slots, weight_of_slot, eps, in, out, K, dtype, planes, split, capacity, stream);
}

// The shape of a project_tc launch: two tiles a block where the device gives a block their shared memory
// (tc_two_tiles), 16 rows a block past 8 rows there; else one tile and 8 rows a block.
struct TcLaunch {
  int rw, tiles, smem;
  dim3 grid, block;
};
template <typename T>
static TcLaunch tc_launch(const DeviceInfo& device, int64_t launch_rows, int64_t M) {
  TcLaunch l;
  l.tiles = tc_two_tiles(device) && !g_tc_one_tile ? 2 : 1;
  l.rw = l.tiles == 2 && launch_rows > 8 ? 2 : 1;
  l.smem = l.tiles == 1 ? TcShape<T, 1, 1>::SMEM_BYTES : l.rw == 1 ? TcShape<T, 1, 2>::SMEM_BYTES : TcShape<T, 2, 2>::SMEM_BYTES;
  l.grid = dim3(unsigned((launch_rows + 8 * l.rw - 1) / (8 * l.rw)), unsigned((M + 16 * l.tiles - 1) / (16 * l.tiles)));
  l.block = dim3(256 * l.tiles);
  return l;
}

template <typename T>
static cudaError_t project_tc_rows(const TcLaunch& l, const int32_t* active, const int32_t* slots, const T* W,
                                   const uint32_t* const* signs, const float* const* scales, const unsigned char* split,
                                   int64_t capacity, float* y, int64_t M, int64_t K, int accumulate, cudaStream_t stream) {
  auto launch = [&](auto kernel) {
    return launch_step(kernel, l.grid, l.block, l.smem, stream, active, slots, W, signs, scales, split, capacity, y, M, K, accumulate);
  };
  return l.tiles == 1 ? launch(project_tc_kernel<T, 1, 1>)
      : l.rw == 1     ? launch(project_tc_kernel<T, 1, 2>)
                      : launch(project_tc_kernel<T, 2, 2>);
}

template <typename T>
static cudaError_t launch_project_vector(const int32_t* active, const int32_t* slots, const T* W, const uint32_t* const* signs,
                                         const float* const* scales, const float* x, float* y, int64_t M, int64_t K,
                                         int accumulate, cudaStream_t stream) {
  return launch_step(project_vector_kernel<T>, dim3(unsigned((M + 15) / 16)), dim3(VECTOR_WARPS * 32), 0, stream, active,
                     slots, W, signs, scales, x, y, M, K, accumulate);
}

}  // namespace step
}  // namespace bd

using namespace bd::step;

extern "C" {

size_t bd_step_split_bytes(int64_t capacity, int64_t K, int dtype) {
  if (capacity <= 0 || K <= 0 || (dtype != BD_DTYPE_F16 && dtype != BD_DTYPE_BF16)) return 0;
  return size_t(split_layout(capacity, K, split_parts(dtype)).total);
}

int bd_step_split(const int32_t* d_active, int64_t launch_rows, const float* d_x, int64_t K, int dtype, int planes,
                  void* d_split, int64_t capacity, cudaStream_t stream) {
  return run_split<SOURCE_COPY>("bd_step_split", d_active, launch_rows, nullptr, nullptr, 0.f, d_x, nullptr, K, dtype, planes,
                                d_split, capacity, stream);
}

int bd_step_rmsnorm_split(const int32_t* d_active, int64_t launch_rows, const int32_t* d_slots,
                          const float* const* d_weight_of_slot, const float* d_in, float* d_out, int64_t hidden, float eps,
                          int dtype, int planes, void* d_split, int64_t capacity, cudaStream_t stream) {
  return run_split<SOURCE_RMSNORM>("bd_step_rmsnorm_split", d_active, launch_rows, d_slots, d_weight_of_slot, eps, d_in, d_out,
                                   hidden, dtype, planes, d_split, capacity, stream);
}

int bd_step_swiglu_split(const int32_t* d_active, int64_t launch_rows, const float* d_gate_up, float* d_out,
                         int64_t intermediate, int dtype, int planes, void* d_split, int64_t capacity, cudaStream_t stream) {
  // SwiGLU over (rows, I / 256) blocks, then the split of its output: computed inside the split (8 blocks a row, each
  // the whole row for the max) it took 28 us a row at I = 11008 on an H100.
  int status = d_out == nullptr ? refuse(BD_ERR_NULL_POINTER, "bd_step_swiglu_split: a required pointer is NULL")
      : check_split<SOURCE_COPY>("bd_step_swiglu_split", d_active, launch_rows, nullptr, nullptr, d_gate_up, d_out, intermediate,
                                 dtype, planes, d_split, capacity);
  if (status == BD_OK) status = bd_step_swiglu(d_active, launch_rows, d_gate_up, d_out, intermediate, stream);
  if (status != BD_OK) return status;
  return launch_split<SOURCE_COPY>("bd_step_swiglu_split", d_active, launch_rows, nullptr, nullptr, 0.f, d_out, nullptr, intermediate,
                                   dtype, planes, d_split, capacity, stream);
}

int bd_step_project_tc(const int32_t* d_active, int64_t launch_rows, const int32_t* d_slots, int dtype, const void* d_W,
                       const uint32_t* const* d_signs_of_slot, const float* const* d_scales_of_slot, const void* d_split,
                       int64_t capacity, float* d_y, int64_t M, int64_t K, int accumulate, cudaStream_t stream) {
  if (!d_active || !d_slots || !d_W || !d_signs_of_slot || !d_scales_of_slot || !d_split || !d_y)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_project_tc: a required pointer is NULL");
  if (dtype != BD_DTYPE_F16 && dtype != BD_DTYPE_BF16)
    return refuse(BD_ERR_BAD_DTYPE, "bd_step_project_tc: weight dtype code %d (F16 or BF16)", dtype);
  if (launch_rows <= 0 || launch_rows > capacity || launch_rows > 0x7fffffff || M <= 0 || K <= 0 || K % 8 != 0 ||
      K > BD_STEP_TC_MAX_K || (M + 15) / 16 > MAX_GRID_YZ)
    return refuse(BD_ERR_BAD_SHAPE,
                  "bd_step_project_tc: W [%lld, %lld] (M up to %lld, K a multiple of 8 up to %d), launch_rows %lld, capacity %lld",
                  (long long)M, (long long)K, (long long)(MAX_GRID_YZ * 16), BD_STEP_TC_MAX_K, (long long)launch_rows,
                  (long long)capacity);
  // project_tc_kernel addresses the split form's parts and planes by 32-bit element and word offsets.
  const int64_t part_elements = int64_t(split_parts(dtype)) * capacity * K;
  const int64_t plane_words = capacity * ((K + 255) / 256) * PLANE_WORDS_PER_K256;
  if (part_elements > int64_t(UINT32_MAX) || plane_words > int64_t(UINT32_MAX))
    return refuse(BD_ERR_BAD_SHAPE,
                  "bd_step_project_tc: a split form of capacity %lld rows and K %lld holds %lld 16-bit elements and %lld plane words "
                  "(at most 2^32 - 1 each): fewer rows per step",
                  (long long)capacity, (long long)K, (long long)part_elements, (long long)plane_words);
  if (!bd::aligned16(d_W)) return refuse(BD_ERR_MISALIGNED, "bd_step_project_tc: W is not 16-byte aligned");
  bd::DeviceInfo device;
  cudaError_t e = bd::device_info(&device);
  if (e != cudaSuccess) return fail(e, "bd_step_project_tc: querying the device");
  const unsigned char* split = static_cast<const unsigned char*>(d_split);
  const TcLaunch l = dtype == BD_DTYPE_F16 ? tc_launch<__half>(device, launch_rows, M) : tc_launch<__nv_bfloat16>(device, launch_rows, M);
  e = dtype == BD_DTYPE_F16
      ? project_tc_rows<__half>(l, d_active, d_slots, static_cast<const __half*>(d_W), d_signs_of_slot, d_scales_of_slot, split,
                                capacity, d_y, M, K, accumulate, stream)
      : project_tc_rows<__nv_bfloat16>(l, d_active, d_slots, static_cast<const __nv_bfloat16*>(d_W), d_signs_of_slot,
                                       d_scales_of_slot, split, capacity, d_y, M, K, accumulate, stream);
  if (e != cudaSuccess)
    return fail(e, "bd_step_project_tc: project_tc_kernel<dtype %d, RW %d, TILES %d><<<(%u, %u), %u, %d>>> (W [%lld, %lld], launch_rows %lld)",
                dtype, l.rw, l.tiles, l.grid.x, l.grid.y, l.block.x, l.smem, (long long)M, (long long)K, (long long)launch_rows);
  return BD_OK;
}

int bd_step_project_vector(const int32_t* d_active, int64_t launch_rows, const int32_t* d_slots, int dtype, const void* d_W,
                           const uint32_t* const* d_signs_of_slot, const float* const* d_scales_of_slot, const float* d_x,
                           float* d_y, int64_t M, int64_t K, int accumulate, cudaStream_t stream) {
  if (!d_active || !d_slots || !d_W || !d_signs_of_slot || !d_scales_of_slot || !d_x || !d_y)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_project_vector: a required pointer is NULL");
  if (dtype != BD_DTYPE_F16 && dtype != BD_DTYPE_BF16)
    return refuse(BD_ERR_BAD_DTYPE, "bd_step_project_vector: weight dtype code %d (F16 or BF16)", dtype);
  if (launch_rows <= 0 || launch_rows > BD_STEP_VECTOR_ROWS || M <= 0 || K <= 0 || K % 8 != 0 || (M + 15) / 16 > MAX_GRID_X)
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_project_vector: W [%lld, %lld] (K a multiple of 8), launch_rows %lld (1 .. %d)",
                  (long long)M, (long long)K, (long long)launch_rows, BD_STEP_VECTOR_ROWS);
  if (!bd::aligned16(d_W) || !bd::aligned16(d_x))
    return refuse(BD_ERR_MISALIGNED, "bd_step_project_vector: W or x is not 16-byte aligned");
  if (static_cast<const void*>(d_x) == static_cast<const void*>(d_y))
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_project_vector: x and y alias (W [%lld, %lld])", (long long)M, (long long)K);
  const cudaError_t e = dtype == BD_DTYPE_F16
      ? launch_project_vector<__half>(d_active, d_slots, static_cast<const __half*>(d_W), d_signs_of_slot, d_scales_of_slot, d_x, d_y,
                                      M, K, accumulate, stream)
      : launch_project_vector<__nv_bfloat16>(d_active, d_slots, static_cast<const __nv_bfloat16*>(d_W), d_signs_of_slot,
                                             d_scales_of_slot, d_x, d_y, M, K, accumulate, stream);
  if (e != cudaSuccess)
    return fail(e, "bd_step_project_vector: project_vector_kernel<dtype %d><<<%lld, %d>>> (W [%lld, %lld], launch_rows %lld)", dtype,
                (long long)((M + 15) / 16), VECTOR_WARPS * 32, (long long)M, (long long)K, (long long)launch_rows);
  return BD_OK;
}

size_t bd_step_project_prefill_workspace_bytes(int64_t rows, int64_t segments, int64_t M) {
  if (rows <= 0 || segments <= 0 || M <= 0) return 0;
  return size_t(up256(4 * segments) + up256(4 * rows * M));
}

int bd_step_project_prefill(int64_t rows, const int32_t* d_segment_offsets, const int32_t* d_segment_slots, int64_t segments,
                            int dtype, const void* d_W, const uint32_t* const* d_signs_of_slot,
                            const float* const* d_scales_of_slot, int64_t slots, const void* d_split, int64_t capacity,
                            float* d_y, int64_t M, int64_t K, int accumulate, void* d_workspace, size_t workspace_bytes,
                            cudaStream_t stream) {
  if (!d_segment_offsets || !d_segment_slots || !d_W || !d_signs_of_slot || !d_scales_of_slot || !d_split || !d_y || !d_workspace)
    return refuse(BD_ERR_NULL_POINTER, "bd_step_project_prefill: a required pointer is NULL");
  if (dtype != BD_DTYPE_F16 && dtype != BD_DTYPE_BF16)
    return refuse(BD_ERR_BAD_DTYPE, "bd_step_project_prefill: weight dtype code %d (F16 or BF16)", dtype);
  if (rows <= 0 || rows > capacity || rows > 65535 || segments <= 0 || segments > 65535 || slots <= 0 || M <= 0 ||
      M >= (int64_t(1) << 31) || K <= 0 || K % 8 != 0 || K > BD_STEP_TC_MAX_K)
    return refuse(BD_ERR_BAD_SHAPE, "bd_step_project_prefill: W [%lld, %lld], rows %lld (capacity %lld), segments %lld, slots %lld",
                  (long long)M, (long long)K, (long long)rows, (long long)capacity, (long long)segments, (long long)slots);
  if (workspace_bytes < bd_step_project_prefill_workspace_bytes(rows, segments, M) || (reinterpret_cast<uintptr_t>(d_workspace) & 255))
    return refuse(BD_ERR_WORKSPACE, "bd_step_project_prefill: workspace of %zu bytes, %zu needed (256-byte aligned)", workspace_bytes,
                  bd_step_project_prefill_workspace_bytes(rows, segments, M));
  int32_t* tenants = static_cast<int32_t*>(d_workspace);
  float* product = reinterpret_cast<float*>(static_cast<unsigned char*>(d_workspace) + up256(4 * segments));
  segment_tenants_kernel<<<unsigned((segments + 255) / 256), 256, 0, stream>>>(d_segment_slots, d_signs_of_slot, segments, tenants);
  BD_STEP_CHECK_LAUNCH("bd_step_project_prefill: segment_tenants_kernel (%lld segments)", (long long)segments);
  const int parts = split_parts(dtype);
  const SplitLayout layout = split_layout(capacity, K, parts);
  for (int p = 0; p < parts; ++p) {
    const void* x = static_cast<const unsigned char*>(d_split) + layout.parts + int64_t(p) * capacity * K * 2;
    const int status = bd_prefill(dtype, BD_DTYPE_F32, d_W, x, rows, d_segment_offsets, tenants, segments, d_signs_of_slot,
                                  d_scales_of_slot, slots, BD_SCALE_PER_ROW, p > 0, product, M, K, nullptr, 0, stream);
    if (status != BD_OK)
      return refuse(status, "bd_step_project_prefill: bd_prefill of part %d (W [%lld, %lld], %lld rows, %lld segments): %s%s%s", p,
                    (long long)M, (long long)K, (long long)rows, (long long)segments, bd_status_string(status),
                    status == BD_ERR_CUDA ? ": " : "", status == BD_ERR_CUDA ? bd_last_cuda_error() : "");
  }
  const float* rscale = reinterpret_cast<const float*>(static_cast<const unsigned char*>(d_split) + layout.rscale);
  unscale_kernel<<<dim3(unsigned(rows), unsigned((M + 1023) / 1024)), 256, 0, stream>>>(product, rscale, d_y, M, accumulate);
  BD_STEP_CHECK_LAUNCH("bd_step_project_prefill: unscale_kernel<<<(%lld, %lld), 256>>>", (long long)rows, (long long)((M + 1023) / 1024));
  return BD_OK;
}

int bd_step_set_tc_tiles(int tiles) {
  if (tiles != 0 && tiles != 1) return refuse(BD_ERR_BAD_SHAPE, "bd_step_set_tc_tiles: %d (0: the device's form, 1: one tile)", tiles);
  g_tc_one_tile = tiles;
  return BD_OK;
}

int bd_step_set_pdl(int enabled) {
  if (enabled != 0 && enabled != 1) return refuse(BD_ERR_BAD_SHAPE, "bd_step_set_pdl: %d (0 or 1)", enabled);
  g_pdl = enabled;
  return BD_OK;
}

}  // extern "C"

namespace bd {
namespace step {

// Raises the dynamic shared-memory limits of this file's kernels on the current device (bd_step_prepare).
cudaError_t prepare_project_kernels() {
  cudaError_t e = cudaSuccess;
  auto raise = [&](auto kernel, int bytes) {
    if (e == cudaSuccess) e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  };
  raise(project_tc_kernel<__half, 1, 1>, TcShape<__half, 1, 1>::SMEM_BYTES);
  raise(project_tc_kernel<__nv_bfloat16, 1, 1>, TcShape<__nv_bfloat16, 1, 1>::SMEM_BYTES);
  DeviceInfo device;
  if (e == cudaSuccess) e = device_info(&device);
  if (e == cudaSuccess && tc_two_tiles(device)) {  // the two-tile forms only where a block may have their shared memory
    raise(project_tc_kernel<__half, 1, 2>, TcShape<__half, 1, 2>::SMEM_BYTES);
    raise(project_tc_kernel<__half, 2, 2>, TcShape<__half, 2, 2>::SMEM_BYTES);
    raise(project_tc_kernel<__nv_bfloat16, 1, 2>, TcShape<__nv_bfloat16, 1, 2>::SMEM_BYTES);
    raise(project_tc_kernel<__nv_bfloat16, 2, 2>, TcShape<__nv_bfloat16, 2, 2>::SMEM_BYTES);
  }
  return e;
}

}  // namespace step
}  // namespace bd
