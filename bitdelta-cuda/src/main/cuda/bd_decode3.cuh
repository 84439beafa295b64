// bd_decode3.cuh -- decode version 3 (included by bd_decode.cuh): the delta product on the BINARY tensor cores.
//
// Why: in decode every sign is used exactly once, so expanding signs to ±1 half2 pairs costs two ALU
// instructions per two weights -- at 32 tenants more issue slots than the memory floor allows. Instead:
//   1. Pre-pass (xplanes_kernel, once per call, 8 blocks per row, one per part of it): each row x_r is quantized to 16-bit two's-complement fixed
//      point relative to its largest magnitude, q = rint(x * 32767 / max|x_r|), and cut into 16 bit-planes.
//      The planes are written to the workspace directly as mma.m16n8k256.b1 B fragments (the 8 columns of a
//      fragment are 8 planes of the SAME row, so every column of the mma is useful), with Q = sum_k q_k.
//   2. S . q = 2 sum_p w_p popc(signbits AND plane_p) - Q,  w_p = 2^p (p < 15), w_15 = -2^15 (since S = 2 b - 1
//      and sum_p w_p popc(plane_p) = sum_k q_k),
//      computed with mma.sync.m16n8k256.row.col.s32.b1.b1.s32.and.popc on the packed sign bits themselves:
//      the A fragment (32 sign bits of one row per register) is two LOP3 + two shifts away from the device
//      layout's words, no per-weight work at all. Integer accumulation: S . q is exact.
//   3. delta = (max|x_r| / 32767) * S . q. The only rounding is the quantization of x: |error| <= 2^-16 * max|x_r|
//      per element, i.e. about 1e-5 * (max|x_r| / rms(x_r)) relative for random signs.
// The base product W x stays on the f16/bf16 tensor cores (HMMA) with F32 accumulation, as in version 2.

