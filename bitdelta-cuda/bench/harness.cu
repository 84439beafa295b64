// harness.cu -- correctness checks and timings of libbitdelta_cuda in one run (bench/README.md).
//
//   bd_harness [--quick] [--no-checks] [--no-bench] [--decode-only] [--back-to-back] [--launch-overhead]
//              [--seed=N] [--profile]
//   (prints the seed; fresh random inputs every run; table last)
//
// Runs against the experiment library (bench/build.sh --harness-only) or the release library: forms the library
// was built without (BD_ERR_NOT_BUILT) are reported as skipped, never as passed.
// Correctness: every kernel against a CPU reference in double (decode/prefill on sampled output columns m,
// all rows r; every output element checked for the NaN poison), relative error ||y-ref|| / ||ref|| < 2e-3.
// Compression: signs, row scales and matrix scale compared bit for bit with a CPU compressor written as the
// Java one is specified (float difference, left-to-right double sums).
// Timing: CUDA events around each call, warm-up, median of many, input sets rotated so the working set
// exceeds the 50 MB L2; floor = bytes that must move / measured device-to-device copy bandwidth. Calls are timed
// one by one (the host waits for each), or with --back-to-back enqueued without waiting (see time_us).
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#ifndef BD_HARNESS_NO_CUBLAS_HEADER
#include <cublas_v2.h>
#else
// Minimal declarations (compile check on a machine without cuBLAS headers; never linked there).
typedef struct cublasContext* cublasHandle_t;
typedef enum { CUBLAS_STATUS_SUCCESS = 0 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
extern "C" cublasStatus_t cublasCreate_v2(cublasHandle_t*);
extern "C" cublasStatus_t cublasSetStream_v2(cublasHandle_t, cudaStream_t);
extern "C" cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                                       const void*, cudaDataType, int, const void*, cudaDataType, int, const void*,
                                       void*, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
extern "C" cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                                     int, const void*, const void*, cudaDataType, int, long long,
                                                     const void*, cudaDataType, int, long long, const void*, void*,
                                                     cudaDataType, int, long long, int, cublasComputeType_t,
                                                     cublasGemmAlgo_t);
#define cublasCreate cublasCreate_v2
#define cublasSetStream cublasSetStream_v2
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bitdelta_cuda.h"
#include "bench_check.h"

constexpr int DECODE_VARIANTS = BD_DECODE_BINARY_LEAN;  // the last bd_decode_variant (bitdelta_cuda.h)
static const char* variant_name(int variant) {
  switch (variant) {
    case BD_DECODE_AUTO: return "auto";
    case BD_DECODE_SPLIT_K: return "v1 split-K";
    case BD_DECODE_PIPELINED: return "v2 pipelined";
    case BD_DECODE_PIPELINED_M32: return "v2 pipelined M32";
    case BD_DECODE_BINARY: return "v3 binary";
    case BD_DECODE_BINARY_M32: return "v3 binary M32";
    case BD_DECODE_BINARY_LEAN: return "v3 binary lean";
    default: return "?";
  }
}

// ---------------------------------------------------------------------------------------------------- rng
static uint64_t g_seed;
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s += 0x9E3779B97F4A7C15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1p-53; }            // [0, 1)
  float sym(float a) { return float((uniform() * 2.0 - 1.0) * a); }       // [-a, a)
};

// 16-bit encodings on the host.
static uint16_t f2h(float v, int dtype) {
  if (dtype == BD_DTYPE_F16) { __half h = __float2half_rn(v); uint16_t u; std::memcpy(&u, &h, 2); return u; }
  __nv_bfloat16 b = __float2bfloat16_rn(v); uint16_t u; std::memcpy(&u, &b, 2); return u;
}
static float h2f(uint16_t u, int dtype) {
  if (dtype == BD_DTYPE_F16) { __half h; std::memcpy(&h, &u, 2); return __half2float(h); }
  uint32_t w = uint32_t(u) << 16; float f; std::memcpy(&f, &w, 4); return f;
}
static const char* dname(int d) { return d == BD_DTYPE_F16 ? "f16" : d == BD_DTYPE_BF16 ? "bf16" : "f32"; }

static std::vector<uint16_t> random16(size_t n, float amp, int dtype, Rng& rng) {
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = f2h(rng.sym(amp), dtype);
  return v;
}
static std::vector<uint8_t> random_signs(int64_t M, int64_t K, Rng& rng) {
  const int64_t rb = (K + 7) / 8;
  std::vector<uint8_t> p(size_t(M * rb));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t b = 0; b < rb; ++b) {
      uint8_t byte = uint8_t(rng.next());
      const int64_t valid = std::min<int64_t>(8, K - 8 * b);
      if (valid < 8) byte &= uint8_t((1u << valid) - 1u);
      p[size_t(m * rb + b)] = byte;
    }
  return p;
}
template <typename V> static V* to_device(const std::vector<V>& h) {
  V* d = nullptr;
  CUDA_CHECK(cudaMalloc(&d, std::max<size_t>(1, h.size() * sizeof(V))));
  if (!h.empty()) CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(V), cudaMemcpyHostToDevice));
  return d;
}
template <typename V> static std::vector<V> to_host(const V* d, size_t n) {
  std::vector<V> h(n);
  CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(V), cudaMemcpyDeviceToHost));
  return h;
}

static int g_failures = 0, g_skipped = 0;
static std::vector<std::string> g_check_lines;
static void report(bool ok, const std::string& line) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", line.c_str());
  std::fflush(stdout);
  if (!ok) ++g_failures;
  g_check_lines.push_back(std::string(ok ? "PASS " : "FAIL ") + line);
}
// A check this library cannot run (a form it was built without): neither passed nor failed.
static void skip(const std::string& line) {
  std::printf("SKIP %s\n", line.c_str());
  std::fflush(stdout);
  ++g_skipped;
}
// Whether the library is the experiment build: it has the M32 decode forms and honours BD_PREFILL_KERNEL.
static bool g_experiments = false;

// ---------------------------------------------------------------------------------------------------- tenants
struct TenantSet {            // T tenants' sign matrices (device layout) and scales, with device pointer tables
  int T = 0;
  std::vector<std::vector<uint8_t>> packed;      // host layout, kept for the reference
  std::vector<std::vector<float>> scales;
  std::vector<uint32_t*> d_signs;
  std::vector<float*> d_scales;
  const uint32_t** d_sign_table = nullptr;
  const float** d_scale_table = nullptr;
};
static TenantSet make_tenants(int T, int64_t M, int64_t K, bool per_row, Rng& rng, bool keep_host = true) {
  TenantSet ts;
  ts.T = T;
  uint8_t* d_packed = nullptr;
  const size_t packed_bytes = size_t(M * ((K + 7) / 8));
  CUDA_CHECK(cudaMalloc(&d_packed, packed_bytes));
  for (int t = 0; t < T; ++t) {
    std::vector<uint8_t> p = random_signs(M, K, rng);
    std::vector<float> s(per_row ? size_t(M) : 1);
    for (auto& v : s) v = float(0.01 + 0.04 * rng.uniform());
    CUDA_CHECK(cudaMemcpy(d_packed, p.data(), packed_bytes, cudaMemcpyHostToDevice));
    uint32_t* d_s = nullptr;
    CUDA_CHECK(cudaMalloc(&d_s, bd_signs_device_bytes(M, K)));
    CUDA_CHECK(cudaMemset(d_s, 0xAB, bd_signs_device_bytes(M, K)));  // poison: repack must write every word
    BD_CHECK(bd_repack_signs(d_packed, d_s, M, K, 0));
    ts.d_signs.push_back(d_s);
    ts.d_scales.push_back(to_device(s));
    if (keep_host) { ts.packed.push_back(std::move(p)); ts.scales.push_back(std::move(s)); }
  }
  CUDA_CHECK(cudaFree(d_packed));
  std::vector<const uint32_t*> st(ts.d_signs.begin(), ts.d_signs.end());
  std::vector<const float*> sc(ts.d_scales.begin(), ts.d_scales.end());
  ts.d_sign_table = to_device(st);
  ts.d_scale_table = to_device(sc);
  return ts;
}
static void free_tenants(TenantSet& ts) {
  for (auto p : ts.d_signs) cudaFree(p);
  for (auto p : ts.d_scales) cudaFree(p);
  cudaFree(ts.d_sign_table);
  cudaFree(ts.d_scale_table);
  ts = TenantSet();
}
static inline int sign_of(const std::vector<uint8_t>& p, int64_t K, int64_t m, int64_t k) {
  return ((p[size_t(m * ((K + 7) / 8) + k / 8)] >> (k & 7)) & 1) ? 1 : -1;
}

