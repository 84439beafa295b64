// bd_prefill_wgmma.cuh -- the prefill's delta product (d_W == NULL) on Hopper warpgroup tensor cores (wgmma,
// sm_90a), and its BASE form for base + delta with F32 y (the base product first, then the delta added).
// Included by bd_prefill.cuh. The kernel body exists only in sm_90a code (__CUDA_ARCH_FEAT_SM90_ALL); the host
// launches it only when the library was built with sm_90a SASS (BD_HAVE_SM90A) and the device is cc 9.0. Every
// other case (sm_80/86/89, PTX JIT on later GPUs, base + delta with 16-bit y, unaligned x or W, K % 8 != 0) takes
// prefill_kernel.
//
// Block tile: 256 (M, weight rows: the wgmma N) x 128 (rows of ONE segment: the wgmma M, two consumer warpgroups
// of 64) x 64 (K) per stage. 384 threads, warp-specialized (prefill_wgmma_ws_kernel below):
//   warpgroup 0 produces: the x tile [128 rows][64 k] f16/bf16 (16 KB) by 16-byte cp.async.cg (zero fill past the
//     segment's rows and K), and the S tile [256 rows][64 k] as ±1 f16/bf16 (32 KB): each producer thread loads 4
//     device-layout sign words per stage (two stages ahead, in registers) and expands each into 4 16-byte chunks
//     (16 pair expansions, shift + LOP3 each) with st.shared. The signs are expanded once per block and stage, in
//     shared memory (never in global memory), and read by the tensor cores for all 128 rows of the tile.
//   warpgroups 1 and 2 consume: wgmma.m64n256k16 (F32 accumulators, 128 registers per thread) on 64 rows each.
//   Both tiles K-major, rows of 128 bytes, 128-byte swizzle (16-byte chunk c of row r at c ^ (r & 7)): the wgmma
//     canonical layout; descriptors with SBO = 1024 bytes, k16 step = +32 bytes.
//   4 stages (4 x 48 KB + 1 KB alignment = 193 KB dynamic shared memory, one block per SM), each with two
//     mbarriers: full (the 128 producer threads arrive once their copies of the stage completed, after a
//     fence.proxy.async) and empty (the 256 consumer threads arrive once the wgmma that read it retired). No
//     block-wide barrier in the main loop: the consumers keep one wgmma group in flight (wait_group 1).
//   Epilogue straight from the accumulator layout (row g / g+8 of each warp's 16 x rows, columns 8i + 2t, +1)
//     with 4-byte (16-bit y) or 8-byte (F32 y) stores.
// (Measured against it on an H100, 8 segments x 128 rows of 4096x4096, and removed: the same tiles with all 8 warps
// loading and computing in lockstep behind one __syncthreads per stage, 81-83 us against 71.6 us; 128-row blocks
// two per SM, 94-96 us; the signs as register A operands with 4-byte permuted x copies, 181 us.)
#pragma once

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define BD_WGMMA_BODY 1
#endif

namespace bd {

constexpr int PW_BR = 128, PW_BK = 64;
constexpr int PW_A_BYTES = PW_BR * PW_BK * 2;                              // 16 KB x tile
template <int BM> struct PwCfg {
  static constexpr int STAGES = 4;
  static constexpr int B_BYTES = BM * PW_BK * 2;                          // ±1 tile (32 KB for BM = 256)
  static constexpr int STAGE_BYTES = PW_A_BYTES + B_BYTES;
  static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES + 1024;          // + slack to align tiles to 1024 bytes
};

// wgmma shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row groups 1024 bytes apart.
__device__ __forceinline__ uint64_t wgmma_desc(uint32_t smem_addr) {
  uint64_t d = uint64_t((smem_addr & 0x3FFFFu) >> 4);
  d |= uint64_t(1) << 16;            // leading byte offset (unused for swizzled K-major)
  d |= uint64_t(1024 >> 4) << 32;    // stride byte offset: next 8-row group
  d |= uint64_t(1) << 62;            // 128-byte swizzle
  return d;
}

// D[64 x N] += A[64 x 16] * B[16 x N]: A, B K-major in shared memory (descriptors), D in N/2 F32 registers per thread.
template <typename T, int N> __device__ __forceinline__ void wgmma_m64k16(float* d, uint64_t da, uint64_t db);

#ifdef BD_WGMMA_BODY
// The asm of both specializations below, which differ only in the PTX element type ("f16" or "bf16").
#define BD_WGMMA_M64N256K16(PTX_TYPE)                                                                                   \
  asm volatile(                                                                                                         \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"                                                                     \
      "wgmma.mma_async.sync.aligned.m64n256k16.f32." PTX_TYPE "." PTX_TYPE " {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, %128, %129, p, 1, 1, 0, 0;\n}\n" \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),                 \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),           \
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),         \
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),         \
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),         \
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),         \
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),         \
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),         \
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),         \
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),         \
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),         \
        "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),         \
        "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),     \
        "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), \
        "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), \
        "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])  \
      : "l"(da), "l"(db), "r"(1));
