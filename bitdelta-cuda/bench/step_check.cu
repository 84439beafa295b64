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
#include "bench_check.h"

namespace {

int failures = 0, checks = 0;
std::vector<std::string> summary;

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
  explicit DeviceArray(size_t count) : n(count) { CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(1, count) * sizeof(T))); }
  DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() { cudaFree(p); }
  DeviceArray(const DeviceArray&) = delete;
  void upload(const std::vector<T>& host) { CUDA_CHECK(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> download() const {
    std::vector<T> host(n);
    CUDA_CHECK(cudaMemcpy(host.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  void poison() { CUDA_CHECK(cudaMemset(p, 0xFF, n * sizeof(T))); }  // NaN for floats
};

// Weights in a dtype, with their float values (what the kernels widen to).
struct Weights {
  int dtype;
  std::vector<float> values;  // rounded to dtype
  std::vector<uint16_t> bits16;
  const void* upload(std::vector<void*>& keep) const {
    void* p = nullptr;
    size_t bytes = dtype == BD_DTYPE_F32 ? values.size() * 4 : values.size() * 2;
    CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 1)));
    CUDA_CHECK(cudaMemcpy(p, dtype == BD_DTYPE_F32 ? static_cast<const void*>(values.data()) : static_cast<const void*>(bits16.data()),
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
  BD_CHECK(bd_step_embed(d_active.p, launch, d_tokens.p, d_slots.p, d_pointers.p, d_dtypes.p, hidden, d_out.p, 0));
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
      BD_CHECK(bd_step_rmsnorm(d_active.p, rows, d_slots.p, with_index ? d_index.p : nullptr, d_weights.p, d_in.p, d_out.p, hidden, eps, 0));
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
      CUDA_CHECK(cudaMalloc(&d_packed, packed[s].size()));
      CUDA_CHECK(cudaMalloc(&d_signs, bd_signs_device_bytes(c.M, c.K)));
      CUDA_CHECK(cudaMalloc(&d_scales, 4 * size_t(c.M)));
      CUDA_CHECK(cudaMemcpy(d_packed, packed[s].data(), packed[s].size(), cudaMemcpyHostToDevice));
      CUDA_CHECK(cudaMemcpy(d_scales, scales[s].data(), 4 * size_t(c.M), cudaMemcpyHostToDevice));
      BD_CHECK(bd_repack_signs(d_packed, d_signs, c.M, c.K, 0));
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
      BD_CHECK(bd_step_project(d_active.p, c.rows, d_slots.p, c.dtype, d_W, d_signs.p, d_scales.p, d_x.p, d_y.p, c.M, c.K, accumulate, 0));
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

// RoPE on q and k, then the key and value writes into the cache; cache slot -1 writes nothing. A row's pairs and values
// take ceil(((heads + kv_heads) * head_dim / 2 + kv_heads * head_dim) / 256) blocks.
void check_rotary_cache(std::mt19937_64& rng, int heads, int kv_heads, int head_dim) {
  const int half = head_dim / 2, context = 64, rows = 6;
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
  BD_CHECK(bd_step_rotary_cache(d_active.p, rows, d_positions.p, d_slots.p, d_cos.p, d_sin.p, d_qkv.p, heads, kv_heads, head_dim,
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
  const std::string shape = fmt(" (heads %d/%d x %d)", heads, kv_heads, head_dim);
  report("rotary (exact operation order) on q and k" + shape, out == expected, "");
  report("KV cache write (slot -1 writes nothing)" + shape, out_keys == keys && out_values == values, "");
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
    BD_CHECK(bd_step_attention(d_active.p, c.rows, d_positions.p, d_sequence.p, d_tables.p, d_width.p, d_qkv.p, BD_DTYPE_F32, d_keys.p,
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
  BD_CHECK(bd_step_swiglu(d_active.p, rows, d_gate_up.p, d_out.p, intermediate, 0));
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
  BD_CHECK(bd_step_gather_rows(d_outputs.p, 4, d_index.p, d_out.p, d_gathered.p, intermediate, 0));
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
    BD_CHECK(bd_step_lm_head(d_active.p, rows, d_slots.p, d_index.p, d_pointers.p, d_dtypes.p, d_x.p, d_logits.p, vocab, hidden, 0));
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

// ---------------------------------------------------------------- the tensor-core path (16-bit models)

// Tenants of a product check: slot 0 the base (no delta), slot 1 .. slots - 2 random signs repacked on the device with
// per-row scales (every fifth 0), the last slot NULL signs (a tenant without delta on this product).
struct ProductTenants {
  int64_t M, K, row_bytes;
  std::vector<std::vector<uint8_t>> packed;
  std::vector<std::vector<float>> scales;
  std::vector<const uint32_t*> signs;
  std::vector<const float*> scale_pointers;
  std::vector<void*> keep;
  ProductTenants(std::mt19937_64& rng, int slots, int64_t M_, int64_t K_) : M(M_), K(K_), row_bytes((K_ + 7) / 8),
      packed(slots), scales(slots), signs(slots, nullptr), scale_pointers(slots, nullptr) {
    for (int s = 1; s + 1 < slots; ++s) {
      packed[s].resize(size_t(M) * row_bytes);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t b = 0; b < row_bytes; ++b) {
          uint8_t v = uint8_t(rng());
          if (b == row_bytes - 1 && K % 8) v &= uint8_t((1 << (K % 8)) - 1);
          packed[s][m * row_bytes + b] = v;
        }
      scales[s] = random_floats(rng, M, 0.001f, 0.02f);
      for (int64_t m = 0; m < M; m += 5) scales[s][m] = 0;
      uint8_t* d_packed;
      uint32_t* d_signs;
      float* d_scales;
      CUDA_CHECK(cudaMalloc(&d_packed, packed[s].size()));
      CUDA_CHECK(cudaMalloc(&d_signs, bd_signs_device_bytes(M, K)));
      CUDA_CHECK(cudaMalloc(&d_scales, 4 * size_t(M)));
      CUDA_CHECK(cudaMemcpy(d_packed, packed[s].data(), packed[s].size(), cudaMemcpyHostToDevice));
      CUDA_CHECK(cudaMemcpy(d_scales, scales[s].data(), 4 * size_t(M), cudaMemcpyHostToDevice));
      BD_CHECK(bd_repack_signs(d_packed, d_signs, M, K, 0));
      keep.push_back(d_packed), keep.push_back(d_signs), keep.push_back(d_scales);
      signs[s] = d_signs, scale_pointers[s] = d_scales;
    }
  }
  ~ProductTenants() { for (void* p : keep) cudaFree(p); }
  bool has_delta(int slot) const { return !packed[slot].empty(); }
  // y[m] of one row in double: base + a[m] * delta.
  double product(const Weights& W, const float* x, int slot, int64_t m) const {
    double base = 0, delta = 0;
    for (int64_t k = 0; k < K; ++k) {
      base += double(x[k]) * W.values[m * K + k];
      if (has_delta(slot)) delta += ((packed[slot][m * row_bytes + k / 8] >> (k % 8)) & 1) ? x[k] : -double(x[k]);
    }
    return base + (has_delta(slot) ? double(scales[slot][m]) * delta : 0.0);
  }
};

// Activations of a product check: uniform values, and rows that stress the split: one spanning 1e-7 .. 1e3, one of
// zeros, one tiny (1e-30).
std::vector<float> product_inputs(std::mt19937_64& rng, int rows, int64_t K) {
  auto x = random_floats(rng, size_t(rows) * K, -2, 2);
  std::uniform_real_distribution<double> exponent(-7, 3);
  for (int64_t k = 0; k < K; ++k) {
    if (rows > 1) x[size_t(1) * K + k] = float((rng() & 1 ? 1 : -1) * std::pow(10.0, exponent(rng)));
    if (rows > 2) x[size_t(2) * K + k] = 0.f;
    if (rows > 3) x[size_t(3) * K + k] *= 1e-30f;
  }
  return x;
}

// The split form on the host side: s per the kernel's rule, q = rint(x s 2^8).
float host_split_scale(float row_max) {
  if (!(row_max > 0.f) || !std::isfinite(row_max)) return 1.f;
  int e;
  std::frexp(row_max, &e);
  return std::ldexp(1.f, std::max(-126, std::min(126, 15 - e)));
}

// Column of bit P of B register `reg` of lane t in a k256 block (bd_tile.cuh, xb_column).
int host_xb_column(int t, int reg, int P) {
  const int kb = 2 * reg + ((P & 1) ? 0 : 1);
  const int bitpos = (P & 1) ? P : P + 1;
  const int e = bitpos <= 15 ? 0 : 1;
  const int q = e ? 31 - bitpos : 15 - bitpos;
  return 64 * kb + 32 * (q >> 3) + 8 * t + 4 * ((q >> 2) & 1) + 2 * ((q & 3) >> 1) + e;
}

// The split form's pieces, as bitdelta_step.h lays them out.
struct SplitOffsets {
  size_t parts, planes, rscale, qsum;
  SplitOffsets(int64_t capacity, int64_t K, int dtype) {
    auto up = [](size_t b) { return (b + 255) / 256 * 256; };
    const int parts_count = dtype == BD_DTYPE_BF16 ? 3 : 2;
    parts = 0;
    planes = up(size_t(parts_count) * capacity * K * 2);
    rscale = planes + up(size_t(capacity) * ((K + 255) / 256) * 192 * 4);
    qsum = rscale + up(size_t(capacity) * 4);
  }
};

float half_bits_to_float(uint16_t h, int dtype) {
  if (dtype == BD_DTYPE_BF16) return from_bf16(h);
  __half v;
  std::memcpy(&v, &h, 2);
  return __half2float(v);
}

// The split form of x read back: the parts add up to x s within 2^-21 (F16) / 2^-24 (BF16) of max |x s|, 1 / s, the
// planes rebuild q exactly, the part sums of q add up to its sum.
void check_split_form(std::mt19937_64& rng) {
  for (int dtype : {BD_DTYPE_F16, BD_DTYPE_BF16})
    for (int64_t K : {int64_t(64), int64_t(200), int64_t(2056)}) {
      const int rows = 5, capacity = 8;
      auto x = product_inputs(rng, rows, K);
      const size_t bytes = bd_step_split_bytes(capacity, K, dtype);
      DeviceArray<uint8_t> d_split(bytes);
      CUDA_CHECK(cudaMemset(d_split.p, 0xAB, bytes));
      DeviceArray<float> d_x(x);
      DeviceArray<int32_t> d_active(std::vector<int32_t>{rows});
      BD_CHECK(bd_step_split(d_active.p, 6, d_x.p, K, dtype, 1, d_split.p, capacity, 0));
      auto split = d_split.download();
      SplitOffsets at(capacity, K, dtype);
      const int parts = dtype == BD_DTYPE_BF16 ? 3 : 2;
      const int64_t K256 = (K + 255) / 256;
      double worst_parts = 0;
      bool scale_ok = true, planes_ok = true, sums_ok = true;
      for (int r = 0; r < rows; ++r) {
        float row_max = 0;
        for (int64_t k = 0; k < K; ++k) row_max = std::max(row_max, std::fabs(x[size_t(r) * K + k]));
        const float s = host_split_scale(row_max);
        float rscale;
        std::memcpy(&rscale, &split[at.rscale + 4 * size_t(r)], 4);
        scale_ok &= rscale == 1.f / s;
        long long q_total = 0, q_parts = 0;
        for (int64_t k = 0; k < K; ++k) {
          double sum = 0;
          for (int p = 0; p < parts; ++p) {
            uint16_t h;
            std::memcpy(&h, &split[at.parts + 2 * ((size_t(p) * capacity + r) * K + k)], 2);
            sum += half_bits_to_float(h, dtype);
          }
          const double y = double(x[size_t(r) * K + k]) * s;
          if (row_max > 0) worst_parts = std::max(worst_parts, std::fabs(sum - y) / (double(row_max) * s));
          const long long q = std::max(-8388607LL, std::min(8388607LL, (long long)std::nearbyint(y * 256.0)));
          q_total += q;
          // Rebuild q_k from the 24 plane words.
          const int64_t kb = k / 256;
          const int column = int(k % 256);
          long long rebuilt = 0;
          for (int t = 0; t < 4; ++t)
            for (int reg = 0; reg < 2; ++reg)
              for (int P = 0; P < 32; ++P) {
                if (host_xb_column(t, reg, P) != column) continue;
                for (int plane = 0; plane < 24; ++plane) {
                  const int group = plane / 8, lane = (plane % 8) * 4 + t;
                  uint32_t word;
                  std::memcpy(&word, &split[at.planes + 4 * ((size_t(r) * K256 + kb) * 192 + group * 64 + lane * 2 + reg)], 4);
                  if ((word >> P) & 1) rebuilt += plane == 23 ? -(1LL << 23) : (1LL << plane);
                }
              }
          planes_ok &= rebuilt == q;
        }
        for (int j = 0; j < 8; ++j) {
          long long part;
          std::memcpy(&part, &split[at.qsum + 8 * (size_t(r) * 8 + j)], 8);
          q_parts += part;
        }
        sums_ok &= q_parts == q_total;
      }
      const double bound = dtype == BD_DTYPE_F16 ? std::ldexp(1.0, -21) : std::ldexp(1.0, -24);
      report(fmt("split form %s K %lld: parts, 1/s, 24 planes, sums of q", dtype_name(dtype), (long long)K),
             worst_parts <= bound && scale_ok && planes_ok && sums_ok,
             fmt("parts error %.2e of max|x s| (bound %.1e)%s%s%s", worst_parts, bound, scale_ok ? "" : ", WRONG 1/s",
                 planes_ok ? "" : ", planes do not rebuild q", sums_ok ? "" : ", part sums of q wrong"));
    }
}

// RMSNorm and SwiGLU writing the split form: their outputs bit for bit those of bd_step_rmsnorm / bd_step_swiglu, their
// split forms byte for byte bd_step_split's of those outputs.
void check_fused_split(std::mt19937_64& rng) {
  for (int dtype : {BD_DTYPE_F16, BD_DTYPE_BF16}) {
    const int rows = 6, capacity = 8;
    const int64_t hidden = 264, intermediate = 328;
    const size_t norm_bytes = bd_step_split_bytes(capacity, hidden, dtype), ff_bytes = bd_step_split_bytes(capacity, intermediate, dtype);
    auto in = random_floats(rng, size_t(rows) * hidden, -3, 3), gate_up = random_floats(rng, size_t(rows) * 2 * intermediate, -6, 6);
    auto weight = random_floats(rng, hidden, 0.5f, 1.5f);
    std::vector<int32_t> slots(rows, 0);
    DeviceArray<float> d_in(in), d_gate_up(gate_up), d_weight(weight), d_a(size_t(capacity) * hidden), d_b(size_t(capacity) * hidden),
        d_fa(size_t(capacity) * intermediate), d_fb(size_t(capacity) * intermediate);
    DeviceArray<const float*> d_weights(std::vector<const float*>{d_weight.p});
    DeviceArray<int32_t> d_slots(slots), d_active(std::vector<int32_t>{rows});
    DeviceArray<uint8_t> s_a(norm_bytes), s_b(norm_bytes), f_a(ff_bytes), f_b(ff_bytes);
    for (auto* p : {&s_a, &s_b, &f_a, &f_b}) CUDA_CHECK(cudaMemset(p->p, 0, p->n));
    BD_CHECK(bd_step_rmsnorm_split(d_active.p, rows, d_slots.p, d_weights.p, d_in.p, d_a.p, hidden, 1e-5f, dtype, 1, s_a.p, capacity, 0));
    BD_CHECK(bd_step_rmsnorm(d_active.p, rows, d_slots.p, nullptr, d_weights.p, d_in.p, d_b.p, hidden, 1e-5f, 0));
    BD_CHECK(bd_step_split(d_active.p, rows, d_b.p, hidden, dtype, 1, s_b.p, capacity, 0));
    BD_CHECK(bd_step_swiglu_split(d_active.p, rows, d_gate_up.p, d_fa.p, intermediate, dtype, 1, f_a.p, capacity, 0));
    BD_CHECK(bd_step_swiglu(d_active.p, rows, d_gate_up.p, d_fb.p, intermediate, 0));
    BD_CHECK(bd_step_split(d_active.p, rows, d_fb.p, intermediate, dtype, 1, f_b.p, capacity, 0));
    auto a = d_a.download(), b = d_b.download(), fa = d_fa.download(), fb = d_fb.download();
    a.resize(size_t(rows) * hidden), b.resize(a.size()), fa.resize(size_t(rows) * intermediate), fb.resize(fa.size());
    report(fmt("rmsnorm_split %s: output and split form as rmsnorm then split", dtype_name(dtype)), a == b && s_a.download() == s_b.download(), "");
    report(fmt("swiglu_split %s: output and split form as swiglu then split (the wiring; each is checked above)", dtype_name(dtype)), fa == fb && f_a.download() == f_b.download(), "");
  }
}

// The expected y of the active rows of a decode product (the double reference, plus y0 when accumulating), and in
// *padding_untouched whether the padding rows of y kept y0 (accumulating) or their poison (NaN).
std::vector<float> expected_products(const Weights& W, const ProductTenants& tenants, const std::vector<float>& x,
                                     const std::vector<int32_t>& slot, const std::vector<float>& y0, const std::vector<float>& y,
                                     int rows, int launch, int64_t M, int64_t K, bool accumulate, bool* padding_untouched) {
  std::vector<float> expected(size_t(rows) * M);
  *padding_untouched = true;
  for (int r = 0; r < launch; ++r)
    for (int64_t m = 0; m < M; ++m) {
      const size_t i = size_t(r) * M + m;
      if (r >= rows) {
        *padding_untouched &= accumulate ? y[i] == y0[i] : std::isnan(y[i]);
        continue;
      }
      const double p = tenants.product(W, &x[size_t(r) * K], slot[r], m);
      expected[i] = float(accumulate ? y0[i] + p : p);
    }
  return expected;
}

// One case of the decode products' checks: W, the tenants of 4 slots, each row's slot (choose_slot(row)), x and the
// rows y holds before an accumulating product, drawn from rng in that order, and their device copies.
struct ProductCase {
  static constexpr int SLOTS = 4;
  int dtype, M, K, rows, launch;
  std::vector<void*> keep;
  Weights W;
  const void* d_W;
  ProductTenants tenants;
  std::vector<int32_t> slot;
  std::vector<float> x, y0;
  DeviceArray<const uint32_t*> d_signs;
  DeviceArray<const float*> d_scales;
  DeviceArray<int32_t> d_slots, d_active;
  DeviceArray<float> d_x;
  template <typename ChooseSlot>
  ProductCase(std::mt19937_64& rng, int dtype_, int M_, int K_, int rows_, int launch_, ChooseSlot choose_slot)
      : dtype(dtype_), M(M_), K(K_), rows(rows_), launch(launch_), W(random_weights(rng, dtype_, size_t(M_) * K_, 0.1f)),
        d_W(W.upload(keep)), tenants(rng, SLOTS, M_, K_), slot(slots_of(launch_, choose_slot)), x(product_inputs(rng, launch_, K_)),
        y0(random_floats(rng, size_t(launch_) * M_, -2, 2)), d_signs(tenants.signs), d_scales(tenants.scale_pointers), d_slots(slot),
        d_active(std::vector<int32_t>{rows_}), d_x(x) {}
  ~ProductCase() { for (void* p : keep) cudaFree(p); }
  template <typename ChooseSlot>
  static std::vector<int32_t> slots_of(int launch, ChooseSlot choose_slot) {
    std::vector<int32_t> slots(launch);
    for (int r = 0; r < launch; ++r) slots[r] = choose_slot(r);
    return slots;
  }
  // The double reference of y (expected_products; *padding_untouched: whether rows past `rows` kept their poison).
  std::vector<float> expected(const std::vector<float>& y, int accumulate, bool* padding_untouched) const {
    return expected_products(W, tenants, x, slot, y0, y, rows, launch, M, K, accumulate, padding_untouched);
  }
};

// bd_step_project_tc against a double reference, and against the exact SIMT product's own error: the device's form
// and the one-tile form (bd_step_set_tc_tiles), M off the 32 rows of two tiles.
void check_project_tc(std::mt19937_64& rng) {
  struct Case { int dtype, M, K, rows, launch; };
  const Case cases[] = {{BD_DTYPE_F16, 40, 200, 5, 8},      {BD_DTYPE_BF16, 300, 512, 13, 16}, {BD_DTYPE_F16, 33, 64, 20, 32},
                        {BD_DTYPE_BF16, 4097, 264, 3, 4},   {BD_DTYPE_F16, 128, 4104, 16, 16}, {BD_DTYPE_BF16, 24, 8, 7, 8},
                        {BD_DTYPE_F16, 520, 11008, 9, 16},  {BD_DTYPE_BF16, 48, 776, 16, 16}};
  for (int one_tile = 0; one_tile < 2; ++one_tile) {
    BD_CHECK(bd_step_set_tc_tiles(one_tile));
    for (const Case& c : cases) {
      ProductCase p(rng, c.dtype, c.M, c.K, c.rows, c.launch, [&](int) { return int(rng() % ProductCase::SLOTS); });
      const int64_t capacity = c.launch + 3;
      DeviceArray<uint8_t> d_split(bd_step_split_bytes(capacity, c.K, c.dtype));
      DeviceArray<float> d_y(size_t(c.launch) * c.M), d_exact(size_t(c.launch) * c.M);
      BD_CHECK(bd_step_split(p.d_active.p, c.launch, p.d_x.p, c.K, c.dtype, 1, d_split.p, capacity, 0));
      for (int accumulate = 0; accumulate < 2; ++accumulate) {
        if (accumulate) d_y.upload(p.y0), d_exact.upload(p.y0); else d_y.poison(), d_exact.poison();
        BD_CHECK(bd_step_project_tc(p.d_active.p, c.launch, p.d_slots.p, c.dtype, p.d_W, p.d_signs.p, p.d_scales.p, d_split.p, capacity,
                                    d_y.p, c.M, c.K, accumulate, 0));
        BD_CHECK(bd_step_project(p.d_active.p, c.launch, p.d_slots.p, c.dtype, p.d_W, p.d_signs.p, p.d_scales.p, p.d_x.p, d_exact.p, c.M,
                                 c.K, accumulate, 0));
        auto y = d_y.download(), exact = d_exact.download();
        bool padding_untouched = true;
        const std::vector<float> expected = p.expected(y, accumulate, &padding_untouched);
        const double error = relative_error(expected, y, expected.size()), exact_error = relative_error(expected, exact, expected.size());
        report(fmt("project_tc%s %s W[%d, %d] rows %d of %d%s", one_tile ? " (one-tile form)" : "", dtype_name(c.dtype), c.M, c.K, c.rows,
                   c.launch, accumulate ? " accumulate" : ""),
               error <= 2e-5 && padding_untouched,
               fmt("relative error %.2e (exact SIMT path %.2e)%s", error, exact_error, padding_untouched ? "" : ", PADDING ROWS WRITTEN"));
      }
    }
  }
  BD_CHECK(bd_step_set_tc_tiles(0));
}

// bd_step_project_vector (decode steps of one or two rows) against a double reference: tiles of M cut short, column
// counts off the 1024-column step, a row with a delta first, the other row's slot at random (slots 0 and 3: base only).
void check_project_vector(std::mt19937_64& rng) {
  struct Case { int dtype, M, K, rows, launch; };
  const Case cases[] = {{BD_DTYPE_F16, 40, 200, 1, 1},   {BD_DTYPE_BF16, 300, 512, 2, 2},    {BD_DTYPE_F16, 4097, 264, 1, 2},
                        {BD_DTYPE_BF16, 24, 8, 2, 2},    {BD_DTYPE_F16, 520, 11008, 2, 2},   {BD_DTYPE_F16, 33, 1032, 1, 1},
                        {BD_DTYPE_BF16, 17, 2056, 2, 2}};
  for (const Case& c : cases) {
    ProductCase p(rng, c.dtype, c.M, c.K, c.rows, c.launch,
                  [&](int r) { return r == 0 ? 1 + int(rng() % 2) : int(rng() % ProductCase::SLOTS); });
    DeviceArray<float> d_y(size_t(c.launch) * c.M);
    for (int accumulate = 0; accumulate < 2; ++accumulate) {
      if (accumulate) d_y.upload(p.y0); else d_y.poison();
      BD_CHECK(bd_step_project_vector(p.d_active.p, c.launch, p.d_slots.p, c.dtype, p.d_W, p.d_signs.p, p.d_scales.p, p.d_x.p, d_y.p, c.M,
                                      c.K, accumulate, 0));
      auto y = d_y.download();
      bool padding_untouched = true;
      const std::vector<float> expected = p.expected(y, accumulate, &padding_untouched);
      const double error = relative_error(expected, y, expected.size());
      report(fmt("project_vector %s W[%d, %d] rows %d of %d (slots %d%s)%s", dtype_name(c.dtype), c.M, c.K, c.rows, c.launch, p.slot[0],
                 c.launch > 1 ? fmt(", %d", p.slot[1]).c_str() : "", accumulate ? " accumulate" : ""),
             error <= 2e-5 && padding_untouched, fmt("relative error %.2e%s", error, padding_untouched ? "" : ", PADDING ROWS WRITTEN"));
    }
  }
}

// bd_step_project_prefill (bd_prefill over the parts) against a double reference: rows in runs of three slots.
void check_project_prefill(std::mt19937_64& rng) {
  for (int dtype : {BD_DTYPE_F16, BD_DTYPE_BF16}) {
    const int M = 300, K = 200, rows = 70, slots = 4;
    std::vector<void*> keep;
    Weights W = random_weights(rng, dtype, size_t(M) * K, 0.1f);
    const void* d_W = W.upload(keep);
    ProductTenants tenants(rng, slots, M, K);
    const std::vector<int32_t> offsets = {0, 40, 41, 70}, segment_slots = {1, 0, 3};
    std::vector<int32_t> slot(rows);
    for (size_t s = 0; s + 1 < offsets.size(); ++s)
      for (int r = offsets[s]; r < offsets[s + 1]; ++r) slot[r] = segment_slots[s];
    auto x = product_inputs(rng, rows, K);
    auto y0 = random_floats(rng, size_t(rows) * M, -2, 2);
    DeviceArray<uint8_t> d_split(bd_step_split_bytes(rows, K, dtype));
    const size_t workspace_bytes = bd_step_project_prefill_workspace_bytes(rows, 3, M);
    DeviceArray<uint8_t> d_workspace(workspace_bytes);
    DeviceArray<const uint32_t*> d_signs(tenants.signs);
    DeviceArray<const float*> d_scales(tenants.scale_pointers);
    DeviceArray<int32_t> d_offsets(offsets), d_segment_slots(segment_slots), d_active(std::vector<int32_t>{rows});
    DeviceArray<float> d_x(x), d_y(size_t(rows) * M);
    BD_CHECK(bd_step_split(d_active.p, rows, d_x.p, K, dtype, 0, d_split.p, rows, 0));
    for (int accumulate = 0; accumulate < 2; ++accumulate) {
      if (accumulate) d_y.upload(y0); else d_y.poison();
      BD_CHECK(bd_step_project_prefill(rows, d_offsets.p, d_segment_slots.p, 3, dtype, d_W, d_signs.p, d_scales.p, slots, d_split.p, rows, d_y.p,
                                     M, K, accumulate, d_workspace.p, workspace_bytes, 0));
      auto y = d_y.download();
      std::vector<float> expected(y.size());
      for (int r = 0; r < rows; ++r)
        for (int64_t m = 0; m < M; ++m) {
          const double p = tenants.product(W, &x[size_t(r) * K], slot[r], m);
          expected[size_t(r) * M + m] = float(accumulate ? y0[size_t(r) * M + m] + p : p);
        }
      const double error = relative_error(expected, y, y.size());
      report(fmt("project_prefill %s W[%d, %d] rows %d in 3 runs%s", dtype_name(dtype), M, K, rows, accumulate ? " accumulate" : ""),
             error <= 2e-5, fmt("relative error %.2e", error));
    }
    for (void* p : keep) cudaFree(p);
  }
}

// The split decode kernel and the flash prefill kernel against the attention reference (double softmax) over caches of
// every dtype (the reference reads the cache's rounded values).
void check_attention_fast(std::mt19937_64& rng) {
  struct Case { int heads, kv_heads, head_dim, block_size, window, kv_dtype; };
  const Case cases[] = {{8, 4, 8, 16, 0, BD_DTYPE_F32},    {4, 1, 18, 3, 5, BD_DTYPE_F16},      {8, 1, 16, 7, 100, BD_DTYPE_BF16},
                        {32, 32, 128, 16, 0, BD_DTYPE_F16}, {32, 8, 128, 16, 0, BD_DTYPE_BF16}, {4, 4, 256, 4, 9, BD_DTYPE_F32},
                        {2, 2, 512, 8, 0, BD_DTYPE_F16},    {4, 2, 192, 16, 20, BD_DTYPE_BF16}, {16, 2, 96, 16, 0, BD_DTYPE_F16}};
  for (const Case& c : cases) {
    const int context = 300, sequences = 3, width = (c.heads + 2 * c.kv_heads) * c.head_dim;
    const int table_width = (context + c.block_size - 1) / c.block_size;
    PagedCache cache{sequences * table_width, c.kv_heads, c.block_size, c.head_dim};
    auto keys = random_floats(rng, cache.size(), -1, 1), values = random_floats(rng, cache.size(), -1, 1);
    std::vector<uint16_t> keys16(cache.size()), values16(cache.size());
    for (size_t i = 0; i < cache.size(); ++i) {
      if (c.kv_dtype == BD_DTYPE_F32) continue;
      for (auto* pair : {&keys, &values}) {
        float& v = (*pair)[i];
        uint16_t bits;
        if (c.kv_dtype == BD_DTYPE_F16) {
          __half h = __float2half_rn(v);
          std::memcpy(&bits, &h, 2);
        } else {
          bits = to_bf16(v);
        }
        (pair == &keys ? keys16 : values16)[i] = bits;
        v = half_bits_to_float(bits, c.kv_dtype);
      }
    }
    std::vector<int32_t> blocks(cache.blocks);
    std::iota(blocks.begin(), blocks.end(), 0);
    std::shuffle(blocks.begin(), blocks.end(), rng);
    std::vector<int32_t> tables(size_t(sequences) * table_width);
    for (size_t i = 0; i < tables.size(); ++i) tables[i] = blocks[i];
    // Decode rows: 5 rows at random positions of the 3 sequences (one at position 0). Prefill rows: sequence 0 at
    // positions 100 .. 139 (tiles of 32 + 8), sequence 1 at 0 .. 4, sequence 2 at 250 .. 285 (32 + 4).
    std::vector<int32_t> decode_positions, decode_sequence, prefill_positions, prefill_sequence, tile_first, tile_rows;
    for (int r = 0; r < 5; ++r) decode_sequence.push_back(int(rng() % sequences)), decode_positions.push_back(r == 0 ? 0 : int(rng() % context));
    const int runs[3][2] = {{100, 40}, {0, 5}, {250, 36}};
    for (int s = 0; s < 3; ++s)
      for (int i = 0; i < runs[s][1]; ++i) {
        if (i % 32 == 0) tile_first.push_back(int(prefill_positions.size())), tile_rows.push_back(std::min(32, runs[s][1] - i));
        prefill_sequence.push_back(s), prefill_positions.push_back(runs[s][0] + i);
      }
    const float scale = float(1.0 / std::sqrt(double(c.head_dim)));
    auto reference = [&](const std::vector<float>& qkv, const std::vector<int32_t>& positions, const std::vector<int32_t>& sequence_of_row) {
      std::vector<float> expected(positions.size() * c.heads * c.head_dim);
      for (size_t r = 0; r < positions.size(); ++r) {
        const int p = positions[r], first = c.window > 0 ? std::max(0, p - c.window + 1) : 0, count = p - first + 1;
        for (int h = 0; h < c.heads; ++h) {
          const int kvh = h / (c.heads / c.kv_heads);
          const float* q = &qkv[r * width + h * c.head_dim];
          std::vector<double> score(count);
          double max = -INFINITY, total = 0;
          for (int j = 0; j < count; ++j) {
            const int pos = first + j, block = tables[sequence_of_row[r] * table_width + pos / c.block_size];
            double sum = 0;
            for (int d = 0; d < c.head_dim; ++d) sum += double(q[d]) * keys[cache.index(block, kvh, pos % c.block_size, d)];
            score[j] = sum * scale, max = std::max(max, score[j]);
          }
          for (int j = 0; j < count; ++j) score[j] = std::exp(score[j] - max), total += score[j];
          for (int d = 0; d < c.head_dim; ++d) {
            double sum = 0;
            for (int j = 0; j < count; ++j) {
              const int pos = first + j, block = tables[sequence_of_row[r] * table_width + pos / c.block_size];
              sum += score[j] * values[cache.index(block, kvh, pos % c.block_size, d)];
            }
            expected[(r * c.heads + h) * c.head_dim + d] = float(sum / total);
          }
        }
      }
      return expected;
    };
    std::vector<void*> keep;
    auto upload_cache = [&](const std::vector<float>& f32, const std::vector<uint16_t>& b16) {
      void* p = nullptr;
      const size_t bytes = cache.size() * (c.kv_dtype == BD_DTYPE_F32 ? 4 : 2);
      CUDA_CHECK(cudaMalloc(&p, bytes));
      CUDA_CHECK(cudaMemcpy(p, c.kv_dtype == BD_DTYPE_F32 ? static_cast<const void*>(f32.data()) : static_cast<const void*>(b16.data()), bytes,
                         cudaMemcpyHostToDevice));
      keep.push_back(p);
      return p;
    };
    const void* d_keys = upload_cache(keys, keys16);
    const void* d_values = upload_cache(values, values16);
    DeviceArray<int32_t> d_tables(tables), d_width(std::vector<int32_t>{table_width});
    const std::string name = fmt("heads %d/%d x %d, blocks of %d, window %d, %s cache", c.heads, c.kv_heads, c.head_dim, c.block_size,
                                 c.window, dtype_name(c.kv_dtype));
    {  // decode: 5 active rows of a launch of 8
      const int launch = 8, rows = 5;
      auto qkv = random_floats(rng, size_t(launch) * width, -1, 1);
      auto positions = decode_positions, sequence_of_row = decode_sequence;
      positions.resize(launch, 0), sequence_of_row.resize(launch, 0);
      DeviceArray<float> d_qkv(qkv), d_out(size_t(launch) * c.heads * c.head_dim);
      DeviceArray<int32_t> d_positions(positions), d_sequence(sequence_of_row), d_active(std::vector<int32_t>{rows});
      const size_t workspace_bytes = bd_step_attention_workspace_bytes(launch, c.heads, c.head_dim);
      DeviceArray<uint8_t> d_workspace(workspace_bytes);
      positions.resize(rows), sequence_of_row.resize(rows);
      auto expected = reference(qkv, positions, sequence_of_row);
      // max_positions = context: several splits and attention_combine_kernel at these few rows; max_positions = 1: one
      // split, each block writing its output itself (the path of many rows; the kernels take the positions' own spans).
      for (const int max_positions : {context, 1}) {
        d_out.poison();
        BD_CHECK(bd_step_attention_decode(d_active.p, launch, d_positions.p, d_sequence.p, d_tables.p, d_width.p, d_qkv.p, c.kv_dtype,
                                        d_keys, d_values, c.block_size, c.heads, c.kv_heads, c.head_dim, c.window, scale, max_positions,
                                        d_out.p, d_workspace.p, workspace_bytes, 0));
        auto out = d_out.download();
        bool padding_untouched = true;
        for (size_t i = expected.size(); i < out.size(); ++i) padding_untouched &= std::isnan(out[i]);
        const double error = relative_error(expected, out, expected.size());
        report("attention_decode " + name + (max_positions == 1 ? ", one split" : ""), error <= 2e-5 && padding_untouched,
               fmt("relative error %.2e%s", error, padding_untouched ? "" : ", PADDING ROWS WRITTEN"));
      }
    }
    if (bd_step_attention_prefill_fits(c.head_dim)) {
      const int rows = int(prefill_positions.size());
      auto qkv = random_floats(rng, size_t(rows) * width, -1, 1);
      DeviceArray<float> d_qkv(qkv), d_out(size_t(rows) * c.heads * c.head_dim);
      DeviceArray<int32_t> d_positions(prefill_positions), d_sequence(prefill_sequence), d_first(tile_first), d_rows(tile_rows);
      d_out.poison();
      BD_CHECK(bd_step_attention_prefill(int64_t(tile_first.size()), d_first.p, d_rows.p, d_positions.p, d_sequence.p, d_tables.p, d_width.p,
                                       d_qkv.p, c.kv_dtype, d_keys, d_values, c.block_size, c.heads, c.kv_heads, c.head_dim, c.window,
                                       scale, d_out.p, 0));
      auto out = d_out.download();
      auto expected = reference(qkv, prefill_positions, prefill_sequence);
      const double error = relative_error(expected, out, out.size());
      report("attention_prefill " + name, error <= 2e-5, fmt("relative error %.2e", error));
    } else {
      report("attention_prefill " + name + ": not taken", c.head_dim > 256,
             "bd_step_attention_prefill_fits says no: bd_step_attention serves this head dimension");
    }
    for (void* p : keep) cudaFree(p);
  }
}

// The grouped lm_head against a double reference: output rows of four slots (heads of mixed dtypes) grouped by slot.
void check_lm_head_grouped(std::mt19937_64& rng) {
  for (int vocab : {7, 4097, 32000}) {
    const int hidden = 264, rows = 11, slots = 4, launch = 16;
    std::vector<void*> keep;
    Weights heads[slots] = {random_weights(rng, BD_DTYPE_F16, size_t(vocab) * hidden, 0.2f),
                            random_weights(rng, BD_DTYPE_BF16, size_t(vocab) * hidden, 0.2f),
                            random_weights(rng, BD_DTYPE_F32, size_t(vocab) * hidden, 0.2f),
                            random_weights(rng, BD_DTYPE_F16, size_t(vocab) * hidden, 0.2f)};
    std::vector<const void*> pointers(slots);
    std::vector<int32_t> dtypes(slots);
    for (int s = 0; s < slots; ++s) pointers[s] = heads[s].upload(keep), dtypes[s] = heads[s].dtype;
    std::vector<int32_t> slot(rows);
    for (int r = 0; r < rows; ++r) slot[r] = r < 9 ? int(rng() % 2) * 3 : 1 + r % 2;  // groups of many rows and of one
    std::vector<int32_t> group_slot, group_offsets, group_rows;
    for (int s = 0; s < slots; ++s) {
      bool any = false;
      for (int r = 0; r < rows; ++r)
        if (slot[r] == s) {
          if (!any) group_slot.push_back(s), group_offsets.push_back(int(group_rows.size()));
          any = true;
          group_rows.push_back(r);
        }
    }
    const int groups = int(group_slot.size());
    group_offsets.push_back(int(group_rows.size()));
    group_slot.resize(launch, 0), group_offsets.resize(launch + 1, rows), group_rows.resize(launch, 0);
    auto x = random_floats(rng, size_t(launch) * hidden, -1, 1);
    DeviceArray<const void*> d_pointers(pointers);
    DeviceArray<int32_t> d_dtypes(dtypes), d_groups(std::vector<int32_t>{groups}), d_group_slot(group_slot), d_group_offsets(group_offsets),
        d_group_rows(group_rows);
    DeviceArray<float> d_x(x), d_logits(size_t(launch) * vocab);
    d_logits.poison();
    BD_CHECK(bd_step_lm_head_grouped(d_groups.p, launch, d_group_slot.p, d_group_offsets.p, d_group_rows.p, d_pointers.p, d_dtypes.p, d_x.p,
                                   d_logits.p, vocab, hidden, 0));
    auto logits = d_logits.download();
    std::vector<float> expected(size_t(rows) * vocab);
    for (int i = 0; i < rows; ++i)
      for (int v = 0; v < vocab; ++v) {
        double sum = 0;
        for (int k = 0; k < hidden; ++k) sum += double(x[size_t(i) * hidden + k]) * heads[slot[i]].values[size_t(v) * hidden + k];
        expected[size_t(i) * vocab + v] = float(sum);
      }
    bool padding_untouched = true;
    for (size_t i = expected.size(); i < logits.size(); ++i) padding_untouched &= std::isnan(logits[i]);
    const double error = relative_error(expected, logits, expected.size());
    report(fmt("lm_head_grouped vocab %d, %d groups", vocab, groups), error <= 2e-5 && padding_untouched,
           fmt("relative error %.2e%s", error, padding_untouched ? "" : ", OTHER ROWS WRITTEN"));
    for (void* p : keep) cudaFree(p);
  }
}

// RMSNorm with its split form and the tensor-core product captured in a graph (the product launched with programmatic
// dependent launch), replayed with 3 and then 12 active rows of 16.
void check_tc_graph(std::mt19937_64& rng) {
  for (int pdl : {1, 0}) {
    const int M = 200, K = 256, launch = 16, slots = 3;
    std::vector<void*> keep;
    Weights W = random_weights(rng, BD_DTYPE_F16, size_t(M) * K, 0.1f);
    const void* d_W = W.upload(keep);
    ProductTenants tenants(rng, slots, M, K);
    auto weight = random_floats(rng, K, 0.5f, 1.5f);
    DeviceArray<float> d_weight(weight), d_in(size_t(launch) * K), d_normed(size_t(launch) * K), d_y(size_t(launch) * M);
    DeviceArray<const float*> d_weights(std::vector<const float*>{d_weight.p, d_weight.p, d_weight.p});
    DeviceArray<const uint32_t*> d_signs(tenants.signs);
    DeviceArray<const float*> d_scales(tenants.scale_pointers);
    DeviceArray<int32_t> d_slots(launch), d_active(1);
    DeviceArray<uint8_t> d_split(bd_step_split_bytes(launch, K, BD_DTYPE_F16));
    cudaStream_t stream;
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    BD_CHECK(bd_step_set_pdl(pdl));
    BD_CHECK(bd_step_graph_begin(stream));
    BD_CHECK(bd_step_rmsnorm_split(d_active.p, launch, d_slots.p, d_weights.p, d_in.p, d_normed.p, K, 1e-5f, BD_DTYPE_F16, 1, d_split.p, launch,
                                 stream));
    BD_CHECK(bd_step_project_tc(d_active.p, launch, d_slots.p, BD_DTYPE_F16, d_W, d_signs.p, d_scales.p, d_split.p, launch, d_y.p, M, K, 0,
                              stream));
    void* graph = nullptr;
    BD_CHECK(bd_step_graph_end(stream, &graph));
    double worst = 0;
    for (int active : {3, 12}) {
      auto in = random_floats(rng, size_t(launch) * K, -2, 2);
      std::vector<int32_t> slot(launch);
      for (auto& s : slot) s = int(rng() % slots);
      d_in.upload(in), d_slots.upload(slot), d_active.upload(std::vector<int32_t>{active});
      d_y.poison();
      BD_CHECK(bd_step_graph_launch(graph, stream));
      CUDA_CHECK(cudaStreamSynchronize(stream));
      auto normed = d_normed.download(), y = d_y.download();
      std::vector<float> expected(size_t(active) * M);
      for (int r = 0; r < active; ++r)
        for (int64_t m = 0; m < M; ++m) expected[size_t(r) * M + m] = float(tenants.product(W, &normed[size_t(r) * K], slot[r], m));
      worst = std::max(worst, relative_error(expected, y, expected.size()));
      for (size_t i = expected.size(); i < y.size(); ++i) worst = std::isnan(y[i]) ? worst : INFINITY;
    }
    BD_CHECK(bd_step_graph_destroy(graph));
    CUDA_CHECK(cudaStreamDestroy(stream));
    BD_CHECK(bd_step_set_pdl(1));
    report(fmt("graph of rmsnorm_split + project_tc (PDL %s), replayed for 3 and 12 rows", pdl ? "on" : "off"), worst <= 2e-5,
           fmt("relative error %.2e", worst));
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
    CUDA_CHECK(cudaMalloc(&workspace, workspace_bytes));
    d_tokens.poison();
    BD_CHECK(bd_step_argmax(rows, d_logits.p, vocab, d_tokens.p, 0));
    auto greedy = d_tokens.download();
    d_tokens.poison();
    BD_CHECK(bd_step_sample(rows, d_logits.p, vocab, d_temperature.p, d_top_k.p, d_top_p.p, d_seed.p, d_draw.p, d_tokens.p, workspace,
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
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  BD_CHECK(bd_step_graph_begin(stream));
  BD_CHECK(bd_step_embed(d_active.p, launch, d_tokens.p, d_slots.p, d_tables.p, d_dtypes.p, hidden, d_x.p, stream));
  BD_CHECK(bd_step_rmsnorm(d_active.p, launch, d_slots.p, nullptr, d_norms.p, d_x.p, d_y.p, hidden, 1e-5f, stream));
  void* graph = nullptr;
  BD_CHECK(bd_step_graph_end(stream, &graph));
  bool ok = true;
  for (int active : {5, 8}) {
    std::vector<int32_t> tokens(launch);
    for (auto& t : tokens) t = int(rng() % vocab);
    d_tokens.upload(tokens);
    d_active.upload(std::vector<int32_t>{active});
    d_y.poison();
    BD_CHECK(bd_step_graph_launch(graph, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
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
  BD_CHECK(bd_step_graph_begin(stream));
  const int refused = bd_step_attention(d_active.p, launch, d_tokens.p, d_tokens.p, d_tokens.p, d_tokens.p, d_x.p, BD_DTYPE_F32, d_x.p,
                                        d_x.p, 4, 4, 4,
                                        1024, 0, 1.f, d_y.p, stream);
  BD_CHECK(bd_step_graph_abort(stream));
  BD_CHECK(bd_step_graph_launch(graph, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  BD_CHECK(bd_step_graph_destroy(graph));
  CUDA_CHECK(cudaStreamDestroy(stream));
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
  CUDA_CHECK(cudaGetDeviceProperties(&properties, 0));
  std::printf("step_check: %s (cc %d.%d), seed %llu (replay with --seed=%llu), step ABI %d\n", properties.name, properties.major,
              properties.minor, (unsigned long long)seed, (unsigned long long)seed, bd_step_abi_version());
  std::mt19937_64 rng(seed);
  check_embed(rng);
  check_rmsnorm(rng);
  check_project(rng);
  check_rotary_cache(rng, 8, 2, 24);    // one block a row
  check_rotary_cache(rng, 8, 2, 64);    // two blocks, pairs and values across the boundary
  check_rotary_cache(rng, 32, 8, 128);  // fourteen
  check_attention(rng);
  check_swiglu_gather(rng);
  check_lm_head(rng);
  check_sampling(rng);
  check_graph(rng);
  BD_CHECK(bd_step_prepare());
  check_split_form(rng);
  check_fused_split(rng);
  check_project_tc(rng);
  check_project_vector(rng);
  check_project_prefill(rng);
  check_attention_fast(rng);
  check_lm_head_grouped(rng);
  check_tc_graph(rng);
  CUDA_CHECK(cudaDeviceSynchronize());
  std::printf("\n== step_check summary: %d checks, %d failed (seed %llu)\n", checks, failures, (unsigned long long)seed);
  for (const auto& line : summary) std::printf("  %s\n", line.c_str());
  return failures == 0 ? 0 : 1;
}