static std::vector<int64_t> sample_columns(int64_t M, Rng& rng, int count = 48) {
  std::vector<int64_t> ms = {0, M - 1};
  for (int i = 0; i < 15 && i < M; ++i) ms.push_back(i);           // first m16 tile
  for (int i = 0; i < count; ++i) ms.push_back(int64_t(rng.uniform() * double(M)));
  std::sort(ms.begin(), ms.end());
  ms.erase(std::unique(ms.begin(), ms.end()), ms.end());
  return ms;
}

// y (y_dtype) all written (no NaN poison left) except where NaN is expected (expect_nan rows).
static bool all_written(const std::vector<uint8_t>& ybytes, int y_dtype, int64_t R, int64_t M,
                        const std::vector<int>& nan_rows, int64_t* first_bad) {
  for (int64_t r = 0; r < R; ++r) {
    const bool expect_nan = std::find(nan_rows.begin(), nan_rows.end(), int(r)) != nan_rows.end();
    for (int64_t m = 0; m < M; ++m) {
      float v;
      if (y_dtype == BD_DTYPE_F32) std::memcpy(&v, &ybytes[size_t((r * M + m) * 4)], 4);
      else { uint16_t u; std::memcpy(&u, &ybytes[size_t((r * M + m) * 2)], 2); v = h2f(u, y_dtype); }
      if (std::isnan(v) != expect_nan) { *first_bad = r * M + m; return false; }
    }
  }
  return true;
}
static float y_at(const std::vector<uint8_t>& yb, int y_dtype, int64_t idx) {
  if (y_dtype == BD_DTYPE_F32) { float v; std::memcpy(&v, &yb[size_t(idx * 4)], 4); return v; }
  uint16_t u; std::memcpy(&u, &yb[size_t(idx * 2)], 2); return h2f(u, y_dtype);
}
static size_t ysize(int y_dtype) { return y_dtype == BD_DTYPE_F32 ? 4 : 2; }

// ---------------------------------------------------------------------------------------------------- decode check
static void check_decode(int dtype, int y_dtype, int64_t M, int64_t K, int R, int T, bool per_row, bool mixed,
                         Rng& rng) {
  std::vector<uint16_t> W = random16(size_t(M * K), 0.05f, dtype, rng);
  std::vector<uint16_t> x = random16(size_t(R) * K, 1.0f, dtype, rng);
  TenantSet ts = make_tenants(T, M, K, per_row, rng);
  std::vector<int32_t> tenant(R);
  std::vector<int> nan_rows;
  for (int r = 0; r < R; ++r) tenant[r] = mixed ? int(rng.next() % uint64_t(T + 1)) - 1 : r % T;
  if (mixed && R >= 3) { tenant[R - 1] = T; nan_rows.push_back(R - 1); }  // out-of-range index -> NaN row
  uint16_t* d_W = to_device(W);
  uint16_t* d_x = to_device(x);
  int32_t* d_t = to_device(tenant);
  void* d_y = nullptr;
  CUDA_CHECK(cudaMalloc(&d_y, size_t(R) * M * ysize(y_dtype)));
  // Reference on sampled columns (all rows), once; then every kernel version against it.
  std::vector<int64_t> ms = sample_columns(M, rng);
  std::vector<double> refs;
  for (int r = 0; r < R; ++r) {
    if (std::find(nan_rows.begin(), nan_rows.end(), r) != nan_rows.end()) continue;
    for (int64_t m : ms) {
      double base = 0, delta = 0;
      const int t = tenant[r];
      for (int64_t k = 0; k < K; ++k) {
        const double xv = h2f(x[size_t(r * K + k)], dtype);
        base += xv * h2f(W[size_t(m * K + k)], dtype);
        if (t >= 0) delta += xv * sign_of(ts.packed[t], K, m, k);
      }
      double ref = base;
      if (t >= 0) ref += double(ts.scales[t][per_row ? size_t(m) : 0]) * delta;
      refs.push_back(ref);
    }
  }
  const size_t wsb = bd_decode_workspace_bytes(M, K, R);
  void* d_ws = nullptr;
  CUDA_CHECK(cudaMalloc(&d_ws, std::max<size_t>(wsb, 1)));
  // The automatic choice, every forced variant, then the automatic choice without a workspace (version 1 up to
  // 8 rows, else version 2). Variants the library was built without are reported as skipped.
  for (int pass = 0; pass <= DECODE_VARIANTS + 1; ++pass) {
  const bool no_ws = pass == DECODE_VARIANTS + 1;
  const int variant = no_ws ? BD_DECODE_AUTO : pass;
  const int set_status = bd_debug_set_decode_variant(variant);
  if (set_status == BD_ERR_NOT_BUILT) {
    char line[200];
    std::snprintf(line, sizeof(line), "decode %-16s %-4s->%-4s M=%-5lld K=%-5lld R=%-2d: not built into this library",
                  variant_name(variant), dname(dtype), dname(y_dtype), (long long)M, (long long)K, R);
    skip(line);
    continue;
  }
  BD_CHECK(set_status);
  CUDA_CHECK(cudaMemset(d_y, 0xFF, size_t(R) * M * ysize(y_dtype)));  // NaN poison
  CUDA_CHECK(cudaMemset(d_ws, 0xA5, std::max<size_t>(wsb, 1)));      // workspace garbage
  BD_CHECK(bd_decode(dtype, y_dtype, d_W, d_x, d_t, R, ts.d_sign_table, ts.d_scale_table, T,
                     per_row ? BD_SCALE_PER_ROW : BD_SCALE_PER_MATRIX, d_y, M, K, no_ws ? nullptr : d_ws,
                     no_ws ? 0 : wsb, 0));
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<uint8_t> yb = to_host(static_cast<uint8_t*>(d_y), size_t(R) * M * ysize(y_dtype));
  int64_t bad = -1;
  const bool written = all_written(yb, y_dtype, R, M, nan_rows, &bad);
  double num = 0, den = 0;
  size_t ri = 0;
  for (int r = 0; r < R; ++r) {
    if (std::find(nan_rows.begin(), nan_rows.end(), r) != nan_rows.end()) continue;
    for (int64_t m : ms) {
      const double ref = refs[ri++];
      const double got = y_at(yb, y_dtype, r * M + m);
      num += (got - ref) * (got - ref);
      den += ref * ref;
    }
  }
  const double rel = std::sqrt(num / std::max(den, 1e-300));
  char line[320];
  // The lean form falls back to version 3 (M16) where it does not apply (K % 256 != 0; the buffers here are
  // cudaMalloc'd, so always aligned): say which kernel the line checked.
  const char* ran = variant == BD_DECODE_BINARY_LEAN && K % 256 != 0 ? " (lean form does not apply: version 3 ran)"
                    : no_ws ? (R <= 8 ? " (no workspace: version 1 ran)" : " (no workspace: version 2 ran)")
                    : "";
  std::snprintf(line, sizeof(line), "decode %-16s %-4s->%-4s M=%-5lld K=%-5lld R=%-2d tenants=%-2d %s%s rel_err=%.2e%s%s",
                variant_name(variant), dname(dtype), dname(y_dtype), (long long)M, (long long)K, R, T,
                per_row ? "per-row" : "per-matrix", mixed ? " mixed(-1,out-of-range)" : "", rel,
                written ? "" : " UNWRITTEN/NaN", ran);
  report(written && rel < 2e-3, line);
  }
  BD_CHECK(bd_debug_set_decode_variant(BD_DECODE_AUTO));
  cudaFree(d_ws);
  // Layout round trip for tenant 0.
  if (T > 0) {
    uint8_t* d_p = nullptr;
    const size_t pb = size_t(M * ((K + 7) / 8));
    CUDA_CHECK(cudaMalloc(&d_p, pb));
    BD_CHECK(bd_unpack_signs(ts.d_signs[0], d_p, M, K, 0));
    std::vector<uint8_t> back = to_host(d_p, pb);
    const bool same = back == ts.packed[0];
    if (!same) report(false, "repack/unpack round trip of tenant 0 differs");
    cudaFree(d_p);
  }
  cudaFree(d_W); cudaFree(d_x); cudaFree(d_t); cudaFree(d_y);
  free_tenants(ts);
}