template <> __device__ __forceinline__ void wgmma_m64k16<__half, 256>(float* d, uint64_t da, uint64_t db) {
  BD_WGMMA_M64N256K16("f16");
}
template <> __device__ __forceinline__ void wgmma_m64k16<__nv_bfloat16, 256>(float* d, uint64_t da, uint64_t db) {
  BD_WGMMA_M64N256K16("bf16");
}
#undef BD_WGMMA_M64N256K16
#endif

// ---------------------------------------------------------------------------------------------------------------
// prefill_wgmma_ws_kernel (see the top of this file).
constexpr int PWS_THREADS = 384;

__device__ __forceinline__ void mbar_init(uint32_t addr, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(addr), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t addr) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(addr) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t addr, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred P1;\nLAB_WAIT:\nmbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n@P1 bra DONE;\n"
      "bra LAB_WAIT;\nDONE:\n}\n" ::"r"(addr), "r"(parity) : "memory");
}

// BASE: the dense base product instead of the delta, y = (accumulate ? y : 0) + W x for the segments' rows: the
// producer copies the W tile [256 rows][64 k] by 16-byte cp.async into the same swizzled layout where the delta
// kernel writes its ±1 tile (bd_prefill runs it, then the delta with accumulate, for F32 y; see run_prefill).
template <typename T, typename TY, bool BASE>
__global__ void __launch_bounds__(PWS_THREADS, 1) prefill_wgmma_ws_kernel(
    const T* __restrict__ W,                        // T [M, K], 16-byte aligned (BASE only; else unused)
    const T* __restrict__ x,                        // T [R, K], 16-byte aligned, K % 8 == 0
    const int32_t* __restrict__ seg_offsets,        // I32 [S + 1] nondecreasing row offsets of the segments
    const int32_t* __restrict__ seg_tenant,         // I32 [S]     tenant of each segment; < 0: no delta
    int S,                                          //             1 .. 65535
    const uint32_t* const* __restrict__ tenant_signs,  // [num_tenants] -> U32 device layout of [M, K]
    const float* const* __restrict__ tenant_scales,    // [num_tenants] -> F32 [1] or [M]
    int num_tenants, int scale_per_row, int accumulate,  //        accumulate: y += product (y read in TY)
    TY* __restrict__ y,                             // TY [R, M]   rows of the segments written, others untouched
    int64_t M, int64_t K) {                         //             grid (ceil(M / 256), ceil(R / 128) + S), 384
                                                    //             threads, PwCfg<256>::SMEM_BYTES dynamic smem
#ifdef BD_WGMMA_BODY
  using C = PwCfg<256>;
  constexpr int STAGES = C::STAGES;
  extern __shared__ __align__(16) unsigned char pws_smem_raw[];
  __shared__ __align__(8) uint64_t bars[2 * STAGES];  // full[0..S), empty[0..S)
  const uint32_t raw_addr = static_cast<uint32_t>(__cvta_generic_to_shared(pws_smem_raw));
  const uint32_t smem = (raw_addr + 1023u) & ~1023u;
  unsigned char* const smem_ptr = pws_smem_raw + (smem - raw_addr);
  const uint32_t bar0 = static_cast<uint32_t>(__cvta_generic_to_shared(bars));
  auto full = [&](int st) { return bar0 + 8u * st; };
  auto empty = [&](int st) { return bar0 + 8u * (STAGES + st); };

  SegmentPiece piece;  // which segment and which 128-row piece of it this block handles
  if (!segment_piece<PW_BR>(seg_offsets, seg_tenant, S, blockIdx.y, piece)) return;
  const int row0 = piece.row0, rows = piece.rows, tenant = piece.tenant;
  const bool has_delta = tenant >= 0 && tenant < num_tenants;
  const bool bad_tenant = tenant >= num_tenants;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, wg = warp >> 2;
  const int64_t m_block = int64_t(blockIdx.x) * 256;
  const int64_t K64 = (K + 63) / 64, M16 = (M + 15) / 16;
  const int64_t KT = BASE || has_delta ? K64 : 0;

  if (tid == 0) {
    for (int st = 0; st < STAGES; ++st) {
      mbar_init(full(st), 128);
      mbar_init(empty(st), 256);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {
    // ---- producer: 128 threads. Sign words: 4 per thread and stage (m16 tile mtl = tid / 32 + 4 c, lane L).
    const int l = lane, L = 4 * (l & 7) + (l >> 3), sg = l & 7, st_ = l >> 3;
    const uint32_t* sign_ptr[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int64_t mt = m_block / 16 + warp + 4 * c;
      sign_ptr[c] = (!BASE && has_delta && mt < M16) ? tenant_signs[tenant] + mt * K64 * 32 + L : nullptr;
    }
    uint32_t w[4], wn[4];
    auto load_words = [&](int64_t kt, uint32_t (&v)[4]) {
#pragma unroll
      for (int c = 0; c < 4; ++c) v[c] = (sign_ptr[c] != nullptr && kt < KT) ? __ldg(sign_ptr[c] + kt * 32) : 0u;
    };
    load_words(0, w);
    load_words(1, wn);
    for (int64_t kt = 0; kt < KT; ++kt) {
      const int st = int(kt % STAGES);
      if (kt >= STAGES) mbar_wait(empty(st), uint32_t((kt / STAGES - 1) & 1));
      const uint32_t at = smem + st * C::STAGE_BYTES;
#pragma unroll
      for (int c = 0; c < 8; ++c) {  // x: 1024 chunks of 16 B over 128 threads
        const int chunk = tid + c * 128;
        const int r = chunk >> 3, ch = chunk & 7;
        const int64_t k = kt * PW_BK + ch * 8;
        const bool ok = r < rows && k < K;
        const T* src = ok ? x + int64_t(row0 + r) * K + k : x;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(at + r * 128 + ((ch ^ (r & 7)) << 4)),
                     "l"(src), "r"(ok ? 16 : 0));
      }
      if (BASE) {  // W: 2048 chunks of 16 B over 128 threads, the x tile's swizzle
        const uint32_t bt_addr = at + PW_A_BYTES;
#pragma unroll
        for (int c = 0; c < 16; ++c) {
          const int chunk = tid + c * 128;
          const int r = chunk >> 3, ch = chunk & 7;
          const int64_t m = m_block + r, k = kt * PW_BK + ch * 8;
          const bool ok = m < M && k < K;
          const T* src = ok ? W + m * K + k : W;
          asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(bt_addr + r * 128 + ((ch ^ (r & 7)) << 4)),
                       "l"(src), "r"(ok ? 16 : 0));
        }
      }
      asm volatile("cp.async.commit_group;\n" ::);
      unsigned char* bt = smem_ptr + st * C::STAGE_BYTES + PW_A_BYTES;
#pragma unroll
      for (int c = 0; c < 4 && !BASE; ++c) {
        const int mtl = warp + 4 * c;
#pragma unroll
        for (int r8 = 0; r8 < 2; ++r8)
#pragma unroll
          for (int s = 0; s < 2; ++s) {
            const int row = 16 * mtl + sg + 8 * r8;
            const int ch = 4 * s + st_;
            uint4 v;
            v.x = expand_pair<T>(w[c], 8 * s + 0 + r8);
            v.y = expand_pair<T>(w[c], 8 * s + 2 + r8);
            v.z = expand_pair<T>(w[c], 8 * s + 4 + r8);
            v.w = expand_pair<T>(w[c], 8 * s + 6 + r8);
            *reinterpret_cast<uint4*>(bt + row * 128 + ((ch ^ sg) << 4)) = v;
          }
      }
#pragma unroll
      for (int c = 0; c < 4; ++c) w[c] = wn[c];
      if (!BASE) load_words(kt + 2, wn);
      // Stage kt - 1 complete for this thread (its cp.async group and, from the last iteration, its stores):
      if (kt >= 1) {
        asm volatile("cp.async.wait_group 1;\n" ::);
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        mbar_arrive(full(int((kt - 1) % STAGES)));
      }
    }
    if (KT >= 1) {
      asm volatile("cp.async.wait_group 0;\n" ::);
      asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
      mbar_arrive(full(int((KT - 1) % STAGES)));
    }
    return;
  }

  // ---- consumers: warpgroups 1, 2 -> rows 64 (wg - 1) .. + 63 of the segment.
  const int cw = wg - 1;
  float acc[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) acc[i] = 0.f;
  for (int64_t kt = 0; kt < KT; ++kt) {
    const int st = int(kt % STAGES);
    mbar_wait(full(st), uint32_t((kt / STAGES) & 1));
    const uint32_t at = smem + st * C::STAGE_BYTES + cw * (64 * 128), bt = smem + st * C::STAGE_BYTES + PW_A_BYTES;
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
    for (int j = 0; j < 4; ++j) wgmma_m64k16<T, 256>(acc, wgmma_desc(at + 32 * j), wgmma_desc(bt + 32 * j));
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
    if (kt >= 1) mbar_arrive(empty(int((kt - 1) % STAGES)));  // stage kt - 1 retired
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");

  const int g = lane >> 2, t = lane & 3;
  const bool scaled = !BASE && has_delta;  // the base pass reads no scales
  const float* scale = scaled ? tenant_scales[tenant] : nullptr;
  const float s0 = (scaled && !scale_per_row) ? scale[0] : 0.f;
  const float nan = __int_as_float(0x7fc00000);
  const bool pair_ok = (M % 2) == 0;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = cw * 64 + (warp & 3) * 16 + g + 8 * h;
    if (r >= rows) continue;
    TY* yrow = y + int64_t(row0 + r) * M;
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int64_t m = m_block + 8 * i + 2 * t;
      if (m >= M) continue;
      float v[2];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float sc = scaled ? (scale_per_row ? (m + e < M ? scale[m + e] : 0.f) : s0) : 0.f;
        v[e] = BASE ? acc[4 * i + 2 * h + e] : bad_tenant ? nan : sc * acc[4 * i + 2 * h + e];
      }
      const bool add_old = accumulate && (BASE || !bad_tenant);
      if (pair_ok) {
        if (sizeof(TY) == 2) {
          uint32_t* out = reinterpret_cast<uint32_t*>(yrow + m);
          if (add_old) {
            const uint32_t old = *out;
            v[0] += load_float<TY>(reinterpret_cast<const TY*>(&old));
            v[1] += load_float<TY>(reinterpret_cast<const TY*>(&old) + 1);
          }
          TY pr[2] = {store_cast<TY>(v[0]), store_cast<TY>(v[1])};
          *out = *reinterpret_cast<const uint32_t*>(pr);
        } else {
          float2* out = reinterpret_cast<float2*>(yrow + m);
          if (add_old) {
            const float2 old = *out;
            v[0] += old.x;
            v[1] += old.y;
          }
          *out = make_float2(v[0], v[1]);
        }
      } else {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          if (m + e >= M) continue;
          TY* out = yrow + m + e;
          float vv = v[e];
          if (add_old) vv += load_float<TY>(out);
          *out = store_cast<TY>(vv);
        }
      }
    }
  }
#else
  __trap();
#endif
}

}  // namespace bd
