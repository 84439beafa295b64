package org.bitdelta.cuda;

import org.bitdelta.BinaryDelta;
import org.bitdelta.DeltaLinear;
import org.bitdelta.internal.cpu.ScalarCpuBackend;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.util.List;
import java.util.function.IntPredicate;
import java.util.stream.Stream;

import static org.bitdelta.cuda.GpuTestSupport.freshSeed;
import static org.bitdelta.cuda.GpuTestSupport.oracle;
import static org.bitdelta.cuda.GpuTestSupport.poisoned;
import static org.bitdelta.cuda.GpuTestSupport.randomActivations;
import static org.bitdelta.cuda.GpuTestSupport.randomDelta;
import static org.bitdelta.cuda.GpuTestSupport.randomDeltas;
import static org.bitdelta.cuda.GpuTestSupport.randomWeight;
import static org.bitdelta.cuda.GpuTestSupport.relativeError;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** CudaBackend against the scalar oracle on fresh random inputs, outputs poisoned with NaN first. */
class CudaBackendCorrectnessTest {
    static final double TOLERANCE = 2e-3;
    @RegisterExtension
    static final GpuResources cuda = new GpuResources();

    /**
     * One case: weight [outputs, inputs] of dtype, {@code tenants} tenants with {@code rowsPerTenant} consecutive
     * rows each (1: decode; many: prefill), plus {@code baseRows} rows of tenant −1 at the end.
     */
    record Case(DType dtype, int outputs, int inputs, int tenants, int rowsPerTenant, int baseRows, boolean perRowScales) {
        @Override
        public String toString() {
            return dtype + " W[" + outputs + "x" + inputs + "] tenants=" + tenants + " rows/tenant=" + rowsPerTenant
                    + " baseRows=" + baseRows + (perRowScales ? " row-scales" : " matrix-scale");
        }
    }

    /** A test body: its arena and its seed. */
    interface Body {
        void run(Arena arena, long seed);
    }

    /**
     * Runs {@code body} with a fresh seed (printed, replayable) and an arena of its own, then clears the backend's
     * caches: they hold device copies of the body's tensors, which die with the arena.
     */
    static void withArena(String test, Body body) {
        long seed = freshSeed(test);
        try (Arena arena = Arena.ofShared()) {
            body.run(arena, seed);
            cuda.backend().clearCaches();
        }
    }

    /** A random base weight [outputs, inputs] and one random delta per tenant (seeds: seed, seed + 1000 + tenant). */
    record Weights(Tensor base, List<BinaryDelta> deltas) {
        static Weights random(Arena arena, DType dtype, int outputs, int inputs, int tenants, long seed, IntPredicate perRowScales) {
            return new Weights(randomWeight(arena, dtype, outputs, inputs, seed, 0.05f),
                    randomDeltas(arena, tenants, outputs, inputs, seed + 1000, perRowScales));
        }

        /** CudaBackend.deltaMatmul into an output poisoned with NaN first. */
        float[] onGpu(float[] x, int[] tenantOfRow) {
            float[] y = poisoned(tenantOfRow.length * Math.toIntExact(base.dimension(0)));
            cuda.backend().deltaMatmul(x, tenantOfRow.length, base, deltas, tenantOfRow, y);
            return y;
        }

        /** The relative error of {@code y} against the scalar oracle. */
        double error(float[] y, float[] x, int[] tenantOfRow) {
            return relativeError(y, oracle(x, tenantOfRow.length, base, deltas, tenantOfRow), y.length);
        }
    }