// ---------------------------------------------------------------------------------------------------- prefill check
static void check_prefill(int dtype, int y_dtype, int64_t M, int64_t K, const std::vector<int>& seg_len,
                          const std::vector<int>& seg_ten, int T, bool with_base, bool per_row, bool accumulate,
                          Rng& rng) {
  const int S = int(seg_len.size());
  std::vector<int32_t> offs(S + 1, 0);
  for (int s = 0; s < S; ++s) offs[s + 1] = offs[s] + seg_len[s];
  const int R = offs[S];
  std::vector<uint16_t> W = random16(size_t(M * K), 0.05f, dtype, rng);
  std::vector<uint16_t> x = random16(size_t(R) * K, 1.0f, dtype, rng);
  TenantSet ts = make_tenants(T, M, K, per_row, rng);
  std::vector<uint8_t> y0(size_t(R) * M * ysize(y_dtype));
  if (accumulate)
    for (size_t i = 0; i < size_t(R) * M; ++i) {
      const float v = rng.sym(1.0f);
      if (y_dtype == BD_DTYPE_F32) std::memcpy(&y0[i * 4], &v, 4);
      else { uint16_t u = f2h(v, y_dtype); std::memcpy(&y0[i * 2], &u, 2); }
    }
  else std::memset(y0.data(), 0xFF, y0.size());  // NaN poison
  uint16_t* d_W = with_base ? to_device(W) : nullptr;
  uint16_t* d_x = to_device(x);
  int32_t* d_offs = to_device(offs);
  std::vector<int32_t> tens(seg_ten.begin(), seg_ten.end());
  int32_t* d_tens = to_device(tens);
  uint8_t* d_y = to_device(y0);
  BD_CHECK(bd_prefill(dtype, y_dtype, d_W, d_x, R, d_offs, d_tens, S, ts.d_sign_table, ts.d_scale_table, T,
                      per_row ? BD_SCALE_PER_ROW : BD_SCALE_PER_MATRIX, accumulate ? 1 : 0, d_y, M, K, nullptr, 0, 0));
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<uint8_t> yb = to_host(d_y, y0.size());
  std::vector<int> nan_rows;
  for (int s = 0; s < S; ++s)
    if (seg_ten[s] >= T)
      for (int r = offs[s]; r < offs[s + 1]; ++r) nan_rows.push_back(r);
  int64_t bad = -1;
  const bool written = all_written(yb, y_dtype, R, M, nan_rows, &bad);
  std::vector<int64_t> ms = sample_columns(M, rng, 24);
  double num = 0, den = 0;
  for (int s = 0; s < S; ++s) {
    const int t = seg_ten[s];
    if (t >= T) continue;
    for (int r = offs[s]; r < offs[s + 1]; ++r) {
      if (seg_len[s] > 16 && (r - offs[s]) % 5 != 0 && r != offs[s + 1] - 1) continue;  // sample rows too
      for (int64_t m : ms) {
        double base = 0, delta = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double xv = h2f(x[size_t(int64_t(r) * K + k)], dtype);
          if (with_base) base += xv * h2f(W[size_t(m * K + k)], dtype);
          if (t >= 0) delta += xv * sign_of(ts.packed[t], K, m, k);
        }
        double ref = base;
        if (t >= 0) ref += double(ts.scales[t][per_row ? size_t(m) : 0]) * delta;
        if (accumulate) ref += y_at(y0, y_dtype, int64_t(r) * M + m);
        const double got = y_at(yb, y_dtype, int64_t(r) * M + m);
        num += (got - ref) * (got - ref);
        den += ref * ref;
      }
    }
  }
  const double rel = std::sqrt(num / std::max(den, 1e-300));
  std::string segs;
  for (int s = 0; s < S; ++s) segs += (s ? "," : "") + std::to_string(seg_len[s]) + ":" + std::to_string(seg_ten[s]);
  char line[320];
  std::snprintf(line, sizeof(line), "prefill %-4s->%-4s M=%-5lld K=%-5lld segs[len:tenant]=%s %s%s%s rel_err=%.2e%s",
                dname(dtype), dname(y_dtype), (long long)M, (long long)K, segs.c_str(), with_base ? "base+delta" : "delta",
                per_row ? " per-row" : "", accumulate ? " accumulate" : "", rel, written ? "" : " UNWRITTEN/NaN");
  if (const char* kern = std::getenv("BD_PREFILL_KERNEL")) {
    std::strncat(line, " [", sizeof(line) - std::strlen(line) - 1);
    std::strncat(line, kern, sizeof(line) - std::strlen(line) - 1);
    std::strncat(line, "]", sizeof(line) - std::strlen(line) - 1);
  }
  report(written && rel < 2e-3, line);
  if (d_W) cudaFree(d_W);
  cudaFree(d_x); cudaFree(d_offs); cudaFree(d_tens); cudaFree(d_y);
  free_tenants(ts);
}

// ---------------------------------------------------------------------------------------------------- compression
struct CpuCompressed {
  std::vector<uint8_t> signs;
  std::vector<double> row_sums;
  std::vector<float> row_scales;
  float matrix_scale;
};
// The CPU compressor as specified for the Java side: d = float(ft) - float(base) (F32), bit = d >= 0,
// row sum of |d| in double left to right, row scale = (float)(sum / K), matrix scale = (float)(sum of row
// sums in double, m = 0..M-1, / (M*K)).
static CpuCompressed cpu_compress(const std::vector<uint16_t>& base, const std::vector<uint16_t>& ft, int dtype,
                                  int64_t M, int64_t K) {
  CpuCompressed c;
  const int64_t rb = (K + 7) / 8;
  c.signs.assign(size_t(M * rb), 0);
  c.row_sums.resize(size_t(M));
  c.row_scales.resize(size_t(M));
  double total = 0;
  for (int64_t m = 0; m < M; ++m) {
    double s = 0;
    for (int64_t k = 0; k < K; ++k) {
      const volatile float fb = h2f(base[size_t(m * K + k)], dtype), ff = h2f(ft[size_t(m * K + k)], dtype);
      const float d = ff - fb;
      if (d >= 0.f) c.signs[size_t(m * rb + k / 8)] |= uint8_t(1u << (k & 7));
      s += double(std::fabs(d));
    }
    c.row_sums[size_t(m)] = s;
    c.row_scales[size_t(m)] = float(s / double(K));
    total += s;
  }
  c.matrix_scale = float(total / (double(M) * double(K)));
  return c;
}
static bool same_float_bits(float a, float b) { uint32_t x, y; std::memcpy(&x, &a, 4); std::memcpy(&y, &b, 4); return x == y; }

