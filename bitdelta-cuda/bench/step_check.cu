// step_check.cu -- fast device check of the decoder-step kernels (bitdelta_step.h) against CPU references that follow
// the Java CPU decoder's arithmetic, on fresh random inputs with NaN-poisoned outputs. Prints one line per check and
// a summary table last; exits non-zero when a check fails.
//
// Build and run on the GPU host (check-step-device.sh does this), from bitdelta-cuda/:
//   nvcc -std=c++17 -O2 -gencode arch=compute_90a,code=sm_90a -I src/main/cuda bench/step_check.cu
//        -L LIBDIR -lbitdelta_cuda -Xlinker -rpath -Xlinker LIBDIR -o step_check && ./step_check [--seed=N]
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bitdelta_cuda.h"
#include "bitdelta_step.h"

namespace {

int failures = 0, checks = 0;
std::vector<std::string> summary;

#define CUDA_OK(call)                                                                              \
  do {                                                                                             \
    cudaError_t e_ = (call);                                                                       \
    if (e_ != cudaSuccess) {                                                                       \
      std::printf("FATAL %s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));     \
      std::exit(2);                                                                                \
    }                                                                                              \
  } while (0)

#define BD_OK_(call)                                                                                   \
  do {                                                                                                 \
    int s_ = (call);                                                                                   \
    if (s_ != BD_OK) {                                                                                 \
      std::printf("FATAL %s:%d %s -> status %d: %s / %s\n", __FILE__, __LINE__, #call, s_, bd_step_last_error(), \
                  bd_last_cuda_error());                                                               \
      std::exit(2);                                                                                    \
    }                                                                                                  \
  } while (0)

void report(const std::string& name, bool ok, const std::string& detail) {
  ++checks;
  if (!ok) ++failures;
  std::printf("%s %-58s %s\n", ok ? "ok  " : "FAIL", name.c_str(), detail.c_str());
  std::fflush(stdout);
  summary.push_back(std::string(ok ? "ok   " : "FAIL ") + name);
}

template <typename T> struct DeviceArray {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceArray(size_t count) : n(count) { CUDA_OK(cudaMalloc(&p, std::max<size_t>(1, count) * sizeof(T))); }
  DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() { cudaFree(p); }
  DeviceArray(const DeviceArray&) = delete;
  void upload(const std::vector<T>& host) { CUDA_OK(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> download() const {
    std::vector<T> host(n);
    CUDA_OK(cudaMemcpy(host.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  void poison() { CUDA_OK(cudaMemset(p, 0xFF, n * sizeof(T))); }  // NaN for floats
};

// Weights in a dtype, with their float values (what the kernels widen to).
struct Weights {
  int dtype;
  std::vector<float> values;  // rounded to dtype
  std::vector<uint16_t> bits16;
  const void* upload(std::vector<void*>& keep) const {
    void* p = nullptr;
    size_t bytes = dtype == BD_DTYPE_F32 ? values.size() * 4 : values.size() * 2;
    CUDA_OK(cudaMalloc(&p, std::max<size_t>(bytes, 1)));
    CUDA_OK(cudaMemcpy(p, dtype == BD_DTYPE_F32 ? static_cast<const void*>(values.data()) : static_cast<const void*>(bits16.data()),
                       bytes, cudaMemcpyHostToDevice));
    keep.push_back(p);
    return p;
  }
};

uint16_t to_bf16(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  if (std::isnan(v)) return uint16_t((b >> 16) | 0x40);
  return uint16_t((b + 0x7FFF + ((b >> 16) & 1)) >> 16);
}
float from_bf16(uint16_t h) {
  uint32_t b = uint32_t(h) << 16;
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}

Weights random_weights(std::mt19937_64& rng, int dtype, size_t count, float magnitude) {
  std::uniform_real_distribution<float> u(-magnitude, magnitude);
  Weights w{dtype, std::vector<float>(count), std::vector<uint16_t>(dtype == BD_DTYPE_F32 ? 0 : count)};
  for (size_t i = 0; i < count; ++i) {
    float v = u(rng);
    if (dtype == BD_DTYPE_F16) {
      __half h = __float2half_rn(v);
      std::memcpy(&w.bits16[i], &h, 2);
      v = __half2float(h);
    } else if (dtype == BD_DTYPE_BF16) {
      w.bits16[i] = to_bf16(v);
      v = from_bf16(w.bits16[i]);
    }
    w.values[i] = v;
  }
  return w;
}

std::vector<float> random_floats(std::mt19937_64& rng, size_t count, float low, float high) {
  std::uniform_real_distribution<float> u(low, high);
  std::vector<float> v(count);
  for (auto& x : v) x = u(rng);
  return v;
}

double relative_error(const std::vector<float>& expected, const std::vector<float>& actual, size_t count) {
  double difference = 0, scale = 0;
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(actual[i]) && std::isfinite(expected[i])) return INFINITY;
    difference = std::max(difference, std::fabs(double(actual[i]) - expected[i]));
    scale = std::max(scale, std::fabs(double(expected[i])));
  }
  return scale == 0 ? difference : difference / scale;
}

std::string fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* format, ...) {
  char buffer[512];
  va_list arguments;
  va_start(arguments, format);
  std::vsnprintf(buffer, sizeof(buffer), format, arguments);
  va_end(arguments);
  return buffer;
}

const char* dtype_name(int d) { return d == BD_DTYPE_F32 ? "f32" : d == BD_DTYPE_F16 ? "f16" : "bf16"; }

// ---------------------------------------------------------------- checks

// Embedding gather over per-slot tables of mixed dtypes; rows past `active` keep their poison.
void check_embed(std::mt19937_64& rng) {
  const int hidden = 72, vocab = 33, slots = 3, launch = 8, active = 6;
  std::vector<void*> keep;
  Weights tables[slots] = {random_weights(rng, BD_DTYPE_F16, vocab * hidden, 1), random_weights(rng, BD_DTYPE_F32, vocab * hidden, 1),
                           random_weights(rng, BD_DTYPE_BF16, vocab * hidden, 1)};
  std::vector<const void*> pointers(slots);
  std::vector<int32_t> dtypes(slots);
  for (int s = 0; s < slots; ++s) pointers[s] = tables[s].upload(keep), dtypes[s] = tables[s].dtype;
  std::vector<int32_t> tokens(launch), slot(launch);
  for (int r = 0; r < launch; ++r) tokens[r] = int(rng() % vocab), slot[r] = int(rng() % slots);
  DeviceArray<const void*> d_pointers(pointers);
  DeviceArray<int32_t> d_dtypes(dtypes), d_tokens(tokens), d_slots(slot), d_active(std::vector<int32_t>{active});
  DeviceArray<float> d_out(size_t(launch) * hidden);
  d_out.poison();
  BD_OK_(bd_step_embed(d_active.p, launch, d_tokens.p, d_slots.p, d_pointers.p, d_dtypes.p, hidden, d_out.p, 0));
  auto out = d_out.download();
  bool ok = true;
  for (int r = 0; r < launch; ++r)
    for (int k = 0; k < hidden; ++k) {
      const float v = out[r * hidden + k];
      ok &= r < active ? v == tables[slot[r]].values[size_t(tokens[r]) * hidden + k] : std::isnan(v);
    }
  report("embed (mixed-dtype tables, padded rows untouched)", ok, "");
  for (void* p : keep) cudaFree(p);
}

// RMSNorm: squares in float, their sum in double, as the Java decoder; the final norm through output-row indices.
void check_rmsnorm(std::mt19937_64& rng) {
  for (int hidden : {64, 72, 136, 4096}) {
    const int rows = 7, slots = 2;
    auto in = random_floats(rng, size_t(rows) * hidden, -3, 3);
    std::vector<std::vector<float>> weights = {random_floats(rng, hidden, 0.5f, 1.5f), random_floats(rng, hidden, 0.5f, 1.5f)};
    DeviceArray<float> w0(weights[0]), w1(weights[1]);
    DeviceArray<const float*> d_weights(std::vector<const float*>{w0.p, w1.p});
    std::vector<int32_t> slot(rows), index(rows);
    for (int r = 0; r < rows; ++r) slot[r] = int(rng() % slots), index[r] = int(rng() % rows);
    DeviceArray<int32_t> d_slots(slot), d_index(index), d_active(std::vector<int32_t>{rows});
    DeviceArray<float> d_in(in), d_out(size_t(rows) * hidden);
    const float eps = 1e-5f;
    for (int with_index = 0; with_index < 2; ++with_index) {
      d_out.poison();
      BD_OK_(bd_step_rmsnorm(d_active.p, rows, d_slots.p, with_index ? d_index.p : nullptr, d_weights.p, d_in.p, d_out.p, hidden, eps, 0));
      auto out = d_out.download();
      std::vector<float> expected(out.size());
      for (int r = 0; r < rows; ++r) {
        const float* x = &in[size_t(r) * hidden];
        const auto& w = weights[slot[with_index ? index[r] : r]];
        double sum = 0;
        for (int k = 0; k < hidden; ++k) sum += double(x[k] * x[k]);
        const float inverse = float(1.0 / std::sqrt(double(float(sum / hidden) + eps)));
        for (int k = 0; k < hidden; ++k) expected[size_t(r) * hidden + k] = w[k] * (x[k] * inverse);
      }
      const double error = relative_error(expected, out, out.size());
      report(fmt("rmsnorm hidden %d%s", hidden, with_index ? " (output-row slots)" : ""), error <= 1e-6, fmt("relative error %.2e", error));
    }
  }
}

// Multi-tenant projection: stacked random signs repacked on the device, per-row scales, NULL slots, accumulate.
void check_project(std::mt19937_64& rng) {
  struct Case { int dtype, M, K, rows; };
  const Case cases[] = {{BD_DTYPE_F32, 64, 64, 5}, {BD_DTYPE_F16, 136, 72, 9}, {BD_DTYPE_BF16, 33, 4097, 4}, {BD_DTYPE_F16, 4097, 33, 3},
                        {BD_DTYPE_F32, 7, 1, 2},   {BD_DTYPE_BF16, 344, 64, 17}, {BD_DTYPE_F16, 1, 8, 1}};
  for (const Case& c : cases) {
    std::vector<void*> keep;
    const int slots = 3;
    Weights W = random_weights(rng, c.dtype, size_t(c.M) * c.K, 0.1f);
    const void* d_W = W.upload(keep);
    const int64_t row_bytes = (c.K + 7) / 8;
    std::vector<std::vector<uint8_t>> packed(slots, std::vector<uint8_t>(size_t(c.M) * row_bytes));
    std::vector<std::vector<float>> scales(slots);
    std::vector<const uint32_t*> signs(slots, nullptr);
    std::vector<const float*> scale_pointers(slots, nullptr);
    for (int s = 1; s < slots; ++s) {  // slot 0: the base, no delta
      for (int64_t m = 0; m < c.M; ++m)
        for (int64_t b = 0; b < row_bytes; ++b) {
          uint8_t v = uint8_t(rng());
          if (b == row_bytes - 1 && c.K % 8) v &= uint8_t((1 << (c.K % 8)) - 1);
          packed[s][m * row_bytes + b] = v;
        }
      scales[s] = random_floats(rng, c.M, 0.001f, 0.02f);
      for (int64_t m = 0; m < c.M; m += 5) scales[s][m] = 0;  // a stacked member without delta
      uint8_t* d_packed;
      uint32_t* d_signs;
      float* d_scales;
      CUDA_OK(cudaMalloc(&d_packed, packed[s].size()));
      CUDA_OK(cudaMalloc(&d_signs, bd_signs_device_bytes(c.M, c.K)));
      CUDA_OK(cudaMalloc(&d_scales, 4 * size_t(c.M)));
      CUDA_OK(cudaMemcpy(d_packed, packed[s].data(), packed[s].size(), cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(d_scales, scales[s].data(), 4 * size_t(c.M), cudaMemcpyHostToDevice));
      BD_OK_(bd_repack_signs(d_packed, d_signs, c.M, c.K, 0));
      keep.push_back(d_packed), keep.push_back(d_signs), keep.push_back(d_scales);
      signs[s] = d_signs, scale_pointers[s] = d_scales;
    }
    std::vector<int32_t> slot(c.rows);
    for (int r = 0; r < c.rows; ++r) slot[r] = int(rng() % slots);
    auto x = random_floats(rng, size_t(c.rows) * c.K, -1, 1);
    auto y0 = random_floats(rng, size_t(c.rows) * c.M, -2, 2);
    DeviceArray<const uint32_t*> d_signs(signs);
    DeviceArray<const float*> d_scales(scale_pointers);
    DeviceArray<int32_t> d_slots(slot), d_active(std::vector<int32_t>{c.rows});
    DeviceArray<float> d_x(x), d_y(size_t(c.rows) * c.M);
    for (int accumulate = 0; accumulate < 2; ++accumulate) {
      if (accumulate) d_y.upload(y0); else d_y.poison();
      BD_OK_(bd_step_project(d_active.p, c.rows, d_slots.p, c.dtype, d_W, d_signs.p, d_scales.p, d_x.p, d_y.p, c.M, c.K, accumulate, 0));
      auto y = d_y.download();
      std::vector<float> expected(y.size());
      for (int r = 0; r < c.rows; ++r)
        for (int64_t m = 0; m < c.M; ++m) {
          double base = 0, delta = 0;
          for (int64_t k = 0; k < c.K; ++k) {
            const double xv = x[size_t(r) * c.K + k];
            base += xv * W.values[m * c.K + k];
            if (slot[r] > 0) delta += ((packed[slot[r]][m * row_bytes + k / 8] >> (k % 8)) & 1) ? xv : -xv;
          }
          double p = base + (slot[r] > 0 ? scales[slot[r]][m] * delta : 0.0);
          expected[size_t(r) * c.M + m] = float(accumulate ? y0[size_t(r) * c.M + m] + p : p);
        }
      const double error = relative_error(expected, y, y.size());
      report(fmt("project %s W[%d, %d] rows %d%s", dtype_name(c.dtype), c.M, c.K, c.rows, accumulate ? " accumulate" : ""),
             error <= 2e-5, fmt("relative error %.2e", error));
    }
    for (void* p : keep) cudaFree(p);
  }
}

// Paged cache helpers: F32 [blocks, kv_heads, block_size, head_dim].
struct PagedCache {
  int blocks, kv_heads, block_size, head_dim;
  size_t index(int block, int head, int offset, int d) const {
    return ((size_t(block) * kv_heads + head) * block_size + offset) * head_dim + d;
  }
  size_t size() const { return size_t(blocks) * kv_heads * block_size * head_dim; }
};

// RoPE on q and k, then the key and value writes into the cache; cache slot -1 writes nothing.
void check_rotary_cache(std::mt19937_64& rng) {
  const int heads = 8, kv_heads = 2, head_dim = 24, half = head_dim / 2, context = 64, rows = 6;
  PagedCache cache{10, kv_heads, 4, head_dim};
  const int width = (heads + 2 * kv_heads) * head_dim;
  std::vector<float> cosines(size_t(context) * half), sines(cosines.size());
  for (int p = 0; p < context; ++p)
    for (int i = 0; i < half; ++i) {
      const float angle = p * float(1.0 / std::pow(10000.0, double(2 * i) / head_dim));
      cosines[p * half + i] = std::cos(angle), sines[p * half + i] = std::sin(angle);
    }
  auto qkv = random_floats(rng, size_t(rows) * width, -2, 2);
  std::vector<int32_t> positions(rows), slots(rows);
  std::vector<int> used(cache.blocks * cache.block_size, 0);
  for (int r = 0; r < rows; ++r) {
    positions[r] = int(rng() % context);
    int s;
    do s = int(rng() % used.size()); while (used[s]);
    used[s] = 1;
    slots[r] = r == 3 ? -1 : s;
  }
  std::vector<float> keys(cache.size(), 7.f), values(cache.size(), 7.f);
  DeviceArray<float> d_qkv(qkv), d_cos(cosines), d_sin(sines), d_keys(keys), d_values(values);
  DeviceArray<int32_t> d_positions(positions), d_slots(slots), d_active(std::vector<int32_t>{rows});
  BD_OK_(bd_step_rotary_cache(d_active.p, rows, d_positions.p, d_slots.p, d_cos.p, d_sin.p, d_qkv.p, heads, kv_heads, head_dim,
                              BD_DTYPE_F32, d_keys.p, d_values.p, cache.block_size, 0));
  auto out = d_qkv.download(), out_keys = d_keys.download(), out_values = d_values.download();
  std::vector<float> expected = qkv;
  for (int r = 0; r < rows; ++r) {
    float* row = &expected[size_t(r) * width];
    for (int h = 0; h < heads + kv_heads; ++h)
      for (int i = 0; i < half; ++i) {
        const float first = row[h * head_dim + i], second = row[h * head_dim + i + half];
        const float c = cosines[positions[r] * half + i], s = sines[positions[r] * half + i];
        row[h * head_dim + i] = first * c - second * s;
        row[h * head_dim + i + half] = second * c + first * s;
      }
    if (slots[r] < 0) continue;
    const int block = slots[r] / cache.block_size, offset = slots[r] % cache.block_size;
    for (int h = 0; h < kv_heads; ++h)
      for (int d = 0; d < head_dim; ++d) {
        keys[cache.index(block, h, offset, d)] = row[(heads + h) * head_dim + d];
        values[cache.index(block, h, offset, d)] = row[(heads + kv_heads + h) * head_dim + d];
      }
  }
  report("rotary (exact operation order) on q and k", out == expected, "");
  report("KV cache write (slot -1 writes nothing)", out_keys == keys && out_values == values, "");
}

// Attention over a random paged cache: GQA, windows shorter and longer than the sequences, partly filled blocks.
void check_attention(std::mt19937_64& rng) {
  struct Case { int heads, kv_heads, head_dim, block_size, window, rows; };
  const Case cases[] = {{8, 4, 8, 16, 0, 5}, {4, 1, 18, 3, 5, 7}, {8, 1, 16, 7, 100, 3}, {1, 1, 128, 1, 0, 4}, {2, 2, 8, 5, 0, 6},
                        {32, 8, 128, 16, 0, 4}, {4, 4, 512, 4, 9, 2}};
  for (const Case& c : cases) {
    const int context = 300, sequences = 3, width = (c.heads + 2 * c.kv_heads) * c.head_dim;
    const int table_width = (context + c.block_size - 1) / c.block_size;
    PagedCache cache{sequences * table_width, c.kv_heads, c.block_size, c.head_dim};
    auto keys = random_floats(rng, cache.size(), -1, 1), values = random_floats(rng, cache.size(), -1, 1);
    std::vector<int32_t> blocks(cache.blocks);
    std::iota(blocks.begin(), blocks.end(), 0);
    std::shuffle(blocks.begin(), blocks.end(), rng);
    std::vector<int32_t> tables(size_t(sequences) * table_width);
    for (size_t i = 0; i < tables.size(); ++i) tables[i] = blocks[i];
    std::vector<int32_t> positions(c.rows), sequence_of_row(c.rows);
    for (int r = 0; r < c.rows; ++r) sequence_of_row[r] = int(rng() % sequences), positions[r] = r == 0 ? 0 : int(rng() % context);
    auto qkv = random_floats(rng, size_t(c.rows) * width, -1, 1);
    const float scale = float(1.0 / std::sqrt(double(c.head_dim)));
    DeviceArray<float> d_keys(keys), d_values(values), d_qkv(qkv), d_out(size_t(c.rows) * c.heads * c.head_dim);
    DeviceArray<int32_t> d_tables(tables), d_positions(positions), d_sequence(sequence_of_row), d_active(std::vector<int32_t>{c.rows}),
        d_width(std::vector<int32_t>{table_width});
    d_out.poison();
    BD_OK_(bd_step_attention(d_active.p, c.rows, d_positions.p, d_sequence.p, d_tables.p, d_width.p, d_qkv.p, BD_DTYPE_F32, d_keys.p,
                             d_values.p, c.block_size, c.heads, c.kv_heads, c.head_dim, c.window, scale, d_out.p, 0));
    auto out = d_out.download();
    std::vector<float> expected(out.size());
    for (int r = 0; r < c.rows; ++r) {
      const int p = positions[r], first = c.window > 0 ? std::max(0, p - c.window + 1) : 0, count = p - first + 1;
      for (int h = 0; h < c.heads; ++h) {
        const int kvh = h / (c.heads / c.kv_heads);
        const float* q = &qkv[size_t(r) * width + h * c.head_dim];
        std::vector<float> score(count);
        float max = -INFINITY;
        for (int j = 0; j < count; ++j) {
          const int pos = first + j, block = tables[sequence_of_row[r] * table_width + pos / c.block_size];
          float sum = 0;
          for (int d = 0; d < c.head_dim; ++d) sum += q[d] * keys[cache.index(block, kvh, pos % c.block_size, d)];
          score[j] = sum * scale;
          max = std::max(max, score[j]);
        }
        float total = 0;
        for (int j = 0; j < count; ++j) score[j] = float(std::exp(double(score[j] - max))), total += score[j];
        for (int d = 0; d < c.head_dim; ++d) {
          float sum = 0;
          for (int j = 0; j < count; ++j) {
            const int pos = first + j, block = tables[sequence_of_row[r] * table_width + pos / c.block_size];
            sum += score[j] * values[cache.index(block, kvh, pos % c.block_size, d)];
          }
          expected[(size_t(r) * c.heads + h) * c.head_dim + d] = sum * (1.0f / total);
        }
      }
    }
    const double error = relative_error(expected, out, out.size());
    report(fmt("attention heads %d/%d x %d, blocks of %d, window %d", c.heads, c.kv_heads, c.head_dim, c.block_size, c.window),
           error <= 1e-5, fmt("relative error %.2e", error));
  }
}

void check_swiglu_gather(std::mt19937_64& rng) {
  const int rows = 5, intermediate = 300;
  auto gate_up = random_floats(rng, size_t(rows) * 2 * intermediate, -6, 6);
  DeviceArray<float> d_gate_up(gate_up), d_out(size_t(rows) * intermediate);
  DeviceArray<int32_t> d_active(std::vector<int32_t>{rows});
  d_out.poison();
  BD_OK_(bd_step_swiglu(d_active.p, rows, d_gate_up.p, d_out.p, intermediate, 0));
  auto out = d_out.download();
  std::vector<float> expected(out.size());
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < intermediate; ++i) {
      const float g = gate_up[size_t(r) * 2 * intermediate + i], u = gate_up[size_t(r) * 2 * intermediate + intermediate + i];
      expected[size_t(r) * intermediate + i] = g / (1.0f + float(std::exp(double(-g)))) * u;
    }
  const double error = relative_error(expected, out, out.size());
  report("swiglu", error <= 1e-6, fmt("relative error %.2e", error));

  std::vector<int32_t> index = {4, 0, 4};
  DeviceArray<int32_t> d_index(index), d_outputs(std::vector<int32_t>{3});
  DeviceArray<float> d_gathered(size_t(4) * intermediate);
  d_gathered.poison();
  BD_OK_(bd_step_gather_rows(d_outputs.p, 4, d_index.p, d_out.p, d_gathered.p, intermediate, 0));
  auto gathered = d_gathered.download();
  bool ok = true;
  for (int i = 0; i < 4; ++i)
    for (int k = 0; k < intermediate; ++k) ok &= i < 3 ? gathered[size_t(i) * intermediate + k] == out[size_t(index[i]) * intermediate + k]
                                                       : std::isnan(gathered[size_t(i) * intermediate + k]);
  report("gather output rows", ok, "");
}

void check_lm_head(std::mt19937_64& rng) {
  for (int vocab : {1, 7, 4097, 32000}) {
    const int hidden = 72, rows = 6, slots = 3;
    std::vector<void*> keep;
    Weights heads[slots] = {random_weights(rng, BD_DTYPE_F16, size_t(vocab) * hidden, 0.2f),
                            random_weights(rng, BD_DTYPE_F32, size_t(vocab) * hidden, 0.2f),
                            random_weights(rng, BD_DTYPE_BF16, size_t(vocab) * hidden, 0.2f)};
    std::vector<const void*> pointers(slots);
    std::vector<int32_t> dtypes(slots);
    for (int s = 0; s < slots; ++s) pointers[s] = heads[s].upload(keep), dtypes[s] = heads[s].dtype;
    std::vector<int32_t> slot(rows), index(rows);
    for (int r = 0; r < rows; ++r) slot[r] = int(rng() % slots), index[r] = int(rng() % rows);
    auto x = random_floats(rng, size_t(rows) * hidden, -1, 1);
    DeviceArray<const void*> d_pointers(pointers);
    DeviceArray<int32_t> d_dtypes(dtypes), d_slots(slot), d_index(index), d_active(std::vector<int32_t>{rows});
    DeviceArray<float> d_x(x), d_logits(size_t(rows) * vocab);
    d_logits.poison();
    BD_OK_(bd_step_lm_head(d_active.p, rows, d_slots.p, d_index.p, d_pointers.p, d_dtypes.p, d_x.p, d_logits.p, vocab, hidden, 0));
    auto logits = d_logits.download();
    std::vector<float> expected(logits.size());
    for (int i = 0; i < rows; ++i)
      for (int v = 0; v < vocab; ++v) {
        double sum = 0;
        for (int k = 0; k < hidden; ++k) sum += double(x[size_t(i) * hidden + k]) * heads[slot[index[i]]].values[size_t(v) * hidden + k];
        expected[size_t(i) * vocab + v] = float(sum);
      }
    const double error = relative_error(expected, logits, logits.size());
    report(fmt("lm_head vocab %d (per-slot heads of mixed dtypes)", vocab), error <= 2e-5, fmt("relative error %.2e", error));
    for (void* p : keep) cudaFree(p);
  }
}

// org.bitdelta.internal.model.Sampler, line for line (Java's Float.compare order, double weights, sequential sums).
int java_compare_desc(float a, float b) {  // Float.compare(b, a)
  auto bits = [](float v) { uint32_t u; if (std::isnan(v)) return int32_t(0x7fc00000); std::memcpy(&u, &v, 4); return int32_t(u); };
  if (b < a) return -1;
  if (b > a) return 1;
  const int32_t x = bits(b), y = bits(a);
  return x == y ? 0 : (x < y ? -1 : 1);
}
int sampler_argmax(const float* l, int vocab) {
  int best = 0;
  for (int v = 1; v < vocab; ++v) if (l[v] > l[best]) best = v;
  return best;
}
uint64_t splitmix(int64_t seed, int64_t draw) {
  uint64_t z = uint64_t(seed) + uint64_t(draw + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
int sampler_sample(const float* l, int vocab, float temperature, int top_k, float top_p, double uniform) {
  const int best = sampler_argmax(l, vocab);
  if (temperature == 0) return best;
  const double max = l[best];
  std::vector<int> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const int c = java_compare_desc(l[a], l[b]);
    return c != 0 ? c < 0 : a < b;
  });
  int kept = top_k > 0 ? std::min(top_k, vocab) : vocab;
  std::vector<double> weights(kept);
  double sum = 0;
  for (int i = 0; i < kept; ++i) weights[i] = std::exp((l[order[i]] - max) / temperature), sum += weights[i];
  if (top_p < 1) {
    double cumulative = 0;
    int count = 0;
    while (count < kept) {
      cumulative += weights[count] / sum;
      ++count;
      if (cumulative >= top_p) break;
    }
    kept = count;
    sum = 0;
    for (int i = 0; i < kept; ++i) sum += weights[i];
  }
  const double target = uniform * sum;
  double cumulative = 0;
  for (int i = 0; i < kept; ++i) {
    cumulative += weights[i];
    if (target < cumulative) return order[i];
  }
  return order[kept - 1];
}

void check_sampling(std::mt19937_64& rng) {
  for (int vocab : {1, 2, 7, 1000, 32000}) {
    const int rows = 16;
    std::vector<float> logits(size_t(rows) * vocab);
    std::normal_distribution<float> normal(0, 3);
    for (int r = 0; r < rows; ++r)
      for (int v = 0; v < vocab; ++v) {
        float x = normal(rng);
        if (r % 4 == 0) x = float(rng() % 3);                           // many ties
        if (r % 4 == 1 && rng() % 10 == 0) x = -INFINITY;
        if (r % 4 == 1 && rng() % 10 == 1) x = (rng() & 1) ? 0.0f : -0.0f;  // -0.0 beside 0.0
        if (r == 2 && v == vocab / 2) x = NAN;                          // NaN is never the argmax ...
        logits[size_t(r) * vocab + v] = x;
      }
    if (vocab > 1) logits[size_t(3) * vocab] = NAN;                     // ... except at index 0
    std::vector<float> temperature(rows), top_p(rows);
    std::vector<int32_t> top_k(rows), draw(rows);
    std::vector<int64_t> seed(rows);
    for (int r = 0; r < rows; ++r) {
      temperature[r] = (r % 5 == 0 || r == 2 || r == 3) ? 0.f : 0.1f + 2.f * float(rng() % 1000) / 1000.f;
      top_k[r] = r % 3 == 0 ? 0 : 1 + int(rng() % (vocab + 2));
      top_p[r] = r % 2 == 0 ? 1.f : float(rng() % 1000) / 1000.f;
      seed[r] = int64_t(rng());
      draw[r] = int32_t(rng() % 100000);
    }
    DeviceArray<float> d_logits(logits), d_temperature(temperature), d_top_p(top_p);
    DeviceArray<int32_t> d_top_k(top_k), d_draw(draw), d_tokens(rows);
    DeviceArray<int64_t> d_seed(seed);
    const size_t workspace_bytes = bd_step_sample_workspace_bytes(rows, vocab);
    void* workspace = nullptr;
    CUDA_OK(cudaMalloc(&workspace, workspace_bytes));
    d_tokens.poison();
    BD_OK_(bd_step_argmax(rows, d_logits.p, vocab, d_tokens.p, 0));
    auto greedy = d_tokens.download();
    d_tokens.poison();
    BD_OK_(bd_step_sample(rows, d_logits.p, vocab, d_temperature.p, d_top_k.p, d_top_p.p, d_seed.p, d_draw.p, d_tokens.p, workspace,
                          workspace_bytes, 0));
    auto sampled = d_tokens.download();
    cudaFree(workspace);
    bool greedy_ok = true, sample_ok = true;
    std::string detail;
    for (int r = 0; r < rows; ++r) {
      const float* row = &logits[size_t(r) * vocab];
      if (greedy[r] != sampler_argmax(row, vocab)) greedy_ok = false, detail += fmt(" argmax row %d: %d vs %d;", r, greedy[r], sampler_argmax(row, vocab));
      const int expected = sampler_sample(row, vocab, temperature[r], top_k[r], top_p[r], double(splitmix(seed[r], draw[r]) >> 11) * 0x1.0p-53);
      if (sampled[r] != expected) sample_ok = false, detail += fmt(" sample row %d: %d vs %d;", r, sampled[r], expected);
    }
    report(fmt("argmax vocab %d (ties, -inf, NaN)", vocab), greedy_ok, detail);
    report(fmt("sample vocab %d (temperature, top-k, top-p, SplitMix64)", vocab), sample_ok, workspace_bytes > 0 ? "" : "no workspace size");
  }
}

// A graph of two operations captured for 8 rows, replayed with 5 and then 8 active rows and new inputs.
void check_graph(std::mt19937_64& rng) {
  const int hidden = 64, vocab = 20, launch = 8;
  std::vector<void*> keep;
  Weights table = random_weights(rng, BD_DTYPE_F32, size_t(vocab) * hidden, 1);
  DeviceArray<const void*> d_tables(std::vector<const void*>{table.upload(keep)});
  DeviceArray<int32_t> d_dtypes(std::vector<int32_t>{BD_DTYPE_F32});
  auto norm = random_floats(rng, hidden, 0.5f, 1.5f);
  DeviceArray<float> d_norm(norm);
  DeviceArray<const float*> d_norms(std::vector<const float*>{d_norm.p});
  DeviceArray<int32_t> d_active(1), d_tokens(launch), d_slots(std::vector<int32_t>(launch, 0));
  DeviceArray<float> d_x(size_t(launch) * hidden), d_y(size_t(launch) * hidden);
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  BD_OK_(bd_step_graph_begin(stream));
  BD_OK_(bd_step_embed(d_active.p, launch, d_tokens.p, d_slots.p, d_tables.p, d_dtypes.p, hidden, d_x.p, stream));
  BD_OK_(bd_step_rmsnorm(d_active.p, launch, d_slots.p, nullptr, d_norms.p, d_x.p, d_y.p, hidden, 1e-5f, stream));
  void* graph = nullptr;
  BD_OK_(bd_step_graph_end(stream, &graph));
  bool ok = true;
  for (int active : {5, 8}) {
    std::vector<int32_t> tokens(launch);
    for (auto& t : tokens) t = int(rng() % vocab);
    d_tokens.upload(tokens);
    d_active.upload(std::vector<int32_t>{active});
    d_y.poison();
    BD_OK_(bd_step_graph_launch(graph, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    auto y = d_y.download();
    for (int r = 0; r < launch; ++r) {
      const float* x = &table.values[size_t(tokens[r]) * hidden];
      double sum = 0;
      for (int k = 0; k < hidden; ++k) sum += double(x[k] * x[k]);
      const float inverse = float(1.0 / std::sqrt(double(float(sum / hidden) + 1e-5f)));
      for (int k = 0; k < hidden; ++k) {
        const float v = y[size_t(r) * hidden + k];
        ok &= r < active ? std::fabs(v - norm[k] * (x[k] * inverse)) <= 1e-6f * std::fabs(norm[k] * (x[k] * inverse)) + 1e-30f
                         : std::isnan(v);
      }
    }
  }
  // A capture whose launch fails is aborted and leaves the stream usable.
  BD_OK_(bd_step_graph_begin(stream));
  const int refused = bd_step_attention(d_active.p, launch, d_tokens.p, d_tokens.p, d_tokens.p, d_tokens.p, d_x.p, BD_DTYPE_F32, d_x.p,
                                        d_x.p, 4, 4, 4,
                                        1024, 0, 1.f, d_y.p, stream);
  BD_OK_(bd_step_graph_abort(stream));
  BD_OK_(bd_step_graph_launch(graph, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  BD_OK_(bd_step_graph_destroy(graph));
  CUDA_OK(cudaStreamDestroy(stream));
  report("graph capture and replay (active rows from device memory)", ok, "");
  report("aborted capture leaves the stream usable", refused == BD_ERR_BAD_SHAPE, fmt("status %d: %s", refused, bd_step_last_error()));
  for (void* p : keep) cudaFree(p);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed = std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32);
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--seed=", 7) == 0) seed = std::strtoull(argv[i] + 7, nullptr, 10);
  cudaDeviceProp properties;
  CUDA_OK(cudaGetDeviceProperties(&properties, 0));
  std::printf("step_check: %s (cc %d.%d), seed %llu (replay with --seed=%llu), step ABI %d\n", properties.name, properties.major,
              properties.minor, (unsigned long long)seed, (unsigned long long)seed, bd_step_abi_version());
  std::mt19937_64 rng(seed);
  check_embed(rng);
  check_rmsnorm(rng);
  check_project(rng);
  check_rotary_cache(rng);
  check_attention(rng);
  check_swiglu_gather(rng);
  check_lm_head(rng);
  check_sampling(rng);
  check_graph(rng);
  CUDA_OK(cudaDeviceSynchronize());
  std::printf("\n== step_check summary: %d checks, %d failed (seed %llu)\n", checks, failures, (unsigned long long)seed);
  for (const auto& line : summary) std::printf("  %s\n", line.c_str());
  return failures == 0 ? 0 : 1;
}
