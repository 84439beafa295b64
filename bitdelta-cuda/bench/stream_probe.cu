// stream_probe.cu -- how fast can one block per SM stream DRAM into shared memory on this GPU, by mechanism?
// (Run 20 of docs/benchmarks-cuda.md: decode version 4 streamed at 1.3-1.6 TB/s with 4 producer warps issuing
// 16-byte cp.async; version 3, with 16 warps per SM issuing, at ~2.1 TB/s.) Reads 264 MB per launch (beyond L2):
//   ldg       full occupancy, 16-byte loads to registers, 4 in flight per thread (reference streaming rate)
//   cpasync   one block per SM, PW producer warps issue 16-byte cp.async into a 6-stage ring of 32 KB stages,
//             completion through cp.async.mbarrier.arrive.noinc, 4 consumer warps only wait and release
//   bulk      the same ring filled by cp.async.bulk, one copy per SEG bytes
// Access patterns: contiguous (block-private 32 KB runs) or rows (each stage = 64 rows x 512 bytes of an
// 8 KB-wide matrix, the next stage the next 512 bytes of the same rows: version 4's W pattern).
//   nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a stream_probe.cu -o stream_probe && ./stream_probe
//   ./stream_probe --sizes    (only the decode-sized sweep, see size_sweep)
#include <cuda_runtime.h>
#include <cstdio>
#include <cstdint>
#include <vector>
#include <algorithm>
#include <string>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("CUDA %s line %d\n", cudaGetErrorString(e_), __LINE__); return 1; } } while (0)

constexpr int STAGE = 32768, STAGES = 6, PER_BLOCK = 64;  // stage bytes, ring depth, stages per block and launch
constexpr int TOTAL_STAGE_BYTES = STAGE * PER_BLOCK;       // per block and launch (2 MB)

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t n) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(n) : "memory"); }
__device__ __forceinline__ void mbar_arrive(uint32_t bar) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory"); }
__device__ __forceinline__ void mbar_expect(uint32_t bar, uint32_t b) { asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(b) : "memory"); }
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t ph) {
  asm volatile("{\n.reg .pred P1;\nW_%=:\nmbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n@!P1 bra W_%=;\n}\n" ::"r"(bar), "r"(ph) : "memory");
}

// Byte offset of chunk (16 B) q of stage i of block b.
template <int PATTERN>
__device__ __forceinline__ size_t offset(int b, int i, int q) {
  if (PATTERN == 0) return (size_t(b) * PER_BLOCK + i) * STAGE + size_t(q) * 16;
  if (PATTERN == 2) return size_t(i % 8) * STAGE + size_t(q) * 16;  // every block reads the same 256 KB (L2 hits)
  // rows: tile of 64 rows x 8 KB; stage i -> tile (i / 16), column block (i % 16) of 512 bytes
  const int row = q >> 5, col = q & 31, tile = i / 16, cb = i % 16;
  return (size_t(b) * (PER_BLOCK / 16) + tile) * (64 * 8192) + size_t(row) * 8192 + cb * 512 + col * 16;
}