// A fine-tune of `base`: each weight moved by a uniform amount in [-0.004, 0.004), rounded to dtype.
static std::vector<uint16_t> random_finetune(const std::vector<uint16_t>& base, int dtype, Rng& rng) {
  std::vector<uint16_t> ft(base.size());
  for (size_t i = 0; i < ft.size(); ++i) ft[i] = f2h(h2f(base[i], dtype) + rng.sym(0.004f), dtype);
  return ft;
}

// bd_compress's device outputs and workspace for an [M, K] pair (row sums only where asked for), freed with it.
struct CompressBuffers {
  const int64_t M, K;
  const size_t workspace_bytes;
  uint8_t* signs = nullptr;
  float* row_scales = nullptr;
  float* matrix_scale = nullptr;
  double* row_sums = nullptr;
  void* workspace = nullptr;
  CompressBuffers(int64_t rows, int64_t cols, bool sums)
      : M(rows), K(cols), workspace_bytes(bd_compress_workspace_bytes(rows, cols)) {
    CUDA_CHECK(cudaMalloc(&signs, size_t(M * ((K + 7) / 8))));
    CUDA_CHECK(cudaMalloc(&row_scales, size_t(M) * 4));
    CUDA_CHECK(cudaMalloc(&matrix_scale, 4));
    if (sums) CUDA_CHECK(cudaMalloc(&row_sums, size_t(M) * 8));
    CUDA_CHECK(cudaMalloc(&workspace, workspace_bytes));
  }
  CompressBuffers(const CompressBuffers&) = delete;
  CompressBuffers& operator=(const CompressBuffers&) = delete;
  ~CompressBuffers() {
    for (void* p : {static_cast<void*>(signs), static_cast<void*>(row_scales), static_cast<void*>(matrix_scale),
                    static_cast<void*>(row_sums), workspace})
      cudaFree(p);
  }
  // bd_compress of the device pair (base, ft) of dtype into these buffers, on the default stream.
  void compress(int dtype, const void* base, const void* ft) const {
    BD_CHECK(bd_compress(dtype, base, ft, M, K, signs, row_scales, matrix_scale, row_sums, workspace, workspace_bytes, 0));
  }
};

static void check_compress(int dtype, int64_t M, int64_t K, int special, Rng& rng) {
  std::vector<uint16_t> base = random16(size_t(M * K), 0.05f, dtype, rng);
  std::vector<uint16_t> ft = random_finetune(base, dtype, rng);
  std::string what = "random";
  if (special == 1) {  // rows that leave the exact fast path
    what = "special rows (|d|>=1024, tiny off-grid, equal, sum>=2^13, Inf)";
    for (int64_t k = 0; k < K; ++k) {
      if (M > 0) { base[size_t(0 * K + k)] = f2h(-1500.f, dtype); ft[size_t(0 * K + k)] = f2h(rng.sym(600.f), dtype); }
      if (M > 1) { base[size_t(1 * K + k)] = f2h(rng.sym(1e-20f), dtype); ft[size_t(1 * K + k)] = f2h(rng.sym(3e-20f), dtype); }
      if (M > 2) { ft[size_t(2 * K + k)] = base[size_t(2 * K + k)]; }
      if (M > 3) { base[size_t(3 * K + k)] = f2h(rng.sym(8.f), dtype); ft[size_t(3 * K + k)] = f2h(rng.sym(8.f), dtype); }
    }
    if (dtype == BD_DTYPE_F16) {  // F16 cannot hold 1e-20: use its smallest subnormals instead (on grid)
      for (int64_t k = 0; k < K; ++k) { base[size_t(1 * K + k)] = uint16_t(rng.next() & 0x3); ft[size_t(1 * K + k)] = uint16_t(rng.next() & 0x3); }
    }
  } else if (special == 2) {
    what = "ft == base";
    ft = base;
  }
  CpuCompressed ref = cpu_compress(base, ft, dtype, M, K);
  uint16_t* d_b = to_device(base);
  uint16_t* d_f = to_device(ft);
  const int64_t rb = (K + 7) / 8;
  CompressBuffers out(M, K, true);
  CUDA_CHECK(cudaMemset(out.signs, 0x5A, size_t(M * rb)));
  CUDA_CHECK(cudaMemset(out.row_scales, 0xFF, size_t(M) * 4));
  CUDA_CHECK(cudaMemset(out.matrix_scale, 0xFF, 4));
  CUDA_CHECK(cudaMemset(out.workspace, 0x77, out.workspace_bytes));
  out.compress(dtype, d_b, d_f);
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<uint8_t> s = to_host(out.signs, size_t(M * rb));
  std::vector<float> rs = to_host(out.row_scales, size_t(M));
  std::vector<double> sums = to_host(out.row_sums, size_t(M));
  float ms; CUDA_CHECK(cudaMemcpy(&ms, out.matrix_scale, 4, cudaMemcpyDeviceToHost));
  int64_t sign_diff = 0, scale_diff = 0, sum_diff = 0;
  for (size_t i = 0; i < s.size(); ++i) sign_diff += s[i] != ref.signs[i];
  for (int64_t m = 0; m < M; ++m) {
    scale_diff += !same_float_bits(rs[size_t(m)], ref.row_scales[size_t(m)]);
    sum_diff += std::memcmp(&sums[size_t(m)], &ref.row_sums[size_t(m)], 8) != 0;
  }
  const bool ms_ok = same_float_bits(ms, ref.matrix_scale);
  char line[320];
  std::snprintf(line, sizeof(line),
                "compress %-4s M=%-5lld K=%-5lld %s: sign bytes differing %lld, row scales differing %lld, row sums "
                "differing %lld, matrix scale %.9g vs cpu %.9g",
                dname(dtype), (long long)M, (long long)K, what.c_str(), (long long)sign_diff, (long long)scale_diff,
                (long long)sum_diff, ms, ref.matrix_scale);
  report(sign_diff == 0 && scale_diff == 0 && sum_diff == 0 && ms_ok, line);
  cudaFree(d_b); cudaFree(d_f);
}

// ---------------------------------------------------------------------------------------------------- timing
static double median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : double(v[v.size() / 2]);
}
// --back-to-back: every call between its own pair of events, but the host never waits between calls, so it
// enqueues ahead of the GPU as a decoder enqueueing its layers does (triton.testing.do_bench times the same way).
// Each call's time is then the GPU's alone; one by one (the default), each also holds the host's launch latency,
// since the GPU idles from the first event until the host has launched the call.
static bool g_back_to_back = false;

// Times fn(set) with events, rotating over nsets input sets; returns the median in microseconds.
template <typename F> static double time_us(int nsets, int warmup, int reps, F fn) {
  std::vector<cudaEvent_t> events(2 * size_t(reps));
  for (auto& e : events) CUDA_CHECK(cudaEventCreate(&e));
  for (int i = 0; i < warmup; ++i) fn(i % nsets);
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> ts;
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(events[2 * i]));
    fn(i % nsets);
    CUDA_CHECK(cudaEventRecord(events[2 * i + 1]));
    if (!g_back_to_back) CUDA_CHECK(cudaEventSynchronize(events[2 * i + 1]));
  }
  CUDA_CHECK(cudaDeviceSynchronize());
  for (int i = 0; i < reps; ++i) {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, events[2 * i], events[2 * i + 1]));
    ts.push_back(ms * 1000.f);
  }
  CUDA_CHECK(cudaGetLastError());
  for (auto& e : events) cudaEventDestroy(e);
  return median(ts);
}