namespace bd {

constexpr int XB_WORDS_PER_K256 = 128;  // per row: 2 plane groups x 32 lanes x 2 registers

// Grid (R, XP_PARTS = 8): block (r, part) reads the whole row r to find max|x_r| (every block of the row computes
// the same max, bit for bit), then quantizes only its own part of the row -- k256 blocks [K256 * part / 8,
// K256 * (part + 1) / 8) -- and writes all 16 planes of that part, and the part's sum of q. (Each of the 8 blocks
// quantizing the whole row and writing 2 of the planes, with per-plane popcounts, took 6.1-6.3 us at 32 rows of
// 4096 on an H100, about 1000 instructions per warp.) The decode epilogue needs only Q = sum_k q_k, since
// sum_p w_p popc(plane_p) = sum_k sum_p w_p bit_p(q_k) = sum_k q_k (two's complement). Fast path (VEC: x 16-byte
// aligned, K % 8 == 0, K <= 12288): the row is read once with 16-byte loads, kept in registers.
// Workspace per row: [K256][2 groups][32 lanes][2] U32 B fragments, then (after all rows) F32 scale [R] and
// I64 part sums of q [R][8].
constexpr int XP_PARTS = 8;  // blocks per row
constexpr int XP_NV = 6;     // 16-byte chunks per thread (fast path)
// Shared memory of one block: the largest part, ceil(K256 / 8) k256 blocks of 256 shorts (24 KB at most for the
// K <= 98304 that decode allows, under the 48 KB that needs no opt-in).
inline int xplanes_smem_bytes(int64_t K) { return int(((K + 255) / 256 + XP_PARTS - 1) / XP_PARTS * 512); }
template <typename T, bool VEC>
__global__ void __launch_bounds__(256) xplanes_kernel(
    const T* __restrict__ x,               // T [R, K]            (VEC: 16-byte aligned, K % 8 == 0)
    int64_t K,                             //                     grid (R, XP_PARTS) of 256 threads,
                                           //                     xplanes_smem_bytes(K) dynamic shared memory
    uint32_t* __restrict__ xb,             // U32 [R][K256][128]  B fragments of the 16 bit-planes (output)
    float* __restrict__ row_scale,         // F32 [R]             max|x_r| / 32767 (output)
    long long* __restrict__ q_sums) {      // I64 [R][XP_PARTS]   sums of q over each part (output)
  extern __shared__ __align__(16) short q_s[];  // [xplanes_part_k256(K) * 256] this block's part of the quantized row
  __shared__ float s_max[8];
  __shared__ long long s_sum[8];
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");  // decode3 may start its setup now
#endif
  const int64_t r = blockIdx.x;
  const int part = blockIdx.y;
  const int64_t K256 = (K + 255) / 256;
  const int64_t kb_begin = K256 * part / XP_PARTS, kb_end = K256 * (part + 1) / XP_PARTS;
  const int64_t k_part = kb_begin * 256;  // q_s[k - k_part] holds column k
  const T* xr = x + r * K;
  const bool fast = VEC && K <= 256 * 8 * XP_NV;
  uint4 v[VEC ? XP_NV : 1];
  float mx = 0.f;
  if constexpr (VEC) {
    if (fast) {
#pragma unroll
      for (int i = 0; i < XP_NV; ++i) {
        const int64_t k = int64_t(threadIdx.x + 256 * i) * 8;
        v[i] = k < K ? __ldg(reinterpret_cast<const uint4*>(xr + k)) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int i = 0; i < XP_NV; ++i) {
        const T* e = reinterpret_cast<const T*>(&v[i]);
#pragma unroll
        for (int j = 0; j < 8; ++j) mx = fmaxf(mx, fabsf(Dtype<T>::to_float(e[j])));
      }
    }
  }
  if (!fast)
    for (int64_t k = threadIdx.x; k < K; k += 256) mx = fmaxf(mx, fabsf(Dtype<T>::to_float(xr[k])));
  for (int off = 16; off; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
  if ((threadIdx.x & 31) == 0) s_max[threadIdx.x >> 5] = mx;
  __syncthreads();
  mx = s_max[0];
  for (int i = 1; i < 8; ++i) mx = fmaxf(mx, s_max[i]);
  const float inv = mx > 0.f ? 32767.f / mx : 0.f;
  long long sum = 0;  // this thread's share of the part's sum of q
  if constexpr (VEC) {
    if (fast) {
#pragma unroll
      for (int i = 0; i < XP_NV; ++i) {
        const int64_t k = int64_t(threadIdx.x + 256 * i) * 8;  // 8 columns, never across a k256 boundary
        if (k < kb_begin * 256 || k >= kb_end * 256) continue;
        const T* e = reinterpret_cast<const T*>(&v[i]);
        uint32_t w[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {  // zeros past K (v is 0 there)
          const int lo = max(-32767, min(32767, __float2int_rn(Dtype<T>::to_float(e[2 * j]) * inv)));
          const int hi = max(-32767, min(32767, __float2int_rn(Dtype<T>::to_float(e[2 * j + 1]) * inv)));
          sum += lo + hi;
          w[j] = (uint32_t(lo) & 0xffffu) | (uint32_t(hi) << 16);
        }
        *reinterpret_cast<uint4*>(q_s + (k - k_part)) = make_uint4(w[0], w[1], w[2], w[3]);
      }
    }
  }
  if (!fast) {
    for (int64_t k = kb_begin * 256 + threadIdx.x; k < kb_end * 256; k += 256) {
      int q = 0;
      if (k < K) q = max(-32767, min(32767, __float2int_rn(Dtype<T>::to_float(xr[k]) * inv)));
      sum += q;
      q_s[k - k_part] = short(q);
    }
  }
  for (int off = 16; off; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  if ((threadIdx.x & 31) == 0) s_sum[threadIdx.x >> 5] = sum;
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  transpose_planes<16, 8>(q_s, k_part, kb_begin, kb_end, warp, lane, xb + r * K256 * XB_WORDS_PER_K256);
  if (threadIdx.x == 0) {
    long long total = 0;
    for (int i = 0; i < 8; ++i) total += s_sum[i];
    q_sums[r * XP_PARTS + part] = total;
    if (part == 0) row_scale[r] = mx / 32767.f;
  }
}

// decode3_kernel: a block takes MT m16 tiles (BM = 16*MT rows of M), ROWS = 8*RW rows of x and all of K, 8 warps,
// in k256 stages of a cp.async pipeline:
//   Ws  [BM][256] T               the base tile (16-byte chunks swizzled by row parity, as in version 2)
//   Ss  [ROWS][MT][4][32] U32     each row's tenant's sign words: the device layout's four 128-byte lines
//   XBs [ROWS][128] U32           each row's bit-plane B fragments (the pre-pass's output)
// Warp w owns rows w*RW .. w*RW+RW-1: per row and m16 tile two binary mma per stage (plane groups 0-7, 8-15). The
// base product of n8 tile nt is split over its NW = 8/RW warps by k32 steps; their x fragments come straight from
// global memory (L2-resident), one stage ahead.
template <int RW, int MT>
struct Decode3Shape {
  static constexpr int ROWS = 8 * RW, BM = 16 * MT, KC = 256;
  static constexpr int W_BYTES = BM * KC * 2, X_BYTES = 0, S_BYTES = ROWS * MT * 4 * 128, XB_BYTES = ROWS * 512;
  static constexpr int STAGE_BYTES = W_BYTES + X_BYTES + S_BYTES + XB_BYTES;
  // MT = 1 (16 rows of M): two blocks per SM, up to 96 KB of stages. MT = 2 (experiment build only): one block per
  // SM with up to 200 KB of stages, more than any 8.x GPU gives a block (Hopper only).
  static constexpr int BUDGET = MT == 2 ? 200 * 1024 : 100 * 1024;
  static constexpr int MIN_BLOCKS = MT == 2 ? 1 : 2;
  static constexpr int STAGES = (BUDGET / STAGE_BYTES) < 2 ? 2 : (BUDGET / STAGE_BYTES) > 6 ? 6 : (BUDGET / STAGE_BYTES);
  static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES;
  // 16-byte chunks per stage, per thread (all exact multiples of 256 threads)
  static constexpr int W_CH = BM * 32 / 256, S_CH = ROWS * MT * 32 / 256, XB_CH = ROWS * 32 / 256;
};

template <typename T, typename TY, int RW, int MT, bool VEC>
__global__ void __launch_bounds__(256, Decode3Shape<RW, MT>::MIN_BLOCKS) decode3_kernel(
    const T* __restrict__ W,                       // T [M, K]   (VEC: 16-byte aligned, K % 8 == 0)
    const T* __restrict__ x,                       // T [R, K]   rows of this launch (VEC: 16-byte aligned)
    const int32_t* __restrict__ row_tenant,        // I32 [R]    tenant of each row; < 0: base only
    int R,                                         //            1 .. 8 * RW
    const uint32_t* const* __restrict__ tenant_signs,  // [num_tenants] -> U32 device layout (16-byte aligned)
    const float* const* __restrict__ tenant_scales,    // [num_tenants] -> F32 [1] or [M]
    int num_tenants, int scale_per_row,
    const uint32_t* __restrict__ xb,               // U32 [R][K256][128]  the pre-pass's bit-plane B fragments
    const float* __restrict__ x_scale,             // F32 [R]             max|x_r| / 32767
    const long long* __restrict__ q_sums,          // I64 [R][XP_PARTS]   part sums of the rows' quantized x
    TY* __restrict__ y,                            // TY [R, M]  every element written
    int64_t M, int64_t K) {                        //            grid: ceil(M / (16 * MT)) blocks of 256 threads,
                                                   //            Decode3Shape::SMEM_BYTES dynamic shared memory
  using Sh = Decode3Shape<RW, MT>;
  constexpr int ROWS = Sh::ROWS, BM = Sh::BM, KC = Sh::KC, STAGES = Sh::STAGES;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ const uint32_t* s_signs[ROWS];
  __shared__ int s_tenant[ROWS];
  __shared__ float s_base[BM][ROWS + 1];

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t m0 = int64_t(blockIdx.x) * BM, mt0 = m0 / 16;
  const int64_t K64 = (K + 63) / 64, M16 = (M + 15) / 16, K256 = (K + 255) / 256;
  const int64_t KCH = K256;

  if (threadIdx.x < ROWS) {
    const int r = threadIdx.x;
    const int ten = r < R ? row_tenant[r] : -1;
    s_tenant[r] = ten;
    s_signs[r] = (ten >= 0 && ten < num_tenants) ? tenant_signs[ten] : nullptr;
  }
  __syncthreads();

  // Per-thread copy assignments, fixed across stages (only the k offset moves).
  const T* w_src[Sh::W_CH]; bool w_ok[Sh::W_CH]; int w_dst[Sh::W_CH];
#pragma unroll
  for (int i = 0; i < Sh::W_CH; ++i) {
    const int c = threadIdx.x + i * 256, row = c >> 5, ch = c & 31;
    w_ok[i] = m0 + row < M;
    w_src[i] = W + (w_ok[i] ? (m0 + row) * K : 0) + ch * 8;
    w_dst[i] = (row * KC + swz(ch, row) * 8) * 2;
  }
  const uint32_t* s_src[Sh::S_CH]; bool s_ok[Sh::S_CH]; int s_dst[Sh::S_CH];
#pragma unroll
  for (int i = 0; i < Sh::S_CH; ++i) {
    const int c = threadIdx.x + i * 256;  // (row, mi, kb4, ch8)
    const int row = c / (MT * 32), rem = c % (MT * 32), mi = rem >> 5, kb4 = (rem >> 3) & 3, ch = rem & 7;
    const uint32_t* p = s_signs[row];
    s_ok[i] = p != nullptr && mt0 + mi < M16;
    s_src[i] = s_ok[i] ? p + ((mt0 + mi) * K64 + kb4) * 32 + ch * 4 : nullptr;
    s_dst[i] = Sh::W_BYTES + Sh::X_BYTES + (((row * MT + mi) * 4 + kb4) * 32 + ch * 4) * 4;
  }
  const uint32_t* b_src[Sh::XB_CH]; bool b_ok[Sh::XB_CH]; int b_dst[Sh::XB_CH];
#pragma unroll
  for (int i = 0; i < Sh::XB_CH; ++i) {
    const int c = threadIdx.x + i * 256, row = c >> 5, ch = c & 31;
    b_ok[i] = row < R && s_signs[row] != nullptr;
    b_src[i] = xb + (b_ok[i] ? int64_t(row) * K256 * XB_WORDS_PER_K256 : 0) + ch * 4;
    b_dst[i] = Sh::W_BYTES + Sh::X_BYTES + Sh::S_BYTES + (row * 128 + ch * 4) * 4;
  }

  auto load_stage = [&](int st, int64_t kc) {
    unsigned char* base = smem + st * Sh::STAGE_BYTES;
    const int64_t k0 = kc * KC;
#pragma unroll
    for (int i = 0; i < Sh::W_CH; ++i) {
      const int ch = (threadIdx.x + i * 256) & 31;
      if (VEC) {
        const bool ok = w_ok[i] && k0 + ch * 8 < K;
        cp_async16_zfill(base + w_dst[i], ok ? static_cast<const void*>(w_src[i] + k0) : static_cast<const void*>(W), ok);
      } else {
        unsigned short* d = reinterpret_cast<unsigned short*>(base + w_dst[i]);
        const unsigned short* s = reinterpret_cast<const unsigned short*>(w_src[i] + k0);
#pragma unroll
        for (int j = 0; j < 8; ++j) d[j] = (w_ok[i] && k0 + ch * 8 + j < K) ? __ldg(s + j) : (unsigned short)0;
      }
    }
#pragma unroll
    for (int i = 0; i < Sh::S_CH; ++i) {
      const int kb4 = (((threadIdx.x + i * 256) % (MT * 32)) >> 3) & 3;
      const bool ok = s_ok[i] && kc * 4 + kb4 < K64;
      cp_async16_zfill(base + s_dst[i], ok ? static_cast<const void*>(s_src[i] + kc * 128) : static_cast<const void*>(W), ok);
    }
#pragma unroll
    for (int i = 0; i < Sh::XB_CH; ++i) {
      cp_async16_zfill(base + b_dst[i], b_ok[i] ? static_cast<const void*>(b_src[i] + kc * 128) : static_cast<const void*>(W), b_ok[i]);
    }
  };

  // Base product: the NW = 8/RW warps owning rows of n8 tile nt share its k32 steps (warp wi of the tile takes
  // steps wi, wi + NW, ...) for all MT m16 tiles; partial sums meet in shared memory at the end. The x
  // fragments come straight from global memory (L2-resident, read by every block), one stage ahead.
  constexpr int NW = 8 / RW, KSTEPS = (KC / 32) / NW;
  const int nt = (warp * RW) / 8;
  const int wi = warp - nt * NW;
  const bool do_base = nt * 8 < R;
  const int xrow = nt * 8 + g;
  const bool xrow_ok = xrow < R;
  const T* x_row = x + (xrow_ok ? int64_t(xrow) * K : 0);
  auto load_xfrags = [&](int64_t kc, uint4 (&f)[KSTEPS]) {
#pragma unroll
    for (int j = 0; j < KSTEPS; ++j) {
      const int64_t k = kc * KC + (wi + j * NW) * 32;
      f[j] = load8<VEC>(x_row, k + 8 * t, K, xrow_ok && do_base);
    }
  };
  for (int i = threadIdx.x; i < BM * (ROWS + 1); i += 256) (&s_base[0][0])[i] = 0.f;
  bool row_on[RW];
#pragma unroll
  for (int i = 0; i < RW; ++i) row_on[i] = (warp * RW + i < R) && s_signs[warp * RW + i] != nullptr;

  float acc_b[MT][4];
#pragma unroll
  for (int mi = 0; mi < MT; ++mi)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc_b[mi][e] = 0.f;
  uint4 xf_next[KSTEPS];
  load_xfrags(0, xf_next);
  int acc_d[RW][MT][2][4];
#pragma unroll
  for (int i = 0; i < RW; ++i)
#pragma unroll
    for (int mi = 0; mi < MT; ++mi)
#pragma unroll
      for (int gr = 0; gr < 2; ++gr)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc_d[i][mi][gr][e] = 0;

#if __CUDA_ARCH__ >= 900
  // Launched with programmatic dependent launch after xplanes_kernel: everything above overlapped its tail; the
  // bit-planes (xb, x_scale, q_sums) are read only after this wait (a no-op without the launch attribute).
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
  // The pipeline of pipeline_start / pipeline_next (bd_tile.cuh), written out: through those helpers the experiment
  // build's MT = 2 form compiles to other SASS (its stage addresses are computed differently).
#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st) {
    if (st < KCH) load_stage(st, st);
    cp_async_commit_group();
  }
  for (int64_t kc = 0; kc < KCH; ++kc) {
    cp_async_wait_group<STAGES - 2>();
    __syncthreads();
    {
      const int64_t kn = kc + STAGES - 1;
      if (kn < KCH) load_stage(int(kn % STAGES), kn);
      cp_async_commit_group();
    }
    const unsigned char* base = smem + int(kc % STAGES) * Sh::STAGE_BYTES;
    const T* Ws = reinterpret_cast<const T*>(base);
    uint4 xf[KSTEPS];
#pragma unroll
    for (int j = 0; j < KSTEPS; ++j) xf[j] = xf_next[j];
    if (kc + 1 < KCH) load_xfrags(kc + 1, xf_next);
    const uint32_t* Ss = reinterpret_cast<const uint32_t*>(base + Sh::W_BYTES + Sh::X_BYTES);
    const uint32_t* XBs = reinterpret_cast<const uint32_t*>(base + Sh::W_BYTES + Sh::X_BYTES + Sh::S_BYTES);
    // Delta: binary tensor cores, one k256 step.
#pragma unroll
    for (int i = 0; i < RW; ++i) {
      if (!row_on[i]) continue;  // warp-uniform
      const int row = warp * RW + i;
      const uint2 b_lo = *reinterpret_cast<const uint2*>(XBs + row * 128 + 0 * 64 + lane * 2);
      const uint2 b_hi = *reinterpret_cast<const uint2*>(XBs + row * 128 + 1 * 64 + lane * 2);
#pragma unroll
      for (int mi = 0; mi < MT; ++mi) {
        const uint32_t* sw = Ss + ((row * MT + mi) * 4) * 32 + lane;
        uint32_t a[4];
        binary_a_fragments(sw[0], sw[32], sw[64], sw[96], a);
        mma_b1(acc_d[i][mi][0], a[0], a[1], a[2], a[3], b_lo.x, b_lo.y);
        mma_b1(acc_d[i][mi][1], a[0], a[1], a[2], a[3], b_hi.x, b_hi.y);
      }
    }
    // Base: f16/bf16 tensor cores, this warp's k32 steps of the stage, all m16 tiles.
    if (do_base) {
#pragma unroll
      for (int j = 0; j < KSTEPS; ++j) {
        const int ch = (wi + j * NW) * 4 + t;
#pragma unroll
        for (int mi = 0; mi < MT; ++mi) {
          const int r0 = mi * 16 + g, r1 = r0 + 8;
          const uint4 a0 = *reinterpret_cast<const uint4*>(Ws + r0 * KC + swz(ch, r0) * 8);
          const uint4 a1 = *reinterpret_cast<const uint4*>(Ws + r1 * KC + swz(ch, r1) * 8);
          mma16816<T>(acc_b[mi], a0.x, a1.x, a0.y, a1.y, xf[j].x, xf[j].y);
          mma16816<T>(acc_b[mi], a0.z, a1.z, a0.w, a1.w, xf[j].z, xf[j].w);
        }
      }
    }
  }
  cp_async_wait_group<0>();

  // Partial base sums of the NW warps of each n8 tile, added in a fixed order (deterministic).
  for (int j = 0; j < NW; ++j) {
    if (do_base && wi == j) {
#pragma unroll
      for (int mi = 0; mi < MT; ++mi)
#pragma unroll
        for (int e = 0; e < 4; ++e) s_base[mi * 16 + g + 8 * (e >> 1)][nt * 8 + 2 * t + (e & 1)] += acc_b[mi][e];
    }
    __syncthreads();
  }
  // Combine the 16 plane columns (plane_sums), scale, add the base and write.
#pragma unroll
  for (int i = 0; i < RW; ++i) {
    const int r = warp * RW + i;
    if (r >= R) continue;  // warp-uniform
    const int ten = s_tenant[r];
    long long q_total = 0;
#pragma unroll
    for (int j = 0; j < XP_PARTS; ++j) q_total += row_on[i] ? __ldg(q_sums + r * XP_PARTS + j) : 0ll;
    const float xs = row_on[i] ? __ldg(x_scale + r) : 0.f;
#pragma unroll
    for (int mi = 0; mi < MT; ++mi) {
      long long part[2];
      plane_sums(acc_d[i][mi], q_total, t, part);
      if (t != 0) continue;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int mm = mi * 16 + g + 8 * h;
        const int64_t m = m0 + mm;
        if (m >= M) continue;
        const float v = tenant_output(s_base[mm][r], ten, num_tenants,
                                      [&] { return tenant_scales[ten][scale_per_row ? m : 0]; }, xs * float(part[h]));
        y[int64_t(r) * M + m] = store_cast<TY>(v);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------------
// Version 3, lean form (decode3_lean_kernel; the automatic choice for more than 16 rows when K % 256 == 0 and W,
// x are 16-byte aligned, and from 5 rows up when M also has more than 2 x (SM count) 16-row tiles, with persistent
// blocks up to 16 rows): the data path and arithmetic of decode3_kernel with 16-row blocks (two per SM), written for
// few instructions per stage, and with the block's fixed costs overlapped: W and the first stages' sign lines
// are requested BEFORE griddepcontrol.wait, so they stream while the bit-plane pre-pass still runs (only the
// planes, their sums of q and the x scales depend on it), and the epilogue's operands (tenant scales, sums of q,
// x scales) are copied to shared memory in the prologue instead of being loaded pointer after pointer at the end.
// Why: the SASS of decode3_kernel (RW = 4) has 646 instructions in its k256 stage loop, 16 of them MMAs: under the
// 128-register cap the compiler re-derives every copy's 64-bit source (multiplies), every shared-memory address
// (thread index, CTA window) and every bounds check at each stage. Here every copy source is a running pointer
// advanced once per stage (thread tid copies chunks tid + 256 i, so that a warp's copy instructions stay coalesced;
// giving each thread adjacent chunks of one row instead made 32 rows twice as slow), shared memory is read through
// 32-bit shared-window addresses with constant offsets, and the stage loop has no bounds checks (K % 256 == 0; rows
// past M are fixed per thread).

template <int RW>
struct LeanShape {
  static constexpr int ROWS = 8 * RW, KC = 256;
  static constexpr int W_BYTES = 16 * KC * 2, S_BYTES = ROWS * 512, XB_BYTES = ROWS * 512;
  static constexpr int STAGE_BYTES = W_BYTES + S_BYTES + XB_BYTES;
  static constexpr int FIT = 100 * 1024 / STAGE_BYTES;
  static constexpr int STAGES = FIT < 2 ? 2 : FIT > 6 ? 6 : FIT;
  static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES;
};

// PERSISTENT compiles the tile loop in. Without it (one tile per block) the kernel is the straight form: with the
// loop compiled in but never looping, 32 rows were 1-2.7% slower on an H100.
template <typename T, typename TY, int RW, bool PERSISTENT>
__global__ void __launch_bounds__(256, 2) decode3_lean_kernel(
    const T* __restrict__ W,                       // T [M, K]   16-byte aligned, K % 256 == 0
    const T* __restrict__ x,                       // T [R, K]   16-byte aligned; rows of this launch
    const int32_t* __restrict__ row_tenant,        // I32 [R]    tenant of each row; < 0: base only
    int R,                                         //            1 .. 8 * RW
    const uint32_t* const* __restrict__ tenant_signs,  // [num_tenants] -> U32 device layout (16-byte aligned)
    const float* const* __restrict__ tenant_scales,    // [num_tenants] -> F32 [1] or [M]
    int num_tenants, int scale_per_row,
    const uint32_t* __restrict__ xb,               // U32 [R][K256][128]  the pre-pass's bit-plane B fragments
    const float* __restrict__ x_scale,             // F32 [R]             max|x_r| / 32767
    const long long* __restrict__ q_sums,          // I64 [R][XP_PARTS]   part sums of the rows' quantized x
    TY* __restrict__ y,                            // TY [R, M]  every element written
    int64_t M, int64_t K) {                        //            grid: ceil(M / 16) blocks, or (PERSISTENT) fewer,
                                                   //            256 threads, LeanShape::SMEM_BYTES dynamic smem
  using Sh = LeanShape<RW>;
  constexpr int ROWS = Sh::ROWS, KC = Sh::KC, STAGES = Sh::STAGES;
  constexpr int W_BYTES = Sh::W_BYTES, S_BYTES = Sh::S_BYTES, STAGE_BYTES = Sh::STAGE_BYTES;
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ const uint32_t* s_signs[ROWS];
  __shared__ const float* s_scales[ROWS];
  __shared__ int s_tenant[ROWS];
  __shared__ float s_base[16][ROWS + 1];
  __shared__ float s_scale[ROWS][16];  // a_t[m] (column 0 only for per-matrix scales)
  __shared__ long long s_qsum[ROWS][XP_PARTS];
  __shared__ float s_xscale[ROWS];

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int64_t M16 = (M + 15) / 16, K64 = K / 64, K256 = K / 256;
  const int KCH = int(K256);
  // PERSISTENT: this block's tiles are blockIdx.x + i * gridDim.x, i < tiles; its stages run as one
  // sequence of tiles * KCH (stage j = k256 block j % KCH of tile j / KCH), so that the next tile's copies are in
  // flight while a tile's partial sums meet and are written. (Measured and removed: the opposite, each tile's K split
  // over a cluster of 2-4 blocks with the partial sums meeting in block 0's shared memory, was slower in every cell,
  // e.g. 67.3 -> 78.6 us at 11008x4096 with 8 rows: a block's fixed costs are paid again by every wave of blocks;
  // version 1 made persistent, prefetching the next tile's first lines, was 0.7-3.1 us slower back to back.)
  const int tiles = PERSISTENT ? int((M16 - 1 - blockIdx.x) / gridDim.x + 1) : 1, total = tiles * KCH;

  if (tid < ROWS) {
    const int ten = tid < R ? row_tenant[tid] : -1;
    const bool valid = ten >= 0 && ten < num_tenants;
    s_tenant[tid] = ten;
    s_signs[tid] = valid ? tenant_signs[ten] : nullptr;
    s_scales[tid] = valid ? tenant_scales[ten] : nullptr;
  }
  __syncthreads();

  // Copy roles: thread tid copies chunk (tid & 31) of rows (tid >> 5) + 8 i of each operand: W rows of the block
  // (2 per thread), sign lines and planes of rows (tid >> 5) + 8 i (RW per thread). Sources advance by one stage
  // per copy round; a row without data copies zeros from a dummy source inside W (src-size 0: never read).
  const uint32_t smem0 = smem_u32(smem);
  const int c_row = tid >> 5, c_ch = tid & 31;
  const uint32_t* dummy = reinterpret_cast<const uint32_t*>(W);
  // Copy cursors: W and sign lines (the tile moves at every wrap), planes (the same for every tile).
  bool w_ok[2];
  const T* w_src[2];
  int ws_tile = blockIdx.x;
  const uint32_t w_dst = (c_row * KC + swz(c_ch, c_row) * 8) * 2;  // row + 8: same parity, + 8 rows of 512 bytes
  // A row has signs and planes exactly when its tenant is valid (s_signs[row] != nullptr, never for row >= R).
  bool s_ok[RW];
  const uint32_t* s_src[RW];
  const uint32_t* b_src[RW];
#pragma unroll
  for (int i = 0; i < RW; ++i) s_ok[i] = s_signs[c_row + 8 * i] != nullptr;
  auto ws_sources = [&](int tile) {  // k256 block 0 of the tile
    const int64_t m0 = int64_t(tile) * 16;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      w_ok[i] = m0 + c_row + 8 * i < M;
      w_src[i] = W + (w_ok[i] ? (m0 + c_row + 8 * i) * K : 0) + c_ch * 8;
    }
#pragma unroll
    for (int i = 0; i < RW; ++i) s_src[i] = s_ok[i] ? s_signs[c_row + 8 * i] + tile * K64 * 32 + c_ch * 4 : dummy;
  };
  ws_sources(ws_tile);
#pragma unroll
  for (int i = 0; i < RW; ++i) b_src[i] = s_ok[i] ? xb + int64_t(c_row + 8 * i) * K256 * XB_WORDS_PER_K256 + c_ch * 4 : dummy;
  const uint32_t s_dst = W_BYTES + c_row * 512 + c_ch * 16, b_dst = W_BYTES + S_BYTES + c_row * 512 + c_ch * 16;
  // `wrap`: the stage is its tile's last (k256 block KCH - 1); the sources then move to the next tile's start.
  auto load_ws = [&](uint32_t stage, bool wrap) {  // W and sign lines: independent of the pre-pass
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      cp16(stage + w_dst + i * 8 * KC * 2, w_src[i], w_ok[i]);
      w_src[i] += KC;
    }
#pragma unroll
    for (int i = 0; i < RW; ++i) {
      cp16(stage + s_dst + i * 8 * 512, s_src[i], s_ok[i]);
      s_src[i] += 4 * 32;  // the next stage: 4 k64 blocks of 32 words
    }
    if (PERSISTENT && wrap) {
      ws_tile += gridDim.x;
      if (ws_tile < M16) ws_sources(ws_tile);
    }
  };
  auto load_xb = [&](uint32_t stage, bool wrap) {  // bit-planes: written by the pre-pass
#pragma unroll
    for (int i = 0; i < RW; ++i) {
      cp16(stage + b_dst + i * 8 * 512, b_src[i], s_ok[i]);
      b_src[i] += XB_WORDS_PER_K256;
    }
    if (PERSISTENT && wrap) {
#pragma unroll
      for (int i = 0; i < RW; ++i) b_src[i] -= K256 * XB_WORDS_PER_K256;  // the same planes for every tile
    }
  };

  // Base product: the NW = 8/RW warps owning rows of n8 tile nt share its k32 steps (warp wi takes steps wi,
  // wi + NW, ...). W chunk (u*4 + t) of row g sits at chunk ((u ^ (g & 1)) * 4 + t) (the row-parity swizzle);
  // NW is even, so (wi + j NW) ^ p = (wi ^ p) + j NW and every step is a constant offset from one address.
  constexpr int NW = 8 / RW, KSTEPS = (KC / 32) / NW;
  const int nt = (warp * RW) / 8, wi = warp - nt * NW;
  const bool do_base = nt * 8 < R;
  const int xrow = nt * 8 + g;
  const bool x_ok = do_base && xrow < R;
  const uint4* x_src = reinterpret_cast<const uint4*>(x + (x_ok ? int64_t(xrow) * K : 0)) + wi * 4 + t;
  auto load_xfrags = [&](uint4 (&f)[KSTEPS]) {  // this warp's x fragments of the next stage (L2)
#pragma unroll
    for (int j = 0; j < KSTEPS; ++j) f[j] = x_ok ? __ldg(x_src + j * NW * 4) : make_uint4(0, 0, 0, 0);
    x_src += KC / 8;
  };
  const uint32_t a_off = g * (KC * 2) + (wi ^ (g & 1)) * 64 + t * 16;
  bool row_on[RW];
#pragma unroll
  for (int i = 0; i < RW; ++i) row_on[i] = s_signs[warp * RW + i] != nullptr;
  const uint32_t sign_off = W_BYTES + warp * RW * 512 + lane * 4, plane_off = W_BYTES + S_BYTES + warp * RW * 512 + lane * 8;

  float acc_b[4] = {0.f, 0.f, 0.f, 0.f};
  int acc_d[RW][2][4];
#pragma unroll
  for (int i = 0; i < RW; ++i)
#pragma unroll
    for (int gr = 0; gr < 2; ++gr)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc_d[i][gr][e] = 0;

  // W and the first stages' sign lines stream while the pre-pass still runs; so do the tenants' scales of the
  // first tile (later tiles read theirs in the epilogue, requested to L2 when the tile starts).
#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st)
    if (st < total) load_ws(smem0 + st * STAGE_BYTES, st % KCH == KCH - 1);
  for (int i = tid; i < ROWS * 16; i += 256) {
    const int r = i >> 4, mm = i & 15;
    const float* sp = s_scales[r];
    const int64_t m = int64_t(blockIdx.x) * 16 + mm;
    if (sp != nullptr && m < M && (scale_per_row || mm == 0)) cp_async4(&s_scale[r][mm], sp + (scale_per_row ? m : 0));
  }
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");  // the pre-pass's planes, sums of q and scales are ready
#endif
  for (int i = tid; i < ROWS * (XP_PARTS + 1); i += 256) {
    const int r = i / (XP_PARTS + 1), j = i % (XP_PARTS + 1);
    if (s_signs[r] != nullptr) {
      if (j < XP_PARTS) cp_async8(&s_qsum[r][j], q_sums + r * XP_PARTS + j);
      else cp_async4(&s_xscale[r], x_scale + r);
    }
  }
#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st) {  // group 0: every copy above and stage 0's planes; group st: stage st's
    if (st < total) load_xb(smem0 + st * STAGE_BYTES, st % KCH == KCH - 1);
    cp_async_commit_group();
  }

  uint4 xf_next[KSTEPS];
  load_xfrags(xf_next);
  int st_read = 0, st_write = STAGES - 1;
  int tile = blockIdx.x, kc = 0, load_kc = (STAGES - 1) % KCH;  // load_kc: k256 block of the next stage copied
  for (int j = 0; j < total; ++j) {
    cp_async_wait_group<STAGES - 2>();
    __syncthreads();
    if (j + STAGES - 1 < total) {
      const uint32_t stage = smem0 + st_write * STAGE_BYTES;
      const bool wrap = load_kc == KCH - 1;
      load_ws(stage, wrap);
      load_xb(stage, wrap);
      load_kc = wrap ? 0 : load_kc + 1;
    }
    cp_async_commit_group();
    st_write = st_write + 1 == STAGES ? 0 : st_write + 1;
    const uint32_t stage = smem0 + st_read * STAGE_BYTES;
    st_read = st_read + 1 == STAGES ? 0 : st_read + 1;
    // x fragments: this stage's were requested one stage ago; the next stage's now (k256 block 0 after a wrap).
    uint4 xf[KSTEPS];
#pragma unroll
    for (int jj = 0; jj < KSTEPS; ++jj) xf[jj] = xf_next[jj];
    if (j + 1 < total) {
      if (kc + 1 == KCH) x_src -= K / 8;  // back to k256 block 0
      load_xfrags(xf_next);
    }
    // Delta: binary tensor cores, one k256 step per row.
#pragma unroll
    for (int i = 0; i < RW; ++i) {
      if (!row_on[i]) continue;  // warp-uniform
      const uint32_t sa = stage + sign_off + i * 512, pa = stage + plane_off + i * 512;
      const uint2 b_lo = lds64(pa), b_hi = lds64(pa + 256);
      uint32_t a[4];
      binary_a_fragments(lds32(sa), lds32(sa + 128), lds32(sa + 256), lds32(sa + 384), a);
      mma_b1(acc_d[i][0], a[0], a[1], a[2], a[3], b_lo.x, b_lo.y);
      mma_b1(acc_d[i][1], a[0], a[1], a[2], a[3], b_hi.x, b_hi.y);
    }
    // Base: f16/bf16 tensor cores, this warp's k32 steps of the stage.
    if (do_base) {
#pragma unroll
      for (int jj = 0; jj < KSTEPS; ++jj) {
        const uint4 a0 = lds128(stage + a_off + jj * NW * 64), a1 = lds128(stage + a_off + jj * NW * 64 + 8 * KC * 2);
        mma16816<T>(acc_b, a0.x, a1.x, a0.y, a1.y, xf[jj].x, xf[jj].y);
        mma16816<T>(acc_b, a0.z, a1.z, a0.w, a1.w, xf[jj].z, xf[jj].w);
      }
    }
    if (++kc < KCH) continue;

    // The tile is done (the next tile's first stages are already in flight).
    const int64_t m0 = int64_t(tile) * 16;
    const bool first = !PERSISTENT || tile == int(blockIdx.x);
    // Partial base sums of the NW warps of each n8 tile, added in a fixed order (deterministic); the first warp
    // stores, so that nothing needs zeroing between tiles.
    for (int w = 0; w < NW; ++w) {
      if (do_base && wi == w) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float& sum = s_base[g + 8 * (e >> 1)][nt * 8 + 2 * t + (e & 1)];
          sum = w == 0 ? acc_b[e] : sum + acc_b[e];
        }
      }
      __syncthreads();
    }
    // Combine the 16 plane columns (plane_sums), scale, add the base and write.
#pragma unroll
    for (int i = 0; i < RW; ++i) {
      const int r = warp * RW + i;
      if (r >= R) continue;  // warp-uniform
      const int ten = s_tenant[r];
      long long q_total = 0;
#pragma unroll
      for (int q = 0; q < XP_PARTS; ++q) q_total += row_on[i] ? s_qsum[r][q] : 0ll;
      long long part[2];
      plane_sums(acc_d[i], q_total, t, part);
      if (t != 0) continue;
      const float xs = row_on[i] ? s_xscale[r] : 0.f;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int mm = g + 8 * h;
        const int64_t m = m0 + mm;
        if (m >= M) continue;
        const float v = tenant_output(s_base[mm][r], ten, num_tenants, [&] {
          return first ? s_scale[r][scale_per_row ? mm : 0] : __ldg(s_scales[r] + (scale_per_row ? m : 0));
        }, xs * float(part[h]));
        y[int64_t(r) * M + m] = store_cast<TY>(v);
      }
    }
    if (!PERSISTENT) break;
    // The next tile: fresh accumulators; its tenant scales requested to L2 now, read in its epilogue.
    kc = 0;
    tile += gridDim.x;
#pragma unroll
    for (int e = 0; e < 4; ++e) acc_b[e] = 0.f;
#pragma unroll
    for (int i = 0; i < RW; ++i)
#pragma unroll
      for (int gr = 0; gr < 2; ++gr)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc_d[i][gr][e] = 0;
    if (tile < M16 && tid < ROWS && s_scales[tid] != nullptr) prefetch_l2(s_scales[tid] + (scale_per_row ? tile * 16 : 0));
  }
  cp_async_wait_group<0>();
}

}  // namespace bd
