// mma_probe.cu -- issue cost of the warp-level MMA instructions the decode kernels use, on this GPU.
// Why (run 22, docs/benchmarks-cuda.md): decode versions 3 and 4 take about the same time at 32 tenants although
// version 4 streams differently, and their times scale with the number of binary MMAs (N*M*K/2048). Each warp runs
// a loop of independent MMAs (8 accumulators); cycles per MMA per SM sub-partition = clock64 cycles x 4 / (MMAs
// per SM), with 4, 8 or 16 warps per SM (one block per SM, all SMs).
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a mma_probe.cu -o mma_probe && ./mma_probe
#include <cuda_runtime.h>
#include <cstdio>
#include <cstdint>

constexpr int ITERS = 2048, ACC = 8;

template <int KIND>  // 0: BMMA m16n8k256 and.popc, 1: HMMA m16n8k16 f16 -> f32, 2: IMMA m16n8k32 s8 -> s32,
                     // 3: HMMA m16n8k16 with the A fragment expanded from a sign word (2 ALU per register),
                     // 4: BMMA m16n8k256 xor.popc
__global__ void mma_loop(unsigned long long* cycles, int* sink, uint32_t seed) {
  uint32_t a0 = seed ^ threadIdx.x, a1 = a0 * 3u, a2 = a0 * 5u, a3 = a0 * 7u, b0 = a0 * 11u, b1 = a0 * 13u;
  int ci[ACC][4] = {};
  float cf[ACC][4] = {};
  __syncthreads();
  const long long t0 = clock64();
  for (int it = 0; it < ITERS; ++it) {
#pragma unroll
    for (int j = 0; j < ACC; ++j) {
      if (KIND == 0)
        asm volatile("mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+r"(ci[j][0]), "+r"(ci[j][1]), "+r"(ci[j][2]), "+r"(ci[j][3]) : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
      if (KIND == 4)
        asm volatile("mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.xor.popc {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+r"(ci[j][0]), "+r"(ci[j][1]), "+r"(ci[j][2]), "+r"(ci[j][3]) : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
      if (KIND == 1)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(cf[j][0]), "+f"(cf[j][1]), "+f"(cf[j][2]), "+f"(cf[j][3]) : "r"(a0 & 0x3bff3bffu), "r"(a1 & 0x3bff3bffu), "r"(a2 & 0x3bff3bffu), "r"(a3 & 0x3bff3bffu), "r"(b0 & 0x3bff3bffu), "r"(b1 & 0x3bff3bffu));
      if (KIND == 2)
        asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+r"(ci[j][0]), "+r"(ci[j][1]), "+r"(ci[j][2]), "+r"(ci[j][3]) : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
      if (KIND == 3) {
        const uint32_t w = a0 + uint32_t(it * ACC + j), m = 0x80008000u, one = 0x3C003C00u;
        uint32_t e[4];
#pragma unroll
        for (int h = 0; h < 4; ++h) asm("lop3.b32 %0, %1, %2, %3, 0xAE;" : "=r"(e[h]) : "r"(w << h), "r"(m), "r"(one));
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(cf[j][0]), "+f"(cf[j][1]), "+f"(cf[j][2]), "+f"(cf[j][3]) : "r"(e[0]), "r"(e[1]), "r"(e[2]), "r"(e[3]), "r"(b0 & 0x3bff3bffu), "r"(b1 & 0x3bff3bffu));
      }
    }
  }
  const long long t1 = clock64();
  int s = 0;
  for (int j = 0; j < ACC; ++j) s += ci[j][0] + ci[j][3] + int(cf[j][0]) + int(cf[j][3]);
  if (s == 0x7fffffff) sink[0] = s;
  if (threadIdx.x == 0) atomicMax(cycles, (unsigned long long)(t1 - t0));
}

template <int KIND> static void run(const char* name, int sms, unsigned long long* d_cyc, int* sink) {
  for (int warps : {4, 8, 16}) {
    cudaMemset(d_cyc, 0, 8);
    mma_loop<KIND><<<sms, warps * 32>>>(d_cyc, sink, 1234u);  // warm-up
    cudaMemset(d_cyc, 0, 8);
    mma_loop<KIND><<<sms, warps * 32>>>(d_cyc, sink, 99u);
    unsigned long long cyc = 0;
    cudaMemcpy(&cyc, d_cyc, 8, cudaMemcpyDeviceToHost);
    const double mmas_per_smsp = double(warps) * ITERS * ACC / 4.0;
    printf("%-34s %2d warps/SM: %8.2f cycles per MMA per SM sub-partition (%llu cycles)\n", name, warps,
           double(cyc) / mmas_per_smsp, cyc);
  }
}

int main() {
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  unsigned long long* d_cyc;
  int* sink;
  cudaMalloc(&d_cyc, 8);
  cudaMalloc(&sink, 4);
  run<0>("BMMA m16n8k256 and.popc", sms, d_cyc, sink);
  run<4>("BMMA m16n8k256 xor.popc", sms, d_cyc, sink);
  run<1>("HMMA m16n8k16 f16->f32", sms, d_cyc, sink);
  run<2>("IMMA m16n8k32 s8->s32", sms, d_cyc, sink);
  run<3>("HMMA m16n8k16 + 4 sign expansions", sms, d_cyc, sink);
  const cudaError_t e = cudaDeviceSynchronize();
  printf("status: %s\n", cudaGetErrorString(e));
  return 0;
}