static double g_bw = 0;  // bytes/s, read + write, device-to-device copy
static double measure_copy_bandwidth() {
  const size_t bytes = size_t(1) << 30;
  void *a, *b;
  CUDA_CHECK(cudaMalloc(&a, bytes));
  CUDA_CHECK(cudaMalloc(&b, bytes));
  CUDA_CHECK(cudaMemset(a, 1, bytes));
  CUDA_CHECK(cudaMemset(b, 2, bytes));
  const double us = time_us(1, 3, 20, [&](int) { CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); });
  cudaFree(a);
  cudaFree(b);
  return 2.0 * double(bytes) / (us * 1e-6);
}

struct Row { std::string name; double us, floor_us, base_us; std::string base_name; std::string note; };
static std::vector<Row> g_rows;

static void bench_decode(cublasHandle_t handle, int64_t M, int64_t K, int T, Rng& rng, bool quick) {
  const int dtype = BD_DTYPE_F16;
  const size_t set_bytes = size_t(M * K) * 2 + size_t(T) * bd_signs_device_bytes(M, K) + size_t(T) * K * 2;
  const int nsets = int(std::min<size_t>(8, std::max<size_t>(2, (size_t(256) << 20) / set_bytes + 1)));
  struct Set { uint16_t* W; uint16_t* x; int32_t* ten; TenantSet ts; void* y; };
  std::vector<Set> sets(nsets);
  std::vector<int32_t> tenant(T);
  for (int r = 0; r < T; ++r) tenant[r] = r;
  for (auto& s : sets) {
    s.W = to_device(random16(size_t(M * K), 0.05f, dtype, rng));
    s.x = to_device(random16(size_t(T) * K, 1.0f, dtype, rng));
    s.ten = to_device(tenant);
    s.ts = make_tenants(T, M, K, false, rng, false);
    CUDA_CHECK(cudaMalloc(&s.y, size_t(T) * M * 2));
  }
  const int reps = quick ? 30 : 200;
  double vus[DECODE_VARIANTS + 1];
  const size_t wsb = bd_decode_workspace_bytes(M, K, T);
  void* d_ws = nullptr;
  CUDA_CHECK(cudaMalloc(&d_ws, std::max<size_t>(wsb, 1)));
  // Every variant (0 = the automatic choice), then the automatic choice without persistent blocks. A variant the
  // library was built without gets NaN (printed "-").
  double tile_per_block_us = 0;
  for (int variant = 0; variant <= DECODE_VARIANTS + 1; ++variant) {
    const int set_status = bd_debug_set_decode_variant(variant <= DECODE_VARIANTS ? variant : BD_DECODE_AUTO);
    if (set_status == BD_ERR_NOT_BUILT) {
      vus[variant] = NAN;
      continue;
    }
    BD_CHECK(set_status);
    BD_CHECK(bd_debug_set_decode_persistent(variant <= DECODE_VARIANTS ? 1 : 0));
    const double us = time_us(nsets, 20, reps, [&](int i) {
      Set& s = sets[i];
      BD_CHECK(bd_decode(dtype, dtype, s.W, s.x, s.ten, T, s.ts.d_sign_table, s.ts.d_scale_table, T,
                         BD_SCALE_PER_MATRIX, s.y, M, K, d_ws, wsb, 0));
    });
    (variant <= DECODE_VARIANTS ? vus[variant] : tile_per_block_us) = us;
  }
  cudaFree(d_ws);
  BD_CHECK(bd_debug_set_decode_variant(BD_DECODE_AUTO));
  BD_CHECK(bd_debug_set_decode_persistent(1));
  const double us = vus[0];
  for (auto& s : sets) { cudaFree(s.W); cudaFree(s.x); cudaFree(s.ten); free_tenants(s.ts); cudaFree(s.y); }
  // Baseline: T separate F16 weight matrices, one token each: cuBLAS strided batched GEMV (n = 1).
  const size_t wb = size_t(T) * M * K * 2;
  const int bsets = int(std::min<size_t>(8, std::max<size_t>(2, (size_t(256) << 20) / wb + 1)));
  std::vector<void*> bw(bsets), bx(bsets), by(bsets);
  for (int i = 0; i < bsets; ++i) {
    CUDA_CHECK(cudaMalloc(&bw[i], wb));
    CUDA_CHECK(cudaMemset(bw[i], 0x21, wb));  // 0x2121 = small finite f16 values (timing only)
    bx[i] = to_device(random16(size_t(T) * K, 1.0f, dtype, rng));
    CUDA_CHECK(cudaMalloc(&by[i], size_t(T) * M * 2));
  }
  const float one = 1.f, zero = 0.f;
  const double cub_us = time_us(bsets, 20, reps, [&](int i) {
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(M), 1, int(K), &one, bw[i], CUDA_R_16F,
                                            int(K), (long long)M * K, bx[i], CUDA_R_16F, int(K), (long long)K, &zero,
                                            by[i], CUDA_R_16F, int(M), (long long)M, T, CUBLAS_COMPUTE_32F,
                                            CUBLAS_GEMM_DEFAULT));
  });
  for (int i = 0; i < bsets; ++i) { cudaFree(bw[i]); cudaFree(bx[i]); cudaFree(by[i]); }
  const double bytes = double(M * K) * 2 + double(T) * double(M) * double((K + 7) / 8) + double(T) * K * 2 + double(T) * M * 2;
  char name[128];
  std::snprintf(name, sizeof(name), "decode f16 %lldx%lld (MxK) tenants=%d", (long long)M, (long long)K, T);
  auto us_text = [](double v) {  // "-" for a variant the library was built without
    char t[32];
    if (std::isnan(v)) std::snprintf(t, sizeof(t), "-");
    else std::snprintf(t, sizeof(t), "%.1f", v);
    return std::string(t);
  };
  char vnote[256];
  std::snprintf(vnote, sizeof(vnote), "v1 %s, v2/16 %s, v2/32 %s, v3/16 %s, v3/32 %s, v3 lean %s; auto, a block per tile %.1f",
                us_text(vus[1]).c_str(), us_text(vus[2]).c_str(), us_text(vus[3]).c_str(), us_text(vus[4]).c_str(),
                us_text(vus[5]).c_str(), us_text(vus[6]).c_str(), tile_per_block_us);
  g_rows.push_back({name, us, bytes / g_bw * 1e6, cub_us, "cuBLAS batched GEMV, separate f16 W", vnote});
  std::printf("  %s: %.1f us (floor %.1f us, cuBLAS %.1f us; %s)\n", name, us, bytes / g_bw * 1e6, cub_us, vnote);
  std::fflush(stdout);
}

