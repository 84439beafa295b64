#!/usr/bin/env python3
"""Turns the JMH JSON of CpuBackendBenchmark into the markdown table of docs/benchmarks-cpu.md.

floor = bytes that must move / bandwidth, with the bandwidth measured in the same run: the higher of memoryRead
(1 GiB read) and memoryCopy (1 GiB read + 1 GiB written), so that a bandwidth benchmark slowed by other processes
on a shared machine cannot make the floor look slower than the memory is. Bytes that must move:
base BF16 [M, K] + N packed deltas [M, ceil(K/8)] + N activation rows [K] F32 + N output rows [M] F32.
Two tables: from the minimum and from the median of the sampled call times (JMH SampleTime).
Usage: cpu_table.py results.json
"""
import json
import sys

BANDWIDTH_BYTES = 1 << 30  # CpuBackendBenchmark.BANDWIDTH_BYTES


def main(path):
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
        table(score, statistic)


class Score:
    def __init__(self, minimum, median, mean, error):
        self.minimum, self.median, self.mean, self.error = minimum, median, mean, error

    def get(self, statistic):
        return getattr(self, statistic)


def table(score, statistic):
    read_us = score[("memoryRead", None, None)].get(statistic)
    copy_us = score[("memoryCopy", None, None)].get(statistic)
    read_bandwidth = BANDWIDTH_BYTES / (read_us * 1e-6)
    copy_bandwidth = 2 * BANDWIDTH_BYTES / (copy_us * 1e-6)
    bandwidth = max(read_bandwidth, copy_bandwidth)
    print(f"### {statistic} of the sampled calls\n")
    print(f"memoryRead: {read_us:.0f} µs per GiB = {read_bandwidth / 1e9:.1f} GB/s read; "
          f"memoryCopy: {copy_us:.0f} µs per GiB = {copy_bandwidth / 1e9:.1f} GB/s (read + write); "
          f"floor bandwidth {bandwidth / 1e9:.1f} GB/s\n")
    print("| weight [M, K] | tenants | bytes that must move | floor (µs) | binary product (µs) | ratio to floor "
          "| dense BF16 per tenant (µs) | speed-up over dense |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    shapes = sorted({key[1] for key in score if key[1]}, key=lambda shape: int(shape.split("x")[0]))
    for shape in shapes:
        outputs, inputs = (int(part) for part in shape.split("x"))
        for tenants in sorted({key[2] for key in score if key[1] == shape}):
            moved = outputs * inputs * 2 + tenants * outputs * ((inputs + 7) // 8) + tenants * (inputs + outputs) * 4
            floor_us = moved / bandwidth * 1e6
            binary = score[("binaryProduct", shape, tenants)].get(statistic)
            dense = score[("denseBf16PerTenant", shape, tenants)].get(statistic)
            print(f"| {outputs} x {inputs} | {tenants} | {moved / 2**20:.1f} MiB | {floor_us:.0f} | "
                  f"{binary:.0f} | {binary / floor_us:.2f} | {dense:.0f} | {dense / binary:.1f}x |")
    print()


if __name__ == "__main__":
    main(sys.argv[1])