// FLAGS: 1 = L2::cache_hint evict_first on every copy, 2 = zero-fill form (src-size operand), 4 = consumers
// spend ~1500 cycles per stage before releasing it (stand-in for decode's per-stage compute).
template <int PW, int PATTERN, int MODE, int FLAGS = 0, int SB = STAGE, int NS = STAGES>
__global__ void __launch_bounds__((PW + 4) * 32, 1) ring_kernel(const unsigned char* __restrict__ src, int* sink) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ __align__(8) uint64_t bars[2 * NS];
  constexpr int NSTAGE = TOTAL_STAGE_BYTES / SB;  // stages per block
  const uint32_t sb = uint32_t(__cvta_generic_to_shared(smem)), full = uint32_t(__cvta_generic_to_shared(bars)),
                 empty = full + 8 * NS;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (threadIdx.x == 0) {
    for (int s = 0; s < NS; ++s) { mbar_init(full + 8 * s, MODE == 0 ? PW * 32 : 1); mbar_init(empty + 8 * s, 4); }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  if (warp >= 4) {
    const int pt = threadIdx.x - 128;
    uint64_t pol;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    int s = 0; uint32_t ph = 0;
    for (int i = 0; i < NSTAGE; ++i) {
      mbar_wait(empty + 8 * s, ph ^ 1);
      const uint32_t st = sb + s * SB;
      if (MODE == 0) {
#pragma unroll 1
        for (int q = pt; q < SB / 16; q += PW * 32) {
          // byte offset of chunk q of this stage within the block's 2 MB, in the chosen pattern
          const int gq = i * (SB / 16) + q, gi = gq / (STAGE / 16), qq = gq % (STAGE / 16);
          const unsigned char* p = src + offset<PATTERN>(blockIdx.x, gi, qq);
          if ((FLAGS & 3) == 0) asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(st + q * 16), "l"(p) : "memory");
          if ((FLAGS & 3) == 1) asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;" ::"r"(st + q * 16), "l"(p), "l"(pol) : "memory");
          if ((FLAGS & 3) == 2) asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(st + q * 16), "l"(p), "r"(16) : "memory");
          if ((FLAGS & 3) == 3) asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;" ::"r"(st + q * 16), "l"(p), "r"(16), "l"(pol) : "memory");
        }
        asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(full + 8 * s) : "memory");
      } else {
        if (pt == 0) mbar_expect(full + 8 * s, SB);
        __syncwarp();
        if (warp == 4)
          for (int seg = lane; seg < SB / 512; seg += 32) {
            const unsigned char* p = src + offset<PATTERN>(blockIdx.x, i, seg * 32);
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], 512, [%2];" ::"r"(st + seg * 512),
                         "l"(p), "r"(full + 8 * s) : "memory");
          }
      }
      if (++s == NS) { s = 0; ph ^= 1; }
    }
    return;
  }
  int s = 0; uint32_t ph = 0, acc = 0;
  for (int i = 0; i < NSTAGE; ++i) {
    mbar_wait(full + 8 * s, ph);
    acc ^= reinterpret_cast<const uint32_t*>(smem + s * SB)[threadIdx.x];
    if (FLAGS & 4) {
      const long long t0 = clock64();
      while (clock64() - t0 < 1500) acc += 1;
    }
    __syncwarp();
    if (lane == 0) mbar_arrive(empty + 8 * s);
    if (++s == NS) { s = 0; ph ^= 1; }
  }
  if (acc == 0x12345678u) sink[0] = 1;
}

__global__ void ldg_kernel(const uint4* __restrict__ src, size_t n, int* sink) {
  uint32_t acc = 0;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = i + j * stride < n ? __ldcs(src + i + j * stride) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int j = 0; j < 4; ++j) acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
  }
  if (acc == 0x12345678u) sink[0] = 1;
}