static void bench_prefill(cublasHandle_t handle, Rng& rng, bool quick) {
  const int64_t M = 4096, K = 4096;
  const int S = 8, L = 128, R = S * L, dtype = BD_DTYPE_F16;
  std::vector<int32_t> offs(S + 1), tens(S);
  for (int s = 0; s <= S; ++s) offs[s] = s * L;
  for (int s = 0; s < S; ++s) tens[s] = s;
  const int nsets = 4;
  struct Set { uint16_t* W; uint16_t* x; TenantSet ts; void* y; };
  std::vector<Set> sets(nsets);
  int32_t* d_offs = to_device(offs);
  int32_t* d_tens = to_device(tens);
  for (auto& s : sets) {
    s.W = to_device(random16(size_t(M * K), 0.05f, dtype, rng));
    s.x = to_device(random16(size_t(R) * K, 1.0f, dtype, rng));
    s.ts = make_tenants(S, M, K, false, rng, false);
    CUDA_CHECK(cudaMalloc(&s.y, size_t(R) * M * 4));  // F32 or 16-bit y
  }
  const int reps = quick ? 20 : 100;
  const double delta_us = time_us(nsets, 10, reps, [&](int i) {
    Set& s = sets[i];
    BD_CHECK(bd_prefill(dtype, dtype, nullptr, s.x, R, d_offs, d_tens, S, s.ts.d_sign_table, s.ts.d_scale_table, S,
                        BD_SCALE_PER_MATRIX, 0, s.y, M, K, nullptr, 0, 0));
  });
  // The mma.sync kernel (the path of cc 8.x) for comparison: only the experiment build honours BD_PREFILL_KERNEL.
  double delta_mma_us = NAN;
  if (g_experiments) {
    setenv("BD_PREFILL_KERNEL", "mma_sync", 1);
    delta_mma_us = time_us(nsets, 10, reps, [&](int i) {
      Set& s = sets[i];
      BD_CHECK(bd_prefill(dtype, dtype, nullptr, s.x, R, d_offs, d_tens, S, s.ts.d_sign_table, s.ts.d_scale_table, S,
                          BD_SCALE_PER_MATRIX, 0, s.y, M, K, nullptr, 0, 0));
    });
    unsetenv("BD_PREFILL_KERNEL");
  }
  const double fused_us = time_us(nsets, 10, reps, [&](int i) {
    Set& s = sets[i];
    BD_CHECK(bd_prefill(dtype, dtype, s.W, s.x, R, d_offs, d_tens, S, s.ts.d_sign_table, s.ts.d_scale_table, S,
                        BD_SCALE_PER_MATRIX, 0, s.y, M, K, nullptr, 0, 0));
  });
  // Base + delta into F32 y, as CudaBackend calls it: on sm_90a two wgmma passes; then the fused mma.sync kernel.
  auto base_delta_f32 = [&](int i) {
    Set& s = sets[i];
    BD_CHECK(bd_prefill(dtype, BD_DTYPE_F32, s.W, s.x, R, d_offs, d_tens, S, s.ts.d_sign_table, s.ts.d_scale_table, S,
                        BD_SCALE_PER_MATRIX, 0, s.y, M, K, nullptr, 0, 0));
  };
  const double two_pass_f32_us = time_us(nsets, 10, reps, base_delta_f32);
  double fused_f32_us = NAN;
  if (g_experiments) {
    setenv("BD_PREFILL_KERNEL", "mma_sync", 1);
    fused_f32_us = time_us(nsets, 10, reps, base_delta_f32);
    unsetenv("BD_PREFILL_KERNEL");
  }
  const float one = 1.f, zero = 0.f;
  const double gemm_us = time_us(nsets, 10, reps, [&](int i) {
    Set& s = sets[i];
    CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(M), R, int(K), &one, s.W, CUDA_R_16F, int(K), s.x,
                              CUDA_R_16F, int(K), &zero, s.y, CUDA_R_16F, int(M), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  });
  for (auto& s : sets) { cudaFree(s.W); cudaFree(s.x); free_tenants(s.ts); cudaFree(s.y); }
  cudaFree(d_offs); cudaFree(d_tens);
  const double flops = 2.0 * double(R) * M * K;
  char note[128];
  std::snprintf(note, sizeof(note), "delta %.0f TFLOP/s, cuBLAS %.0f TFLOP/s; mma.sync kernel %.1f us",
                flops / delta_us * 1e-6, flops / gemm_us * 1e-6, delta_mma_us);
  g_rows.push_back({"prefill f16 8x128 tokens 4096x4096: delta only", delta_us, 0, gemm_us, "cuBLAS dense f16 GEMM", note});
  g_rows.push_back({"prefill f16 8x128 tokens 4096x4096: base+delta fused", fused_us, 0, 2 * gemm_us, "2 x cuBLAS GEMM", ""});
  char note2[128];
  std::snprintf(note2, sizeof(note2), "fused mma.sync kernel %.1f us", fused_f32_us);
  g_rows.push_back({"prefill f16 8x128 tokens 4096x4096: base+delta, F32 y (CudaBackend's call)", two_pass_f32_us, 0,
                    2 * gemm_us, "2 x cuBLAS GEMM", note2});
  std::printf("  prefill: delta %.1f us (mma.sync kernel %.1f us), fused base+delta %.1f us, base+delta F32 y %.1f us "
              "(fused mma.sync %.1f us), cuBLAS dense GEMM %.1f us\n",
              delta_us, delta_mma_us, fused_us, two_pass_f32_us, fused_f32_us, gemm_us);
}

static void bench_compress(int dtype, int64_t M, int64_t K, Rng& rng, bool quick) {
  const int nsets = 2;
  std::vector<uint16_t*> b(nsets), f(nsets);
  for (int i = 0; i < nsets; ++i) {
    std::vector<uint16_t> base = random16(size_t(M * K), 0.05f, dtype, rng);
    b[i] = to_device(base);
    f[i] = to_device(random_finetune(base, dtype, rng));
  }
  double us;
  {
    const CompressBuffers out(M, K, false);
    us = time_us(nsets, 5, quick ? 20 : 100, [&](int i) { out.compress(dtype, b[i], f[i]); });
  }
  for (int i = 0; i < nsets; ++i) { cudaFree(b[i]); cudaFree(f[i]); }
  const double bytes = 2.0 * double(M * K) * 2 + double(M) * double((K + 7) / 8) + double(M) * 4;
  char name[128], note[128];
  std::snprintf(name, sizeof(name), "compress %s %lldx%lld (signs + row & matrix scales)", dname(dtype), (long long)M, (long long)K);
  std::snprintf(note, sizeof(note), "%.0f%% of copy bandwidth", 100.0 * (bytes / (us * 1e-6)) / g_bw);
  g_rows.push_back({name, us, bytes / g_bw * 1e6, 0, "", note});
  std::printf("  %s: %.1f us (floor %.1f us) %s\n", name, us, bytes / g_bw * 1e6, note);
}

