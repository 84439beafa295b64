package org.bitdelta.cuda;

import org.bitdelta.BinaryDelta;
import org.bitdelta.cuda.internal.NativeLibraryLocator;
import org.bitdelta.internal.cpu.ScalarKernels;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import org.junit.jupiter.api.Assumptions;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.IntPredicate;
import java.util.stream.IntStream;

/** Shared helpers of the GPU tests: the skip rule, random inputs in F16/BF16, and the parallel scalar oracle. */
final class GpuTestSupport {
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private GpuTestSupport() {
    }

    /** Skips (never passes) the calling test where there is no usable GPU or no library, naming the reason. */
    static void assumeGpu() {
        String reason = NativeLibraryLocator.unavailableReason();
        Assumptions.assumeTrue(reason == null, () -> "SKIPPED, no GPU here: " + reason);
    }

    /** The system property that replays a run's random inputs: -Dbitdelta.test.seed=N. */
    static final String SEED_PROPERTY = "bitdelta.test.seed";

    /**
     * The seed of a randomized test: -Dbitdelta.test.seed when given (to replay a failure), else a fresh one per
     * call. Always printed with the property that replays it.
     */
    static long freshSeed(String test) {
        String given = System.getProperty(SEED_PROPERTY);
        long seed;
        if (given != null && !given.isBlank()) {
            try {
                seed = Long.parseLong(given.trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("-D" + SEED_PROPERTY + "=" + given + " is not a long", e);
            }
        } else {
            seed = new SplittableRandom().nextLong();
        }
        System.out.println(test + ": seed " + seed + " (replay with -D" + SEED_PROPERTY + "=" + seed + ")");
        return seed;
    }

    /** A uniform value in [-1, 1) from (seed, index): stateless, so large tensors fill in parallel. */
    static float uniform(long seed, long index) {
        long z = seed + (index + 1) * 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        z = z ^ (z >>> 31);
        return ((z >>> 40) * 0x1.0p-24f) * 2f - 1f;
    }

    /** Rounds to what {@code dtype} (F16, BF16) can hold, so GPU and oracle multiply the same numbers. */
    static float roundTo(DType dtype, float value) {
        if (dtype == DType.F16) {
            return Float.float16ToFloat(Float.floatToFloat16(value));
        }
        return Float.intBitsToFloat((CudaBackend.toBfloat16(value) & 0xFFFF) << 16);
    }

    static Tensor randomWeight(Arena arena, DType dtype, int outputs, int inputs, long seed, float magnitude) {
        Tensor weight = Tensor.allocate(arena, "w" + outputs + "x" + inputs, dtype, outputs, inputs);
        MemorySegment data = weight.data();
        IntStream.range(0, outputs).parallel().forEach(row -> {
            for (int column = 0; column < inputs; column++) {
                long index = (long) row * inputs + column;
                float value = uniform(seed, index) * magnitude;
                short bits = dtype == DType.F16 ? Float.floatToFloat16(value) : CudaBackend.toBfloat16(value);
                data.set(SHORT, 2 * index, bits);
            }
        });
        return weight;
    }

    static float[] randomActivations(DType dtype, int rows, int inputs, long seed) {
        float[] x = new float[rows * inputs];
        for (int i = 0; i < x.length; i++) {
            x[i] = roundTo(dtype, uniform(seed, i));
        }
        return x;
    }

    /** Random signs (padding bits 0) and positive scales, per row or per matrix. */
    static BinaryDelta randomDelta(Arena arena, String name, int outputs, int inputs, long seed, boolean perRowScales) {
        int bytesPerRow = BinaryDelta.bytesPerRow(inputs);
        MemorySegment signs = arena.allocate((long) outputs * bytesPerRow, 64);
        int lastByteMask = inputs % 8 == 0 ? 0xFF : (1 << (inputs % 8)) - 1;
        IntStream.range(0, outputs).parallel().forEach(row -> {
            for (int column = 0; column < bytesPerRow; column++) {
                long index = (long) row * bytesPerRow + column;
                int bits = (int) (uniform(seed, index) * 128f + 128f) & 0xFF;
                if (column == bytesPerRow - 1) {
                    bits &= lastByteMask;
                }
                signs.set(ValueLayout.JAVA_BYTE, index, (byte) bits);
            }
        });
        float[] scales = new float[perRowScales ? outputs : 1];
        for (int i = 0; i < scales.length; i++) {
            scales[i] = 0.001f + 0.004f * Math.abs(uniform(seed ^ 0x5CA1E5L, i));
        }
        return new BinaryDelta(name, outputs, inputs, signs, scales);
    }

    /**
     * {@code tenants} random deltas "tenant0", "tenant1", ... of [outputs, inputs] (a mutable list), tenant t's from
     * {@code seed + t}, with per-row scales where {@code perRowScales} says so for t.
     */
    static List<BinaryDelta> randomDeltas(Arena arena, int tenants, int outputs, int inputs, long seed, IntPredicate perRowScales) {
        List<BinaryDelta> deltas = new ArrayList<>();
        for (int tenant = 0; tenant < tenants; tenant++) {
            deltas.add(randomDelta(arena, "tenant" + tenant, outputs, inputs, seed + tenant, perRowScales.test(tenant)));
        }
        return deltas;
    }

    /** ScalarKernels.deltaMatmul, one row per task, in parallel (the oracle itself stays the scalar loop). */
    static float[] oracle(float[] x, int rows, Tensor base, List<BinaryDelta> deltas, int[] tenantOfRow) {
        int outputs = Math.toIntExact(base.dimension(0));
        int inputs = Math.toIntExact(base.dimension(1));
        float[] y = new float[rows * outputs];
        IntStream.range(0, rows).parallel().forEach(row -> {
            float[] xRow = java.util.Arrays.copyOfRange(x, row * inputs, (row + 1) * inputs);
            float[] yRow = new float[outputs];
            ScalarKernels.deltaMatmul(xRow, 1, base, deltas, new int[] {tenantOfRow[row]}, yRow);
            System.arraycopy(yRow, 0, y, row * outputs, outputs);
        });
        return y;
    }

    /** max |actual − expected| / max |expected|; NaN or infinity anywhere in actual gives +infinity. */
    static double relativeError(float[] actual, float[] expected, int count) {
        double maxDifference = 0;
        double maxExpected = 0;
        for (int i = 0; i < count; i++) {
            if (!Float.isFinite(actual[i])) {
                return Double.POSITIVE_INFINITY;
            }
            maxDifference = Math.max(maxDifference, Math.abs((double) actual[i] - expected[i]));
            maxExpected = Math.max(maxExpected, Math.abs((double) expected[i]));
        }
        return maxDifference / maxExpected;
    }

    static float[] poisoned(int length) {
        float[] y = new float[length];
        java.util.Arrays.fill(y, Float.NaN);
        return y;
    }
}
