#!/usr/bin/env python3
"""Turns the JMH JSON of CpuBackendBenchmark into the markdown tables of docs/benchmarks-cpu.md.

floor = bytes that must move / bandwidth, with the bandwidth measured in the same run: the higher of memoryRead
(1 GiB read) and memoryCopy (1 GiB read + 1 GiB written), so that a bandwidth benchmark slowed by other processes
on a shared machine cannot make the floor look slower than the memory is. Bytes that must move:
base BF16 [M, K] + N packed deltas [M, ceil(K/8)] + N activation rows [K] F32 + N output rows [M] F32.
When the run has them, also: binaryProductMaskedAdd (the sign product on the masked-add kernels, the path before
table lookup), baseProduct (the N tokens times the base alone) and fmaPeak, from which the compute floor of the
base product = N·M·K multiply-adds / (threads · 8 · FMA_ITERATIONS · lanes per fmaPeak call).
Two tables: from the minimum and from the median of the sampled call times (JMH SampleTime).
Usage: cpu_table.py results.json [fma threads, default 2] [fma lanes, default 16]
"""
import json
import sys

BANDWIDTH_BYTES = 1 << 30  # CpuBackendBenchmark.BANDWIDTH_BYTES
FMA_ITERATIONS = 1 << 20  # CpuBackendBenchmark.FMA_ITERATIONS
FMA_CHAINS = 8


def main(path, fma_threads=2, fma_lanes=16):
    results = json.load(open(path))
    score = {}
    for result in results:
        name = result["benchmark"].rsplit(".", 1)[1]
        params = result.get("params", {})
        key = (name, params.get("shape"), int(params["tenants"]) if "tenants" in params else None)
        metric = result["primaryMetric"]
        assert metric["scoreUnit"] == "us/op", metric["scoreUnit"]
        percentiles = metric["scorePercentiles"]
        score[key] = Score(percentiles["0.0"], percentiles["50.0"], metric["score"], metric["scoreError"])
    for statistic in ("minimum", "median"):
        table(score, statistic, fma_threads, fma_lanes)


class Score:
    def __init__(self, minimum, median, mean, error):
        self.minimum, self.median, self.mean, self.error = minimum, median, mean, error

    def get(self, statistic):
        return getattr(self, statistic)


def table(score, statistic, fma_threads, fma_lanes):
    read_us = score[("memoryRead", None, None)].get(statistic)
    copy_us = score[("memoryCopy", None, None)].get(statistic)
    read_bandwidth = BANDWIDTH_BYTES / (read_us * 1e-6)
    copy_bandwidth = 2 * BANDWIDTH_BYTES / (copy_us * 1e-6)
    bandwidth = max(read_bandwidth, copy_bandwidth)
    print(f"### {statistic} of the sampled calls\n")
    print(f"memoryRead: {read_us:.0f} µs per GiB = {read_bandwidth / 1e9:.1f} GB/s read; "
          f"memoryCopy: {copy_us:.0f} µs per GiB = {copy_bandwidth / 1e9:.1f} GB/s (read + write); "
          f"floor bandwidth {bandwidth / 1e9:.1f} GB/s")
    fma_rate = None
    if ("fmaPeak", None, None) in score:
        fma_us = score[("fmaPeak", None, None)].get(statistic)
        fma_rate = fma_threads * FMA_CHAINS * FMA_ITERATIONS * fma_lanes / (fma_us * 1e-6)
        print(f"\nfmaPeak: {fma_us:.0f} µs for {fma_threads} x {FMA_CHAINS} x {FMA_ITERATIONS} FMAs of {fma_lanes} lanes "
              f"= {fma_rate / 1e9:.1f} G multiply-adds/s ({fma_rate / fma_threads / fma_lanes / 1e9:.2f} G vector FMAs/s per thread)")
    print()
    masked = any(key[0] == "binaryProductMaskedAdd" for key in score)
    base = any(key[0] == "baseProduct" for key in score)
    header = "| weight [M, K] | tenants | bytes that must move | floor (µs) | binary product (µs) | ratio to floor "
    rule = "|---|---:|---:|---:|---:|---:"
    if masked:
        header += "| masked-add path (µs) | its ratio | lookup speed-up "
        rule += "|---:|---:|---:"
    if base:
        header += "| base product alone (µs) | its ratio "
        rule += "|---:|---:"
    if fma_rate:
        header += "| FMA floor of the base product (µs) | its ratio "
        rule += "|---:|---:"
    header += "| dense BF16 per tenant (µs) | speed-up over dense |"
    rule += "|---:|---:|"
    print(header)
    print(rule)
    shapes = sorted({key[1] for key in score if key[1]}, key=lambda shape: int(shape.split("x")[0]))
    for shape in shapes:
        outputs, inputs = (int(part) for part in shape.split("x"))
        for tenants in sorted({key[2] for key in score if key[1] == shape}):
            moved = outputs * inputs * 2 + tenants * outputs * ((inputs + 7) // 8) + tenants * (inputs + outputs) * 4
            floor_us = moved / bandwidth * 1e6
            binary = score[("binaryProduct", shape, tenants)].get(statistic)
            dense = score[("denseBf16PerTenant", shape, tenants)].get(statistic)
            row = (f"| {outputs} x {inputs} | {tenants} | {moved / 2**20:.1f} MiB | {floor_us:.0f} | "
                   f"{binary:.0f} | {binary / floor_us:.2f} ")
            if masked:
                old = score[("binaryProductMaskedAdd", shape, tenants)].get(statistic)
                row += f"| {old:.0f} | {old / floor_us:.2f} | {old / binary:.2f}x "
            if base:
                alone = score[("baseProduct", shape, tenants)].get(statistic)
                row += f"| {alone:.0f} | {alone / floor_us:.2f} "
            if fma_rate:
                fma_floor_us = tenants * outputs * inputs / fma_rate * 1e6
                row += f"| {fma_floor_us:.0f} | {fma_floor_us / floor_us:.2f} "
            row += f"| {dense:.0f} | {dense / binary:.1f}x |"
            print(row)
    print()


if __name__ == "__main__":
    main(sys.argv[1], *(int(argument) for argument in sys.argv[2:4]))