int main(int argc, char** argv) {
  bool quick = false, skip_checks = false, skip_bench = false, profile = false, decode_only = false,
       launch_overhead = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--no-checks")) skip_checks = true;
    else if (!std::strcmp(argv[i], "--no-bench")) skip_bench = true;
    else if (!std::strcmp(argv[i], "--decode-only")) decode_only = true;  // decode checks and timings only
    else if (!std::strcmp(argv[i], "--back-to-back")) g_back_to_back = true;  // see time_us
    else if (!std::strcmp(argv[i], "--launch-overhead")) launch_overhead = true;  // host enqueue cost only
    else if (!std::strncmp(argv[i], "--seed=", 7)) g_seed = std::strtoull(argv[i] + 7, nullptr, 10);
    else if (!std::strcmp(argv[i], "--profile")) profile = true;
  }
  if (g_seed == 0) g_seed = uint64_t(std::chrono::high_resolution_clock::now().time_since_epoch().count());
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  std::printf("device: %s, %d SMs, L2 %d MB, cc %d.%d; CUDA driver API %d, runtime %d; libbitdelta ABI %d\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize >> 20, prop.major, prop.minor, driver, runtime, bd_abi_version());
  std::printf("seed: %llu (rerun with --seed=%llu)\n", (unsigned long long)g_seed, (unsigned long long)g_seed);
  {  // The experiment build accepts the M32 forms; the release build answers BD_ERR_NOT_BUILT.
    const int status = bd_debug_set_decode_variant(BD_DECODE_BINARY_M32);
    if (status != BD_OK && status != BD_ERR_NOT_BUILT) BD_CHECK(status);
    g_experiments = status == BD_OK;
    BD_CHECK(bd_debug_set_decode_variant(BD_DECODE_AUTO));
    std::printf("library: %s build\n", g_experiments ? "experiment (-DBD_EXPERIMENTS=1)" : "release");
  }
  Rng rng(g_seed);
  if (launch_overhead) {
    // The host cost of enqueueing one tiny bd_decode from C: the same call, shape, stream kind and loop as
    // CudaOverheadTest makes through FFM (1 row x [16, 64], no tenants, f16 -> f32, on a created stream, 60 rounds
    // of 100 launches, the first 10 discarded), so that the two medians differ by what Java and FFM add.
    void *d_w, *d_x, *d_t, *d_y;
    CUDA_CHECK(cudaMalloc(&d_w, 16 * 64 * 2));
    CUDA_CHECK(cudaMalloc(&d_x, 64 * 2));
    CUDA_CHECK(cudaMalloc(&d_t, 4));
    CUDA_CHECK(cudaMalloc(&d_y, 16 * 4));
    CUDA_CHECK(cudaMemset(d_w, 0, 16 * 64 * 2));
    CUDA_CHECK(cudaMemset(d_x, 0, 64 * 2));
    CUDA_CHECK(cudaMemset(d_t, 0xFF, 4));
    cudaStream_t stream;
    CUDA_CHECK(cudaStreamCreate(&stream));
    const size_t ws_bytes = bd_decode_workspace_bytes(16, 64, 1);
    void* d_ws = nullptr;
    if (ws_bytes) CUDA_CHECK(cudaMalloc(&d_ws, ws_bytes));
    std::vector<double> per_launch;
    for (int round = 0; round < 60; ++round) {
      const auto begin = std::chrono::steady_clock::now();
      for (int i = 0; i < 100; ++i)
        BD_CHECK(bd_decode(BD_DTYPE_F16, BD_DTYPE_F32, d_w, d_x, static_cast<int32_t*>(d_t), 1, nullptr, nullptr, 0,
                           BD_SCALE_PER_ROW, d_y, 16, 64, d_ws, ws_bytes, stream));
      const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - begin).count() / 100;
      CUDA_CHECK(cudaStreamSynchronize(stream));
      if (round >= 10) per_launch.push_back(us);
    }
    std::sort(per_launch.begin(), per_launch.end());
    std::printf("bd_decode tiny launch, enqueue from C: %.2f us median per launch (min %.2f, max %.2f; 50 x 100 launches)\n",
                per_launch[per_launch.size() / 2], per_launch.front(), per_launch.back());
    CUDA_CHECK(cudaStreamDestroy(stream));
    for (void* p : {d_w, d_x, d_t, d_y, d_ws}) cudaFree(p);
    return 0;
  }

  if (profile) {  // a few launches of the kernels worth profiling (for ncu), nothing else
    const int64_t M = 4096, K = 4096;
    const int T = 32;
    std::vector<int32_t> tenant(T);
    for (int r = 0; r < T; ++r) tenant[r] = r;
    uint16_t* d_W = to_device(random16(size_t(M * K), 0.05f, BD_DTYPE_F16, rng));
    uint16_t* d_x = to_device(random16(size_t(1024) * K, 1.0f, BD_DTYPE_F16, rng));
    int32_t* d_t = to_device(tenant);
    TenantSet ts = make_tenants(T, M, K, false, rng, false);
    void* d_y;
    CUDA_CHECK(cudaMalloc(&d_y, size_t(1024) * M * 2));
    const size_t wsb = bd_decode_workspace_bytes(M, K, T);
    void* d_ws = nullptr;
    CUDA_CHECK(cudaMalloc(&d_ws, wsb));
    // version 1 (what up to 8 rows run) at 1 and 8 rows, then versions 3 at 32 rows
    BD_CHECK(bd_debug_set_decode_variant(BD_DECODE_SPLIT_K));
    for (int rows : {1, 8})
      for (int i = 0; i < 2; ++i)
        BD_CHECK(bd_decode(BD_DTYPE_F16, BD_DTYPE_F16, d_W, d_x, d_t, rows, ts.d_sign_table, ts.d_scale_table, T,
                           BD_SCALE_PER_MATRIX, d_y, M, K, d_ws, wsb, 0));
    for (int variant : {BD_DECODE_BINARY, BD_DECODE_BINARY_M32, BD_DECODE_BINARY_LEAN}) {
      const int set_status = bd_debug_set_decode_variant(variant);
      if (set_status == BD_ERR_NOT_BUILT) continue;
      BD_CHECK(set_status);
      for (int i = 0; i < 2; ++i)
        BD_CHECK(bd_decode(BD_DTYPE_F16, BD_DTYPE_F16, d_W, d_x, d_t, T, ts.d_sign_table, ts.d_scale_table, T,
                           BD_SCALE_PER_MATRIX, d_y, M, K, d_ws, wsb, 0));
    }
    std::vector<int32_t> offs(9), tens(8);
    for (int s = 0; s <= 8; ++s) offs[s] = s * 128;
    for (int s = 0; s < 8; ++s) tens[s] = s;
    int32_t* d_offs = to_device(offs);
    int32_t* d_tens = to_device(tens);
    for (int i = 0; i < 3; ++i)
      BD_CHECK(bd_prefill(BD_DTYPE_F16, BD_DTYPE_F16, nullptr, d_x, 1024, d_offs, d_tens, 8, ts.d_sign_table,
                          ts.d_scale_table, T, BD_SCALE_PER_MATRIX, 0, d_y, M, K, nullptr, 0, 0));
    {  // compression, bf16 4096 x 11008
      const int64_t CM = 4096, CK = 11008;
      std::vector<uint16_t> cb = random16(size_t(CM * CK), 0.05f, BD_DTYPE_BF16, rng);
      uint16_t* d_cb = to_device(cb);
      uint16_t* d_cf = to_device(random_finetune(cb, BD_DTYPE_BF16, rng));
      const CompressBuffers out(CM, CK, false);
      for (int i = 0; i < 2; ++i) out.compress(BD_DTYPE_BF16, d_cb, d_cf);
    }
    CUDA_CHECK(cudaDeviceSynchronize());
    std::printf("profile launches done\n");
    return 0;
  }

  if (!skip_checks) {
    std::printf("== correctness\n");
    // decode: tenants 1, 2, 3, 7, 16, 33, 64; K, M over 4096, 11008, 14336 and odd sizes.
    check_decode(BD_DTYPE_F16, BD_DTYPE_F16, 4096, 4096, 1, 1, false, false, rng);
    check_decode(BD_DTYPE_BF16, BD_DTYPE_BF16, 4096, 4096, 2, 2, true, false, rng);
    check_decode(BD_DTYPE_F16, BD_DTYPE_F32, 4096, 11008, 3, 3, true, false, rng);
    check_decode(BD_DTYPE_BF16, BD_DTYPE_BF16, 11008, 4096, 7, 7, false, false, rng);
    check_decode(BD_DTYPE_F16, BD_DTYPE_F16, 14336, 4096, 16, 16, true, false, rng);
    check_decode(BD_DTYPE_BF16, BD_DTYPE_F32, 4096, 14336, 33, 33, false, false, rng);
    check_decode(BD_DTYPE_F16, BD_DTYPE_F16, 4097, 4097, 64, 64, true, false, rng);
    check_decode(BD_DTYPE_BF16, BD_DTYPE_BF16, 33, 33, 7, 7, false, false, rng);
    check_decode(BD_DTYPE_F16, BD_DTYPE_F16, 33, 4104, 16, 5, true, true, rng);
    check_decode(BD_DTYPE_BF16, BD_DTYPE_BF16, 1000, 11008, 64, 64, true, true, rng);
    // More 16-row tiles than resident blocks, odd M: 33 rows = a launch of 32 (the lean form, a block per tile) and
    // one of 1 row (the lean form's persistent blocks, forced and automatic); K % 8 != 0.
    check_decode(BD_DTYPE_F16, BD_DTYPE_F16, 8191, 4352, 33, 9, true, true, rng);
    check_decode(BD_DTYPE_BF16, BD_DTYPE_F32, 5001, 1001, 5, 5, true, false, rng);
    if (!decode_only) {
    // prefill
    check_prefill(BD_DTYPE_F16, BD_DTYPE_F16, 4096, 4096, {1, 130, 7}, {0, 1, 2}, 3, false, false, false, rng);
    check_prefill(BD_DTYPE_BF16, BD_DTYPE_F32, 1000, 4097, {5, 128, 33}, {2, -1, 0}, 3, true, true, false, rng);
    check_prefill(BD_DTYPE_F16, BD_DTYPE_F16, 4096, 4096, {128, 128, 128, 128, 128, 128, 128, 128},
                  {0, 1, 2, 3, 4, 5, 6, 7}, 8, true, false, true, rng);
    check_prefill(BD_DTYPE_BF16, BD_DTYPE_BF16, 11008, 4096, {64, 200, 3}, {1, 0, 2}, 3, true, true, false, rng);
    check_prefill(BD_DTYPE_F16, BD_DTYPE_F32, 33, 33, {2, 3, 0, 9}, {0, 3, 1, 1}, 3, false, false, false, rng);
    // delta only on the wgmma kernel (prefill_wgmma_ws_kernel on sm_90a; elsewhere prefill_kernel): per-row scales,
    // accumulate, a bad and a -1 tenant; M not a multiple of 256 and K not of 64; odd M (scalar epilogue), a segment
    // of 3 pieces.
    check_prefill(BD_DTYPE_BF16, BD_DTYPE_BF16, 11008, 4096, {64, 200, 3, 5, 7}, {1, 0, 2, 7, -1}, 3, false, true, true,
                  rng);
    check_prefill(BD_DTYPE_F16, BD_DTYPE_F32, 1000, 4104, {129, 0, 1, 40, 2}, {2, 1, -1, 0, 9}, 3, false, false, false,
                  rng);
    check_prefill(BD_DTYPE_F16, BD_DTYPE_F16, 1001, 4096, {300}, {1}, 2, false, true, true, rng);
    // base + delta with F32 y: on sm_90a the wgmma kernel twice (the base, then the delta added); with a bad and a -1
    // tenant, per-row scales and accumulate; odd M (scalar epilogue)
    check_prefill(BD_DTYPE_F16, BD_DTYPE_F32, 4096, 4096, {1, 130, 7}, {0, 1, 2}, 3, true, false, false, rng);
    check_prefill(BD_DTYPE_BF16, BD_DTYPE_F32, 11008, 4096, {64, 200, 3, 5, 7}, {1, 0, 2, 7, -1}, 3, true, true, true,
                  rng);
    check_prefill(BD_DTYPE_F16, BD_DTYPE_F32, 1001, 4096, {300}, {1}, 2, true, true, true, rng);
    // the same shapes forced onto the mma.sync kernel (the path of cc 8.x; experiment build only)
    if (g_experiments) {
      setenv("BD_PREFILL_KERNEL", "mma_sync", 1);
      check_prefill(BD_DTYPE_F16, BD_DTYPE_F32, 4096, 4096, {1, 130, 7}, {0, 1, 2}, 3, true, false, false, rng);
      check_prefill(BD_DTYPE_F16, BD_DTYPE_F16, 4096, 4096, {1, 130, 7}, {0, 1, 2}, 3, false, false, false, rng);
      check_prefill(BD_DTYPE_BF16, BD_DTYPE_BF16, 11008, 4096, {64, 200, 3, 5, 7}, {1, 0, 2, 7, -1}, 3, false, true,
                    true, rng);
      unsetenv("BD_PREFILL_KERNEL");
    } else {
      skip("prefill forced onto prefill_kernel (BD_PREFILL_KERNEL=mma_sync): not built into this library");
    }
    // compression
    check_compress(BD_DTYPE_BF16, 4096, 11008, 0, rng);
    check_compress(BD_DTYPE_F16, 4096, 11008, 0, rng);
    check_compress(BD_DTYPE_F16, 33, 4097, 0, rng);
    check_compress(BD_DTYPE_BF16, 64, 4096, 1, rng);
    check_compress(BD_DTYPE_F16, 64, 4104, 1, rng);
    check_compress(BD_DTYPE_BF16, 100, 333, 2, rng);
    }
    // bad arguments are refused before any launch
    report(bd_decode(BD_DTYPE_F16, BD_DTYPE_BF16, (void*)16, (void*)16, (int32_t*)16, 1, nullptr, nullptr, 0, 0,
                     (void*)16, 16, 16, nullptr, 0, 0) == BD_ERR_BAD_DTYPE, "decode refuses f16 -> bf16 output");
    report(bd_decode(BD_DTYPE_F16, BD_DTYPE_F16, (void*)16, nullptr, (int32_t*)16, 1, nullptr, nullptr, 0, 0,
                     (void*)16, 16, 16, nullptr, 0, 0) == BD_ERR_NULL_POINTER, "decode refuses NULL x");
    report(bd_compress(BD_DTYPE_F16, (void*)16, (void*)16, 4, 4, (uint8_t*)16, nullptr, nullptr, nullptr, (void*)16, 8, 0) ==
               BD_ERR_WORKSPACE, "compress refuses a short workspace");
    report(bd_debug_set_decode_variant(DECODE_VARIANTS + 1) == BD_ERR_BAD_SHAPE &&
               bd_debug_set_decode_variant(-1) == BD_ERR_BAD_SHAPE,
           "bd_debug_set_decode_variant refuses numbers outside the enum");
    report(std::strstr(bd_status_string(BD_ERR_NOT_BUILT), "built without") != nullptr,
           "bd_status_string names BD_ERR_NOT_BUILT");
  }

  if (!skip_bench) {
    std::printf("== timing\n");
    g_bw = measure_copy_bandwidth();
    std::printf("  device-to-device copy: %.0f GB/s (read + write)\n", g_bw * 1e-9);
    cublasHandle_t handle;
    CUBLAS_CHECK(cublasCreate(&handle));
    const int64_t shapes[3][2] = {{4096, 4096}, {4096, 11008}, {11008, 4096}};  // {M, K}
    const int tenants[] = {1, 4, 8, 16, 32};
    for (auto& sh : shapes)
      for (int T : tenants) bench_decode(handle, sh[0], sh[1], T, rng, quick);
    if (!decode_only) {
      bench_prefill(handle, rng, quick);
      bench_compress(BD_DTYPE_BF16, 4096, 11008, rng, quick);
      bench_compress(BD_DTYPE_F16, 4096, 11008, rng, quick);
    }

    std::printf("\n== table (copy bandwidth %.0f GB/s; times are medians in us, calls timed %s)\n", g_bw * 1e-9,
                g_back_to_back ? "back to back" : "one by one");
    std::printf("| case | time us | floor us | x floor | baseline us | baseline | speedup vs baseline | note |\n");
    std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (auto& r : g_rows) {
      char fl[32] = "", xf[32] = "", bl[32] = "", sp[32] = "";
      if (r.floor_us > 0) { std::snprintf(fl, 32, "%.1f", r.floor_us); std::snprintf(xf, 32, "%.2f", r.us / r.floor_us); }
      if (r.base_us > 0) { std::snprintf(bl, 32, "%.1f", r.base_us); std::snprintf(sp, 32, "%.2fx", r.base_us / r.us); }
      std::printf("| %s | %.1f | %s | %s | %s | %s | %s | %s |\n", r.name.c_str(), r.us, fl, xf, bl, r.base_name.c_str(), sp,
                  r.note.c_str());
    }
  }
  std::printf("\n== checks: %d failed of %zu (%d skipped: not built into this library)\n", g_failures,
              g_check_lines.size(), g_skipped);
  for (auto& l : g_check_lines)
    if (l.rfind("FAIL", 0) == 0) std::printf("%s\n", l.c_str());
  return g_failures ? 1 : 0;
}
