// bd_tile.cuh -- building blocks of the pipelined tensor-core kernels (bd_decode.cu, bd_prefill.cu,
// bd_step_project.cu); not ABI: cp.async copies into shared memory and the multistage pipeline over them,
// shared-memory loads through 32-bit shared-window addresses, the row-parity swizzle of 16-byte chunks, and the
// binary tensor-core product (mma.m16n8k256.b1) with its bit-plane B fragments and its A fragments built from the
// device sign layout of bitdelta_cuda.h.
#pragma once

#include "bd_common.cuh"

namespace bd {

// Physical column k (within its k256 block) of bit P of B register `reg` of lane t (see the header comment of
// bitdelta_cuda.h for the device sign layout): odd bits come from k64 block 2*reg, even bits from block 2*reg+1.
__host__ __device__ __forceinline__ int xb_column(int t, int reg, int P) {
  const int kb = 2 * reg + ((P & 1) ? 0 : 1);
  const int bitpos = (P & 1) ? P : P + 1;
  const int e = bitpos <= 15 ? 0 : 1;
  const int q = e ? 31 - bitpos : 15 - bitpos;
  return 64 * kb + 32 * (q >> 3) + 8 * t + 4 * ((q >> 2) & 1) + 2 * ((q & 3) >> 1) + e;
}

// The bit-plane transpose of one row's quantized values into mma.m16n8k256.b1 B fragments, by warp votes: for one
// (k256 block, lane position t, register) the 32 lanes take the 32 columns that the B register's bits stand for (see
// xb_column); one ballot per plane gives its word, which lane p keeps for plane p. The block's WARPS warps take the
// items of k256 blocks [kb_begin, kb_end) in turn (decode 3's pre-pass: 16 planes; the decoder step's split: 24).
//   q_s      [(kb_end - kb_begin) * 256]  the PLANES-bit two's-complement values, column k at q_s[k - k_first]
//   k_first  256 kb_begin
//   planes   U32 [K256][PLANES / 8][32][2]  the row's fragments: plane group, lane 4 (plane % 8) + t, register
template <int PLANES, int WARPS, typename Q>
__device__ __forceinline__ void transpose_planes(const Q* q_s, int64_t k_first, int64_t kb_begin, int64_t kb_end,
                                                 int warp, int lane, uint32_t* planes) {
  constexpr int WORDS_PER_K256 = PLANES / 8 * 64;
  for (int64_t item = kb_begin * 8 + warp; item < kb_end * 8; item += WARPS) {
    const int64_t kb = item >> 3;
    const int t = int(item & 7) >> 1, reg = int(item & 1);
    const int q = q_s[kb * 256 - k_first + xb_column(t, reg, lane)];
    uint32_t mine = 0;
#pragma unroll
    for (int p = 0; p < PLANES; ++p) {
      const uint32_t word = __ballot_sync(0xffffffffu, (q >> p) & 1);
      if (lane == p) mine = word;
    }
    if (lane < PLANES) {
      const int group = lane >> 3, column = lane & 7;
      planes[kb * WORDS_PER_K256 + group * 64 + (column * 4 + t) * 2 + reg] = mine;
    }
  }
}

__device__ __forceinline__ void cp_async_commit_group() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait_group() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
// 16-byte chunk `ch` of a shared-memory row of 128 or 256 bytes, XOR-swizzled by row parity (ch ^ 4 (row & 1)), so
// that a lane's 16-byte fragment reads of consecutive rows are conflict-free.
__device__ __forceinline__ int swz(int ch, int row) { return ch ^ ((row & 1) << 2); }

// A STAGES-deep cp.async pipeline over `chunks` k chunks (decode versions 2 and 3, prefill_kernel); load_stage(stage,
// chunk) issues one chunk's copies into one stage's shared memory. The start: chunks 0 .. STAGES - 2 in flight, one
// commit group each (empty past the last chunk, so that every wait below counts the same groups).
template <int STAGES, typename LoadStage>
__device__ __forceinline__ void pipeline_start(int64_t chunks, LoadStage& load_stage) {
#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st) {
    if (st < chunks) load_stage(st, st);
    cp_async_commit_group();
  }
}
// Before chunk kc's math: waits until its stage has landed and every thread is done with chunk kc - 1, then requests
// chunk kc + STAGES - 1 into the stage that chunk kc - 1 freed (stage kc % STAGES holds chunk kc).
template <int STAGES, typename LoadStage>
__device__ __forceinline__ void pipeline_next(int64_t kc, int64_t chunks, LoadStage& load_stage) {
  cp_async_wait_group<STAGES - 2>();
  __syncthreads();
  const int64_t kn = kc + STAGES - 1;
  if (kn < chunks) load_stage(int(kn % STAGES), kn);
  cp_async_commit_group();
}

__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async8(void* smem, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
// 16 bytes, L2 only (each byte is used once by the block); zeros where !ok (src-size 0: src is not read).
__device__ __forceinline__ void cp16(uint32_t dst, const void* src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void cp_async16_zfill(void* smem, const void* gmem, bool ok) { cp16(smem_u32(smem), gmem, ok); }
__device__ __forceinline__ uint32_t lds32(uint32_t a) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(a));
  return v;
}
__device__ __forceinline__ uint2 lds64(uint32_t a) {
  uint2 v;
  asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "r"(a));
  return v;
}
__device__ __forceinline__ uint4 lds128(uint32_t a) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(a));
  return v;
}

__device__ __forceinline__ void mma_b1(int c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                       uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// (a & mask) | (b & ~mask) in one LOP3 (lut 0xE4; the mask in a register: the immediate form takes one constant).
__device__ __forceinline__ uint32_t bit_select(uint32_t a, uint32_t b, uint32_t mask) {
  uint32_t out;
  asm("lop3.b32 %0, %1, %2, %3, 0xE4;\n" : "=r"(out) : "r"(a), "r"(b), "r"(mask));
  return out;
}

// The A fragments of mma.m16n8k256.b1 for one m16 tile and k256 block, from the four device-layout words of its
// k64 blocks (kb4 = 0..3) that a lane holds: row g's bits sit at odd positions of a word, row g+8's at even ones.
__device__ __forceinline__ void binary_a_fragments(uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3, uint32_t (&a)[4]) {
  const uint32_t odd = 0xAAAAAAAAu;
  a[0] = bit_select(w0, w1 >> 1, odd);
  a[1] = bit_select(w0 << 1, w1, odd);
  a[2] = bit_select(w2, w3 >> 1, odd);
  a[3] = bit_select(w2 << 1, w3, odd);
}

}  // namespace bd
