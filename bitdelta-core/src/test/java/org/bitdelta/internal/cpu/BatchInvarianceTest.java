package org.bitdelta.internal.cpu;

import org.bitdelta.BinaryDelta;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import org.bitdelta.testing.Norms;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link VectorCpuBackend#batchInvariant()}: a row's product is bitwise the same alone and in batches of every
 * size (the fast kernels change at 4 and 32 rows), at every place in the batch, next to rows of other tenants,
 * after the JIT has compiled the kernels, and still close to the scalar oracle.
 */
class BatchInvarianceTest {
    private static final long SEED = Long.getLong("bitdelta.test.seed", 0xBA7C4L);
    private static final int[] ROW_COUNTS = {1, 2, 3, 4, 5, 16, 31, 32, 33, 40};
    private static VectorCpuBackend fast;
    private static TensorBackend invariant;

    @BeforeAll
    static void start() {
        fast = new VectorCpuBackend(2);
        invariant = fast.batchInvariant();
    }

    @AfterAll
    static void stop() {
        fast.close();
    }

    static Stream<Arguments> shapes() {
        List<Arguments> cases = new ArrayList<>();
        for (DType type : new DType[]{DType.F32, DType.F16, DType.BF16}) {
            for (int inputs : new int[]{64, 172, 1030}) {
                cases.add(Arguments.of(type, inputs, 70));
            }
        }
        return cases.stream();
    }

    @ParameterizedTest(name = "{0} K={1} M={2}")
    @MethodSource("shapes")
    void aRowsProductDoesNotDependOnItsBatch(DType type, int inputs, int outputs) {
        long seed = SEED ^ (type.ordinal() * 31L + inputs);
        SplittableRandom random = new SplittableRandom(seed);
        Tensor base = VectorCpuBackendTest.randomWeight(random, type, outputs, inputs, random.nextBoolean());
        List<BinaryDelta> deltas = List.of(
                VectorCpuBackendTest.randomDelta(random, "a", outputs, inputs, false),
                VectorCpuBackendTest.randomDelta(random, "b", outputs, inputs, true));
        float[] probe = gaussians(random, inputs);
        for (int probeTenant = -1; probeTenant < deltas.size(); probeTenant++) {
            float[] alone = product(base, deltas, new int[]{probeTenant}, probe, 1, 0);
            float[] aloneDense = dense(base, probe, 1, 0);
            for (int rows : ROW_COUNTS) {
                for (int at : new int[]{0, rows / 2, rows - 1}) {
                    float[] x = gaussians(random, rows * inputs);
                    System.arraycopy(probe, 0, x, at * inputs, inputs);
                    int[] tenantOfRow = new int[rows];
                    for (int r = 0; r < rows; r++) {
                        tenantOfRow[r] = random.nextInt(deltas.size() + 1) - 1;
                    }
                    tenantOfRow[at] = probeTenant;
                    String where = type + " K=" + inputs + " tenant " + probeTenant + ", row " + at + " of " + rows + " (seed " + seed + ")";
                    assertArrayEquals(alone, product(base, deltas, tenantOfRow, x, rows, at), "deltaMatmul, " + where);
                    assertArrayEquals(aloneDense, dense(base, x, rows, at), "matmul, " + where);
                }
            }
        }
    }

    @Test
    void compiledKernelsGiveTheBitsOfTheFirstCall() {
        SplittableRandom random = new SplittableRandom(SEED);
        int inputs = 172;
        int outputs = 36;
        Tensor base = VectorCpuBackendTest.randomWeight(random, DType.BF16, outputs, inputs, false);
        List<BinaryDelta> deltas = List.of(VectorCpuBackendTest.randomDelta(random, "a", outputs, inputs, false));
        float[] x = gaussians(random, 33 * inputs);
        int[] tenants = new int[33];
        float[] first = product(base, deltas, new int[]{0}, x, 1, 0);
        float[] firstOf33 = product(base, deltas, tenants, x, 33, 0);
        assertArrayEquals(first, firstOf33, "row 0 alone and among 33 (seed " + SEED + ")");
        // Enough calls for C2 to compile the kernels (the fast kernels change their last bits here).
        for (int call = 0; call < 2000; call++) {
            assertArrayEquals(first, product(base, deltas, new int[]{0}, x, 1, 0), "call " + call + " (seed " + SEED + ")");
            if (call % 500 == 0) {
                assertArrayEquals(first, product(base, deltas, tenants, x, 33, 0), "call " + call + ", 33 rows (seed " + SEED + ")");
            }
        }
    }

    @ParameterizedTest(name = "{0} K={1} M={2}")
    @MethodSource("shapes")
    void theInvariantProductsMatchTheScalarOracle(DType type, int inputs, int outputs) {
        long seed = SEED + 7 * inputs + type.ordinal();
        for (int rows : new int[]{1, 6}) {
            VectorCpuBackendTest.DeltaCase data = VectorCpuBackendTest.DeltaCase.random(seed + rows, type, rows, outputs, inputs, 3, rows % 2 == 1);
            double error = Norms.relativeError(data.product(invariant), data.product(new ScalarCpuBackend()));
            assertTrue(error < VectorCpuBackendTest.TOLERANCE, data.describe() + ": relative error " + error + " (seed " + (seed + rows) + ")");
        }
    }

    @Test
    void theInvariantFormSharesAndClosesWithItsBackend() {
        VectorCpuBackend owner = new VectorCpuBackend(2);
        TensorBackend view = owner.batchInvariant();
        assertSame(view, owner.batchInvariant());
        view.close(); // a no-op: the owner still works
        float[] y = new float[4];
        Tensor weight = VectorCpuBackendTest.randomWeight(new SplittableRandom(SEED), DType.F32, 4, 8, false);
        owner.matmul(new float[8], 1, weight, y);
        owner.close();
        IllegalStateException error = assertThrows(IllegalStateException.class, () -> view.matmul(new float[8], 1, weight, y));
        assertTrue(error.getMessage().contains("closed"), error.getMessage());
    }

    private static float[] product(Tensor base, List<BinaryDelta> deltas, int[] tenantOfRow, float[] x, int rows, int row) {
        int outputs = Math.toIntExact(base.dimension(0));
        float[] y = new float[rows * outputs];
        invariant.deltaMatmul(x, rows, base, deltas, tenantOfRow, y);
        return Arrays.copyOfRange(y, row * outputs, (row + 1) * outputs);
    }

    private static float[] dense(Tensor base, float[] x, int rows, int row) {
        int outputs = Math.toIntExact(base.dimension(0));
        float[] y = new float[rows * outputs];
        invariant.matmul(x, rows, base, y);
        return Arrays.copyOfRange(y, row * outputs, (row + 1) * outputs);
    }

    private static float[] gaussians(SplittableRandom random, int count) {
        float[] values = new float[count];
        for (int i = 0; i < count; i++) {
            values[i] = (float) (random.nextDouble() * 2 - 1);
        }
        return values;
    }
}
