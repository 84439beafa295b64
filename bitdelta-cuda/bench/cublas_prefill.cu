// cublas_prefill.cu -- the baseline of StepBenchmark's prefill: the projections of the Llama-2-7B shape for `tokens`
// prompt tokens through one F16 model with cuBLAS (cublasGemmEx, F16 inputs, F32 accumulation, F16 output), 32 layers
// of q|k|v [12288, 4096], o [4096, 4096], gate|up [22016, 4096] and down [4096, 11008]. GEMMs only: no attention, norms
// or lm_head, so it is a lower bound of any base-alone F16 prefill of those tokens. Random weights (one layer's
// weights reused by every layer: the GEMMs are compute-bound, so reuse does not flatter them) and activations.
//
// Build and run on the GPU host (bench/step-benchmark-device.sh does this):
//   nvcc -std=c++17 -O2 -gencode arch=compute_90,code=sm_90 bitdelta-cuda/bench/cublas_prefill.cu -lcublas -o cublas_prefill
//   ./cublas_prefill [tokens (default 4096 = 16 prompts of 256)] [repetitions (default 5)]
// Prints one line per repetition and a last line "cublas_prefill tokens=N median_ms=X tflops=Y".
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "bench_check.h"

static __half* random_halves(size_t count, float magnitude, std::mt19937& rng) {
  std::vector<__half> host(count);
  std::uniform_real_distribution<float> u(-magnitude, magnitude);
  for (auto& h : host) h = __float2half(u(rng));
  __half* device = nullptr;
  CUDA_CHECK(cudaMalloc(&device, count * sizeof(__half)));
  CUDA_CHECK(cudaMemcpy(device, host.data(), count * sizeof(__half), cudaMemcpyHostToDevice));
  return device;
}

int main(int argc, char** argv) {
  const int tokens = argc > 1 ? std::atoi(argv[1]) : 4096;
  const int repetitions = argc > 2 ? std::atoi(argv[2]) : 5;
  const int hidden = 4096, intermediate = 11008, layers = 32;
  struct Gemm { int M, K; };  // Y [tokens, M] = X [tokens, K] W^T, W [M, K] row-major
  const Gemm gemms[] = {{3 * hidden, hidden}, {hidden, hidden}, {2 * intermediate, hidden}, {hidden, intermediate}};
  std::mt19937 rng(1234);
  __half* weights[4];
  __half* inputs[4];
  __half* outputs[4];
  double flops = 0;
  for (int g = 0; g < 4; ++g) {
    weights[g] = random_halves(size_t(gemms[g].M) * gemms[g].K, 0.02f, rng);
    inputs[g] = random_halves(size_t(tokens) * gemms[g].K, 1.0f, rng);
    CUDA_CHECK(cudaMalloc(&outputs[g], size_t(tokens) * gemms[g].M * sizeof(__half)));
    flops += 2.0 * tokens * gemms[g].M * gemms[g].K * layers;
  }
  cublasHandle_t handle;
  CUBLAS_CHECK(cublasCreate(&handle));
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreate(&stream));
  CUBLAS_CHECK(cublasSetStream(handle, stream));
  const float one = 1.f, zero = 0.f;
  auto model = [&]() {
    for (int layer = 0; layer < layers; ++layer)
      for (int g = 0; g < 4; ++g)
        // Column-major view: Y^T [M, tokens] = W [M, K] (W^T of the row-major [M, K] seen column-major) x X^T [K, tokens].
        CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, gemms[g].M, tokens, gemms[g].K, &one, weights[g], CUDA_R_16F,
                               gemms[g].K, inputs[g], CUDA_R_16F, gemms[g].K, &zero, outputs[g], CUDA_R_16F, gemms[g].M,
                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  model();  // warm-up (heuristics, workspace)
  CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaEvent_t start, end;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&end));
  std::vector<float> times;
  for (int i = 0; i < repetitions; ++i) {
    CUDA_CHECK(cudaEventRecord(start, stream));
    model();
    CUDA_CHECK(cudaEventRecord(end, stream));
    CUDA_CHECK(cudaEventSynchronize(end));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, end));
    times.push_back(ms);
    std::printf("cublas_prefill repetition %d: %.2f ms (%.0f TFLOP/s)\n", i, ms, flops / (ms * 1e-3) / 1e12);
  }
  std::sort(times.begin(), times.end());
  const float median = times[times.size() / 2];
  cudaDeviceProp properties;
  CUDA_CHECK(cudaGetDeviceProperties(&properties, 0));
  std::printf("cublas_prefill device=\"%s\" tokens=%d median_ms=%.3f tflops=%.1f\n", properties.name, tokens, median,
              flops / (median * 1e-3) / 1e12);
  for (int g = 0; g < 4; ++g) cudaFree(weights[g]), cudaFree(inputs[g]), cudaFree(outputs[g]);
  cublasDestroy(handle);
  return 0;
}