template <typename F> static float time_ms(F f) {
  cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
  for (int i = 0; i < 3; ++i) f();
  std::vector<float> t;
  for (int i = 0; i < 15; ++i) { cudaEventRecord(a); f(); cudaEventRecord(b); cudaEventSynchronize(b); float ms; cudaEventElapsedTime(&ms, a, b); t.push_back(ms); }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

template <int PW, int PATTERN, int MODE, int FLAGS = 0, int SB = STAGE, int NS = STAGES>
static int probe(const unsigned char* buf, int* sink, int sms) {
  const int smem = NS * SB;
  CK(cudaFuncSetAttribute(ring_kernel<PW, PATTERN, MODE, FLAGS, SB, NS>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const double bytes = double(sms) * (TOTAL_STAGE_BYTES / SB) * SB;
  const float ms = time_ms([&] { ring_kernel<PW, PATTERN, MODE, FLAGS, SB, NS><<<sms, (PW + 4) * 32, smem>>>(buf, sink); });
  CK(cudaGetLastError());
  printf("%-8s %-10s producer warps %2d, %d x %3d KB%s%s%s: %7.1f us  %6.0f GB/s\n", MODE ? "bulk" : "cpasync",
         PATTERN == 2 ? "broadcast" : PATTERN ? "rows" : "contiguous", MODE ? 1 : PW, NS, SB / 1024, FLAGS & 1 ? ", evict_first hint" : "",
         FLAGS & 2 ? ", zfill form" : "", FLAGS & 4 ? ", 1500-cycle consumers" : "", ms * 1e3, bytes / (ms * 1e-3) * 1e-9);
  return 0;
}

// --sizes: the fastest mechanism above (ldg, 64 warps per SM) reading decode-sized amounts, each launch from
// another region of a 1 GiB buffer (beyond the 50 MB L2), timed one by one (the host waits for each) and back to
// back (events per launch, no waiting): what one streaming kernel of that size can reach, ramp-up included.
static int size_sweep(int sms, int* sink) {
  const size_t buffer = size_t(1) << 30;
  unsigned char* buf;
  CK(cudaMalloc(&buf, buffer));
  CK(cudaMemset(buf, 1, buffer));
  // 4096x4096 f16 alone, + 8 / 16 / 32 tenants' signs; 4096x11008 + 8 / 16 / 32 (11008x4096 moves the same)
  for (double mb : {33.6, 50.3, 67.1, 100.7, 136.3, 180.4, 270.6, 264.0}) {
    const size_t bytes = size_t(mb * 1e6) / 16 * 16, regions = buffer / bytes;
    std::vector<float> serial, pipelined;
    std::vector<cudaEvent_t> ev(2 * 200);
    for (auto& e : ev) CK(cudaEventCreate(&e));
    for (int pass = 0; pass < 2; ++pass) {
      for (int i = 0; i < 200; ++i) {
        const uint4* src = reinterpret_cast<const uint4*>(buf + (i % regions) * bytes);
        CK(cudaEventRecord(ev[2 * i]));
        ldg_kernel<<<sms * 8, 256>>>(src, bytes / 16, sink);
        CK(cudaEventRecord(ev[2 * i + 1]));
        if (pass == 0) CK(cudaEventSynchronize(ev[2 * i + 1]));
      }
      CK(cudaDeviceSynchronize());
      for (int i = 20; i < 200; ++i) {
        float ms;
        CK(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]));
        (pass == 0 ? serial : pipelined).push_back(ms);
      }
    }
    for (auto& e : ev) cudaEventDestroy(e);
    std::sort(serial.begin(), serial.end());
    std::sort(pipelined.begin(), pipelined.end());
    const float a = serial[serial.size() / 2] * 1e3f, b = pipelined[pipelined.size() / 2] * 1e3f;
    printf("ldg %6.1f MB: one by one %6.1f us (%4.0f GB/s), back to back %6.1f us (%4.0f GB/s)\n", bytes * 1e-6, a,
           bytes / (a * 1e-6) * 1e-9, b, bytes / (b * 1e-6) * 1e-9);
  }
  cudaFree(buf);
  return 0;
}

int main(int argc, char** argv) {
  int sms = 0; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  if (argc > 1 && std::string(argv[1]) == "--sizes") {
    int* sink;
    CK(cudaMalloc(&sink, 4));
    return size_sweep(sms, sink);
  }
  const size_t total = size_t(sms) * PER_BLOCK * STAGE;
  unsigned char* buf; int* sink;
  CK(cudaMalloc(&buf, total)); CK(cudaMalloc(&sink, 4)); CK(cudaMemset(buf, 1, total));
  for (int blocks_per_sm : {4, 8}) {
    const float ms = time_ms([&] { ldg_kernel<<<sms * blocks_per_sm, 256>>>(reinterpret_cast<const uint4*>(buf), total / 16, sink); });
    printf("ldg      contiguous %2d warps/SM:   %7.1f us  %6.0f GB/s\n", blocks_per_sm * 8, ms * 1e3, total / (ms * 1e-3) * 1e-9);
  }
  probe<4, 0, 0>(buf, sink, sms); probe<8, 0, 0>(buf, sink, sms);
  probe<4, 1, 0>(buf, sink, sms); probe<8, 1, 0>(buf, sink, sms);
  probe<8, 1, 0, 1>(buf, sink, sms); probe<8, 1, 0, 2>(buf, sink, sms); probe<8, 1, 0, 3>(buf, sink, sms);
  probe<8, 1, 0, 4>(buf, sink, sms);
  probe<8, 1, 0, 0, 86016 / 1024 * 1024, 2>(buf, sink, sms);       // decode version 4's 32-row stage: 2 x 84 KB
  probe<8, 1, 0, 4, 86016 / 1024 * 1024, 2>(buf, sink, sms);
  probe<8, 1, 0, 0, 16384, 12>(buf, sink, sms);
  probe<1, 1, 1>(buf, sink, sms);
  probe<8, 2, 0>(buf, sink, sms);  // all SMs read the same 256 KB: L2-hit rate of a shared operand (x, bit-planes)
  CK(cudaDeviceSynchronize());
  return 0;
}