    static Stream<Case> cases() {
        return Stream.of(
                new Case(DType.F16, 4096, 4096, 1, 1, 0, false),
                new Case(DType.BF16, 4096, 4096, 2, 1, 1, true),
                new Case(DType.F16, 11008, 4096, 3, 1, 0, true),
                new Case(DType.BF16, 4096, 11008, 7, 1, 0, false),
                new Case(DType.F16, 14336, 4096, 16, 1, 0, true),
                new Case(DType.BF16, 4096, 14336, 33, 1, 0, true),
                new Case(DType.F16, 4096, 4096, 64, 1, 0, false),
                new Case(DType.BF16, 4096, 4096, 64, 1, 0, true),
                new Case(DType.BF16, 33, 4097, 7, 1, 2, true),
                new Case(DType.F16, 4097, 33, 3, 1, 0, false),
                new Case(DType.F16, 4097, 4097, 16, 1, 0, true),
                // Prefill: long runs of one tenant.
                new Case(DType.BF16, 4096, 4096, 8, 40, 17, true),
                new Case(DType.F16, 4096, 4096, 2, 128, 0, false),
                new Case(DType.F16, 33, 4097, 3, 50, 0, true),
                new Case(DType.BF16, 4097, 4096, 1, 300, 0, false));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void deltaMatmulMatchesScalarOracle(Case testCase) {
        withArena("deltaMatmul " + testCase, (arena, seed) -> {
            Weights weights = Weights.random(arena, testCase.dtype(), testCase.outputs(), testCase.inputs(), testCase.tenants(), seed,
                    tenant -> testCase.perRowScales());
            int rows = testCase.tenants() * testCase.rowsPerTenant() + testCase.baseRows();
            int[] tenantOfRow = new int[rows];
            for (int row = 0; row < rows; row++) {
                int tenant = row / testCase.rowsPerTenant();
                tenantOfRow[row] = tenant < testCase.tenants() ? tenant : DeltaLinear.BASE;
            }
            float[] x = randomActivations(testCase.dtype(), rows, testCase.inputs(), seed + 7);
            long start = System.nanoTime();
            float[] y = weights.onGpu(x, tenantOfRow);
            long gpuMicros = (System.nanoTime() - start) / 1000;
            double error = weights.error(y, x, tenantOfRow);
            System.out.printf("  %s: rows %d, relative error %.3e, first call (uploads included) %d us%n", testCase, rows, error, gpuMicros);
            assertTrue(error < TOLERANCE, testCase + ": relative error " + error + " >= " + TOLERANCE + " (seed " + seed + ")");
        });
    }

    @Test
    void mixedTenantsInAnyOrderAndMatmul() {
        withArena("mixed tenants", (arena, seed) -> {
            int outputs = 1000;
            int inputs = 1024;
            Weights weights = Weights.random(arena, DType.F16, outputs, inputs, 5, seed, tenant -> tenant % 2 == 0);
            weights.deltas().set(2, null);
            int[] tenantOfRow = {4, -1, 0, 0, 3, 1, 4, -1, 3, 0, 1, 1, 1, 4, 0, 3, -1, 0, 4, 1};
            float[] x = randomActivations(DType.F16, tenantOfRow.length, inputs, seed + 3);
            double error = weights.error(weights.onGpu(x, tenantOfRow), x, tenantOfRow);
            assertTrue(error < TOLERANCE, "mixed tenants: relative error " + error + " (seed " + seed + ")");

            // matmul = base only, decode (8 rows) and prefill (200 rows) paths.
            for (int matmulRows : new int[] {8, 200}) {
                float[] xm = randomActivations(DType.F16, matmulRows, inputs, seed + matmulRows);
                float[] ym = poisoned(matmulRows * outputs);
                cuda.backend().matmul(xm, matmulRows, weights.base(), ym);
                float[] expected = new float[matmulRows * outputs];
                org.bitdelta.internal.cpu.ScalarKernels.matmul(xm, matmulRows, weights.base(), expected);
                double matmulError = relativeError(ym, expected, ym.length);
                System.out.printf("  matmul %d rows: relative error %.3e%n", matmulRows, matmulError);
                assertTrue(matmulError < TOLERANCE, "matmul " + matmulRows + " rows: relative error " + matmulError + " (seed " + seed + ")");
            }
        });
    }

    @Test
    void f32WeightsAreConvertedToF16() {
        withArena("f32 weights", (arena, seed) -> {
            int outputs = 300;
            int inputs = 520;
            float[] values = new float[outputs * inputs];
            for (int i = 0; i < values.length; i++) {
                values[i] = GpuTestSupport.uniform(seed, i) * 0.05f;
            }
            Tensor base = Tensor.ofFloats("f32", values, outputs, inputs);
            Weights weights = new Weights(base, List.of(randomDelta(arena, "t0", outputs, inputs, seed + 1, true)));
            int[] tenantOfRow = {0, -1, 0};
            float[] x = randomActivations(DType.F16, 3, inputs, seed + 2);
            double error = weights.error(weights.onGpu(x, tenantOfRow), x, tenantOfRow);
            assertTrue(error < TOLERANCE, "F32 weights: relative error " + error + " (seed " + seed + ")");
        });
    }

    @Test
    void deltaLinearRunsUnchangedOnCuda() {
        withArena("DeltaLinear", (arena, seed) -> {
            int outputs = 2048;
            int inputs = 1536;
            Weights weights = Weights.random(arena, DType.BF16, outputs, inputs, 4, seed, tenant -> true);
            DeltaLinear onGpu = DeltaLinear.of(weights.base(), weights.deltas(), cuda.backend());
            DeltaLinear onCpu = DeltaLinear.of(weights.base(), weights.deltas(), new ScalarCpuBackend());
            int[] tenantOfRow = {3, 0, DeltaLinear.BASE, 1, 2, 2};
            float[] x = randomActivations(DType.BF16, tenantOfRow.length, inputs, seed + 9);
            float[] gpu = poisoned(tenantOfRow.length * outputs);
            float[] cpu = new float[tenantOfRow.length * outputs];
            onGpu.forward(x, tenantOfRow, gpu);
            onCpu.forward(x, tenantOfRow, cpu);
            double error = relativeError(gpu, cpu, gpu.length);
            assertTrue(error < TOLERANCE, "DeltaLinear on cuda vs cpu-scalar: relative error " + error + " (seed " + seed + ")");

            // A tenant added later is uploaded on first use; a second forward reuses the caches.
            BinaryDelta late = randomDelta(arena, "late", outputs, inputs, seed + 99, false);
            int added = onGpu.addTenant(late);
            onCpu.addTenant(late);
            int[] again = {added, 0};
            float[] gpuAgain = poisoned(2 * outputs);
            float[] cpuAgain = new float[2 * outputs];
            onGpu.forward(java.util.Arrays.copyOf(x, 2 * inputs), again, gpuAgain);
            onCpu.forward(java.util.Arrays.copyOf(x, 2 * inputs), again, cpuAgain);
            double errorAgain = relativeError(gpuAgain, cpuAgain, gpuAgain.length);
            assertTrue(errorAgain < TOLERANCE, "DeltaLinear after addTenant: relative error " + errorAgain + " (seed " + seed + ")");
        });
    }
}
