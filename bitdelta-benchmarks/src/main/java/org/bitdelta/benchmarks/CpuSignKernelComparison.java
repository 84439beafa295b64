package org.bitdelta.benchmarks;

import org.bitdelta.BinaryDelta;
import org.bitdelta.internal.cpu.VectorCpuBackend;
import org.bitdelta.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Old and new sign kernels timed in one JVM, call by call in turn (masked add, table lookup, base product alone),
 * so that a shared, noisy machine slows all three alike; prints min and median per kernel and the relative
 * difference between the two paths' outputs. Same data and working-set cycling as {@link CpuBackendBenchmark}.
 * Usage: {@code CpuSignKernelComparison [calls per kernel, default 60] [shape,...] [tenants,...]}.
 */
public final class CpuSignKernelComparison {
    private CpuSignKernelComparison() {
    }

    public static void main(String[] args) {
        int calls = args.length > 0 ? Integer.parseInt(args[0]) : 60;
        String[] shapes = args.length > 1 ? args[1].split(",") : new String[]{"4096x4096", "11008x4096"};
        int[] tenantCounts = args.length > 2 ? Arrays.stream(args[2].split(",")).mapToInt(Integer::parseInt).toArray() : new int[]{1, 4, 16};
        int threads = Runtime.getRuntime().availableProcessors();
        System.out.printf("threads %d, %d calls per kernel (first quarter discarded as warm-up), interleaved%n", threads, calls);
        System.out.println("| weight [M, K] | tenants | masked add min / median (µs) | lookup min / median (µs) | base product alone min / median (µs) | lookup speed-up (median) | max rel. diff |");
        System.out.println("|---|---:|---:|---:|---:|---:|---:|");
        try (VectorCpuBackend lookup = new VectorCpuBackend(threads, true); VectorCpuBackend masked = new VectorCpuBackend(threads, false)) {
            for (String shape : shapes) {
                for (int tenants : tenantCounts) {
                    run(shape, tenants, calls, lookup, masked);
                }
            }
        }
    }

    private static void run(String shape, int tenants, int calls, VectorCpuBackend lookup, VectorCpuBackend masked) {
        String[] parts = shape.split("x");
        int outputs = Integer.parseInt(parts[0]);
        int inputs = Integer.parseInt(parts[1]);
        try (Arena arena = Arena.ofShared()) {
            SplittableRandom random = new SplittableRandom(CpuBackendBenchmark.SEED);
            float[] x = new float[tenants * inputs];
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) random.nextDouble(-1, 1);
            }
            int[] tenantOfRow = new int[tenants];
            for (int t = 0; t < tenants; t++) {
                tenantOfRow[t] = t;
            }
            long signBytes = (long) outputs * BinaryDelta.bytesPerRow(inputs);
            int layers = CpuBackendBenchmark.layersFor((long) outputs * inputs * 2 + tenants * signBytes);
            Tensor[] bases = new Tensor[layers];
            List<List<BinaryDelta>> deltas = new ArrayList<>();
            for (int layer = 0; layer < layers; layer++) {
                bases[layer] = CpuBackendBenchmark.randomBf16(arena, "base" + layer, outputs, inputs, layer);
                List<BinaryDelta> layerDeltas = new ArrayList<>();
                for (int t = 0; t < tenants; t++) {
                    MemorySegment signs = arena.allocate(signBytes, 64);
                    CpuBackendBenchmark.fillRandom(signs, 1000L * layer + t + 1);
                    layerDeltas.add(new BinaryDelta("layer" + layer + ".tenant" + t, outputs, inputs, signs, new float[]{0.01f + 0.001f * t}));
                }
                deltas.add(layerDeltas);
            }
            float[] yLookup = new float[tenants * outputs];
            float[] yMasked = new float[tenants * outputs];
            float[] yBase = new float[tenants * outputs];
            long[][] times = new long[3][calls];
            double maxDiff = 0;
            for (int call = 0; call < calls; call++) {
                int layer = call % layers;
                long t0 = System.nanoTime();
                masked.deltaMatmul(x, tenants, bases[layer], deltas.get(layer), tenantOfRow, yMasked);
                long t1 = System.nanoTime();
                lookup.deltaMatmul(x, tenants, bases[layer], deltas.get(layer), tenantOfRow, yLookup);
                long t2 = System.nanoTime();
                lookup.matmul(x, tenants, bases[(layer + 1) % layers], yBase);
                long t3 = System.nanoTime();
                times[0][call] = t1 - t0;
                times[1][call] = t2 - t1;
                times[2][call] = t3 - t2;
                if (call == calls - 1) {
                    for (int i = 0; i < yLookup.length; i++) {
                        maxDiff = Math.max(maxDiff, Math.abs(yLookup[i] - yMasked[i]) / Math.max(1e-3, Math.abs(yMasked[i])));
                    }
                }
            }
            long[][] kept = new long[3][];
            for (int k = 0; k < 3; k++) {
                kept[k] = Arrays.copyOfRange(times[k], calls / 4, calls);
                Arrays.sort(kept[k]);
            }
            System.out.printf("| %d x %d | %d | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f | %.2fx | %.1e |%n", outputs, inputs, tenants,
                    kept[0][0] / 1e3, median(kept[0]) / 1e3, kept[1][0] / 1e3, median(kept[1]) / 1e3, kept[2][0] / 1e3, median(kept[2]) / 1e3,
                    median(kept[0]) / median(kept[1]), maxDiff);
        }
    }

    private static double median(long[] sorted) {
        return sorted[sorted.length / 2];
    }
}
