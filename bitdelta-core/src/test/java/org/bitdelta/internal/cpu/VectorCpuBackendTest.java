package org.bitdelta.internal.cpu;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.spi.TensorBackendProvider;
import org.bitdelta.spi.TensorBackends;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import org.bitdelta.testing.Norms;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Conformance of the Vector API backend against the scalar oracle ({@link ScalarKernels}) on shapes that hit
 * lane edges (K around multiples of 16 and 64), packing edges (K not a multiple of 8), 4-row tile edges (M and
 * rows not multiples of 4) and the parallel split. Every case draws its data from a seed derived from
 * {@code -Dbitdelta.test.seed} and its parameters; the seed is in every message.
 */
class VectorCpuBackendTest {
    /** Rerun everything with another seed: {@code mvn test -Dbitdelta.test.seed=N}. */
    static final long SEED = Long.getLong("bitdelta.test.seed", 0x5EED_B17DL);
    /** ‖out − ref‖ / ‖ref‖: both paths upcast weights to F32 exactly, only the summation order differs. */
    static final double TOLERANCE = 1e-5;

    static final int[] INPUTS = {1, 7, 31, 33, 63, 65, 4097};
    static final int[] OUTPUTS = {1, 3, 17, 33};
    static final int[] ROWS = {1, 2, 3, 7, 17};
    static final int[] TENANTS = {1, 3, 17};
    static final DType[] WEIGHT_TYPES = {DType.F32, DType.F16, DType.BF16};

    static VectorCpuBackend backend;
    static final ScalarCpuBackend oracle = new ScalarCpuBackend();

    @BeforeAll
    static void start() {
        backend = new VectorCpuBackend(2);
    }

    @AfterAll
    static void stop() {
        backend.close();
    }

    // ---------------------------------------------------------------------------------------------------------
    // Dense

    static Stream<Arguments> denseCases() {
        List<Arguments> cases = new ArrayList<>();
        for (DType type : WEIGHT_TYPES) {
            for (int inputs : INPUTS) {
                for (int outputs : OUTPUTS) {
                    for (int rows : ROWS) {
                        cases.add(Arguments.of(type, rows, outputs, inputs));
                    }
                }
            }
            // Prefill: many rows, tiled path over several K blocks.
            cases.add(Arguments.of(type, 256, 33, 65));
            cases.add(Arguments.of(type, 256, 17, 2049));
            // Big enough to be split over threads, M not a multiple of 4.
            cases.add(Arguments.of(type, 1, 257, 1000));
            cases.add(Arguments.of(type, 19, 257, 1000));
        }
        return cases.stream();
    }

    @ParameterizedTest(name = "{0} rows={1} M={2} K={3}")
    @MethodSource("denseCases")
    void denseMatchesOracle(DType type, int rows, int outputs, int inputs) {
        long seed = caseSeed(1, type.ordinal(), rows, outputs, inputs);
        SplittableRandom random = new SplittableRandom(seed);
        Tensor weight = randomWeight(random, type, outputs, inputs, seed % 2 == 0);
        float[] x = gaussians(random, rows * inputs);
        float[] expected = new float[rows * outputs];
        float[] actual = filledWithNaN(rows * outputs);
        oracle.matmul(x, rows, weight, expected);
        backend.matmul(x, rows, weight, actual);
        assertClose(expected, actual, seed, type + " rows=" + rows + " M=" + outputs + " K=" + inputs);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Binary, many tenants

    static Stream<Arguments> deltaCases() {
        List<Arguments> cases = new ArrayList<>();
        int index = 0;
        int[] rowCounts = {1, 2, 3, 7, 17, 256};
        for (int inputs : INPUTS) {
            for (int outputs : OUTPUTS) {
                for (int rows : rowCounts) {
                    for (int tenants : TENANTS) {
                        // Cycle weight type and scale granularity so every combination of them meets every K.
                        DType type = WEIGHT_TYPES[index % 3];
                        boolean perRowScales = (index / 3) % 2 == 0;
                        cases.add(Arguments.of(type, rows, outputs, inputs, tenants, perRowScales));
                        index++;
                    }
                }
            }
        }
        cases.add(Arguments.of(DType.BF16, 16, 257, 1000, 16, true));
        cases.add(Arguments.of(DType.F32, 64, 130, 1031, 3, false));
        return cases.stream();
    }

    @ParameterizedTest(name = "{0} rows={1} M={2} K={3} tenants={4} perRowScales={5}")
    @MethodSource("deltaCases")
    void deltaMatchesOracle(DType type, int rows, int outputs, int inputs, int tenants, boolean perRowScales) {
        long seed = caseSeed(2, type.ordinal(), rows, outputs, inputs, tenants, perRowScales ? 1 : 0);
        DeltaCase data = DeltaCase.random(seed, type, rows, outputs, inputs, tenants, perRowScales);
        assertClose(data.product(oracle), data.product(backend), seed, data.describe());
    }

    // ---------------------------------------------------------------------------------------------------------
    // Binary, table-lookup path (decode batches of LOOKUP_ROWS_MIN .. DIRECT_ROWS_LIMIT - 1 rows): its own edges are
    // 16-row blocks (M not a multiple of 16, one partial block, several chunks), groups of 4 inputs and 32-input
    // sign words (K not a multiple of 4, 8 or 32; one word, a zero-padded last word), per-row scales, rows with
    // tenant -1, several rows of one tenant, and the row counts at both ends of the path.

    static Stream<Arguments> lookupCases() {
        List<Arguments> cases = new ArrayList<>();
        int[] rowCounts = {VectorCpuBackend.LOOKUP_ROWS_MIN - 1, VectorCpuBackend.LOOKUP_ROWS_MIN, 5, 16,
                VectorCpuBackend.DIRECT_ROWS_LIMIT - 1, VectorCpuBackend.DIRECT_ROWS_LIMIT};
        int[] outputs = {1, 15, 16, 17, 48, 257};
        int[] inputs = {1, 3, 4, 5, 9, 24, 31, 32, 33, 100, 4097};
        int index = 0;
        for (int k : inputs) {
            for (int m : outputs) {
                int rows = rowCounts[index % rowCounts.length];
                int tenants = TENANTS[(index / 2) % TENANTS.length];
                cases.add(Arguments.of(WEIGHT_TYPES[index % 3], rows, m, k, tenants, (index / 3) % 2 == 0));
                index++;
            }
        }
        return cases.stream();
    }

    @ParameterizedTest(name = "{0} rows={1} M={2} K={3} tenants={4} perRowScales={5}")
    @MethodSource("lookupCases")
    void lookupPathMatchesOracle(DType type, int rows, int outputs, int inputs, int tenants, boolean perRowScales) {
        deltaMatchesOracle(type, rows, outputs, inputs, tenants, perRowScales);
    }

    @Test
    void lookupPathIsTakenAndEqualsTheMaskedAddPath() {
        long seed = caseSeed(9);
        DeltaCase data = DeltaCase.random(seed, DType.BF16, 9, 301, 777, 3, true);
        float[] lookup;
        float[] masked;
        try (VectorCpuBackend withLookup = new VectorCpuBackend(2, true); VectorCpuBackend withoutLookup = new VectorCpuBackend(2, false)) {
            lookup = data.product(withLookup);
            masked = data.product(withoutLookup);
            long used = Arrays.stream(data.tenantOfRow).filter(tenant -> tenant >= 0).distinct().count();
            assertEquals(used, withLookup.cachedSignCopies(), "one re-laid-out copy per delta a row names");
            assertEquals(0, withoutLookup.cachedSignCopies());
            // Again, and with other scales on the same signs: the copies are reused, not rebuilt.
            lookup = data.product(withLookup);
            List<BinaryDelta> rescaled = new ArrayList<>();
            for (BinaryDelta delta : data.deltas) {
                rescaled.add(delta == null ? null : delta.withScales(delta.scales()));
            }
            float[] again = data.product(withLookup, rescaled);
            assertEquals(used, withLookup.cachedSignCopies(), "withScales shares the signs, so it shares the copy");
            // Not bit-exact: interpreted and compiled kernels may reduce lanes in different orders.
            assertClose(lookup, again, seed, "same product with the copies cached, " + data.describe());
            withLookup.close();
            assertEquals(0, withLookup.cachedSignCopies(), "close drops the copies");
        }
        assertClose(masked, lookup, seed, "lookup against masked add, " + data.describe());
    }

    @Test
    void signCopiesAreDroppedWhenTheirDeltaIsUnreachable() throws InterruptedException {
        try (VectorCpuBackend withLookup = new VectorCpuBackend(1, true)) {
            runOnce(withLookup, caseSeed(10));
            assertTrue(withLookup.cachedSignCopies() > 0);
            for (int attempt = 0; attempt < 100 && withLookup.cachedSignCopies() > 0; attempt++) {
                System.gc();
                Thread.sleep(20);
            }
            assertEquals(0, withLookup.cachedSignCopies(), "the copy of an unreachable delta is still cached");
        }
    }

    private static void runOnce(VectorCpuBackend target, long seed) {
        DeltaCase data = DeltaCase.random(seed, DType.F32, 6, 40, 50, 2, false);
        data.product(target);
    }

    @Test
    void paddingBitsAreIgnored() {
        // The format says padding bits are 0; a writer that leaves garbage there must not change the product.
        long seed = caseSeed(3);
        DeltaCase data = DeltaCase.random(seed, DType.F32, 5, 9, 37, 2, true);
        float[] clean = data.product(backend);
        List<BinaryDelta> dirty = new ArrayList<>();
        for (BinaryDelta delta : data.deltas) {
            if (delta == null) {
                dirty.add(null); // the removed slot stays removed
                continue;
            }
            MemorySegment signs = copy(delta.signs());
            for (int row = 0; row < delta.rows(); row++) {
                long last = (long) row * delta.bytesPerRow() + delta.bytesPerRow() - 1;
                signs.set(ValueLayout.JAVA_BYTE, last, (byte) (signs.get(ValueLayout.JAVA_BYTE, last) | 0xE0)); // bits 5..7: columns 37..39
            }
            dirty.add(new BinaryDelta(delta.name(), delta.rows(), delta.cols(), signs, delta.scales()));
        }
        assertArrayEquals(clean, data.product(backend, dirty), "seed=" + seed + rerunHint());
    }

    // ---------------------------------------------------------------------------------------------------------
    // The comparison can fail

    @Test
    void oneFlippedSignBitIsDetected() {
        long seed = caseSeed(4);
        DeltaCase data = DeltaCase.random(seed, DType.BF16, 7, 17, 4097, 3, false);
        int row = firstRowWithTenant(data.tenantOfRow);
        BinaryDelta original = data.deltas.get(data.tenantOfRow[row]);
        MemorySegment signs = copy(original.signs());
        long byteIndex = 5L * original.bytesPerRow() + 100; // output row 5, columns 800..807
        signs.set(ValueLayout.JAVA_BYTE, byteIndex, (byte) (signs.get(ValueLayout.JAVA_BYTE, byteIndex) ^ 0x08));
        List<BinaryDelta> corrupted = new ArrayList<>(data.deltas);
        corrupted.set(data.tenantOfRow[row], new BinaryDelta(original.name(), original.rows(), original.cols(), signs, original.scales()));

        double error = Norms.relativeError(data.product(backend, corrupted), data.product(oracle));
        assertTrue(error > TOLERANCE, "one flipped sign bit moved the output by only " + error + " (tolerance " + TOLERANCE
                + "): the conformance comparison could not see a wrong sign; seed=" + seed + rerunHint());
    }

    @Test
    void oneChangedWeightIsDetected() {
        long seed = caseSeed(5);
        SplittableRandom random = new SplittableRandom(seed);
        Tensor weight = randomWeight(random, DType.F32, 17, 65, false);
        float[] x = gaussians(random, 3 * 65);
        float[] expected = new float[3 * 17];
        oracle.matmul(x, 3, weight, expected);
        float[] values = weight.toFloatArray();
        values[16 * 65 + 64] += 0.5f; // last row, last column: the tail of both tiles
        float[] actual = new float[3 * 17];
        backend.matmul(x, 3, Tensor.ofFloats("corrupted", values, 17, 65), actual);
        double error = Norms.relativeError(actual, expected);
        assertTrue(error > TOLERANCE, "a changed weight moved the output by only " + error + "; seed=" + seed + rerunHint());
    }

    // ---------------------------------------------------------------------------------------------------------
    // Threads, registration, errors

    @Test
    void threadCountDoesNotChangeTheResult() {
        // The split over threads must cover every output exactly once (NaN-filled: a missed one stays NaN, a doubled
        // one is off by its own size). Not bit-exact: the Vector API leaves the order of reduceLanes unspecified,
        // and the interpreter and C2 do sum in different orders.
        long seed = caseSeed(6);
        DeltaCase data = DeltaCase.random(seed, DType.BF16, 9, 301, 777, 3, true);
        float[] single;
        try (VectorCpuBackend oneThread = new VectorCpuBackend(1)) {
            single = data.product(oneThread);
        }
        assertClose(single, data.product(backend), seed, "1 thread against 2, " + data.describe());
    }

    @Test
    void concurrentCallersGetTheirOwnResults() throws Exception {
        long seed = caseSeed(7);
        DeltaCase data = DeltaCase.random(seed, DType.F32, 4, 200, 600, 3, false);
        float[] expected = data.product(backend);
        ExecutorService callers = Executors.newFixedThreadPool(4);
        try {
            List<Future<float[]>> results = new ArrayList<>();
            for (int caller = 0; caller < 8; caller++) {
                results.add(callers.submit(() -> data.product(backend)));
            }
            for (Future<float[]> result : results) {
                assertClose(expected, result.get(), seed, "concurrent caller, " + data.describe());
            }
        } finally {
            callers.shutdown();
        }
    }

    @Test
    void registeredAsTheDefaultCpuBackend() {
        TensorBackendProvider provider = TensorBackends.providers().stream()
                .filter(candidate -> candidate.name().equals("cpu")).findFirst().orElseThrow();
        assertEquals(100, provider.priority());
        assertTrue(provider.isAvailable(), provider.unavailableReason());
        assertTrue(TensorBackends.providers().stream().anyMatch(candidate -> candidate.name().equals("cpu-scalar")),
                "the scalar oracle stays registered");
        try (TensorBackend chosen = TensorBackends.create("cpu")) {
            assertInstanceOf(VectorCpuBackend.class, chosen);
        }
    }

    @Test
    void badTenantIndexIsAClearError() {
        DeltaCase data = DeltaCase.random(caseSeed(8), DType.F32, 2, 8, 16, 1, false);
        float[] y = new float[2 * 8];
        BitDeltaException error = assertThrows(BitDeltaException.class,
                () -> backend.deltaMatmul(data.x, 2, data.base, data.deltas, new int[]{0, 5}, y));
        assertTrue(error.getMessage().contains("row 1 names tenant 5"), error.getMessage());
    }

    @Test
    void closedBackendRefusesWork() {
        VectorCpuBackend closing = new VectorCpuBackend(2);
        closing.close();
        Tensor weight = Tensor.ofFloats("w", new float[]{1, 2, 3, 4}, 2, 2);
        assertThrows(IllegalStateException.class, () -> closing.matmul(new float[]{1, 1}, 1, weight, new float[2]));
    }

    // ---------------------------------------------------------------------------------------------------------
    // Data

    /** One random multi-tenant product: about a fifth of the rows use the base alone; one tenant slot is removed. */
    record DeltaCase(long seed, DType type, int rows, int outputs, int inputs, Tensor base, List<BinaryDelta> deltas,
                     int[] tenantOfRow, float[] x, boolean perRowScales) {
        static DeltaCase random(long seed, DType type, int rows, int outputs, int inputs, int tenants, boolean perRowScales) {
            SplittableRandom random = new SplittableRandom(seed);
            Tensor base = randomWeight(random, type, outputs, inputs, random.nextBoolean());
            List<BinaryDelta> deltas = new ArrayList<>();
            for (int tenant = 0; tenant < tenants; tenant++) {
                deltas.add(randomDelta(random, "tenant" + tenant, outputs, inputs, perRowScales));
            }
            // A removed tenant (null slot) that no row names, as DeltaLinear leaves behind.
            deltas.add(null);
            int[] tenantOfRow = new int[rows];
            for (int r = 0; r < rows; r++) {
                tenantOfRow[r] = random.nextInt(5) == 0 ? -1 : random.nextInt(tenants);
            }
            if (Arrays.stream(tenantOfRow).allMatch(tenant -> tenant < 0)) {
                tenantOfRow[0] = 0; // every case exercises at least one delta
            }
            return new DeltaCase(seed, type, rows, outputs, inputs, base, deltas, tenantOfRow, gaussians(random, rows * inputs), perRowScales);
        }

        /**
         * Per output, the sum of the absolute values of its terms, Σ_k |x[r,k]| (|W[m,k]| + |a_t(m)|): two float
         * sums of the same terms in different orders differ by at most about K·ε times it, so it scales the error
         * bound of one output, which a relative L2 error misjudges when the outputs cancel to near zero.
         */
        float[] absoluteTermSums() {
            float[] sums = new float[rows * outputs];
            for (int r = 0; r < rows; r++) {
                BinaryDelta delta = tenantOfRow[r] < 0 ? null : deltas.get(tenantOfRow[r]);
                for (int m = 0; m < outputs; m++) {
                    double sum = 0;
                    for (int k = 0; k < inputs; k++) {
                        sum += Math.abs(x[r * inputs + k]) * (Math.abs(base.getFloat((long) m * inputs + k))
                                + (delta == null ? 0 : Math.abs(delta.scale(m))));
                    }
                    sums[r * outputs + m] = (float) sum;
                }
            }
            return sums;
        }

        /** The product on {@code backend} into a fresh output, NaN-filled so that an output it skips fails the comparison. */
        float[] product(TensorBackend backend) {
            return product(backend, deltas);
        }

        /** As {@link #product(TensorBackend)} with other deltas in the tenant slots. */
        float[] product(TensorBackend backend, List<BinaryDelta> slots) {
            float[] y = filledWithNaN(rows * outputs);
            backend.deltaMatmul(x, rows, base, slots, tenantOfRow, y);
            return y;
        }

        String describe() {
            return type + " rows=" + rows + " M=" + outputs + " K=" + inputs + " tenants=" + (deltas.size() - 1)
                    + " perRowScales=" + perRowScales + " tenantOfRow=" + Arrays.toString(tenantOfRow);
        }
    }

    static BinaryDelta randomDelta(SplittableRandom random, String name, int rows, int cols, boolean perRowScales) {
        int bytesPerRow = BinaryDelta.bytesPerRow(cols);
        byte[] packed = new byte[rows * bytesPerRow];
        for (int row = 0; row < rows; row++) {
            for (int b = 0; b < bytesPerRow; b++) {
                int bits = random.nextInt(256);
                int valid = Math.min(8, cols - 8 * b);
                packed[row * bytesPerRow + b] = (byte) (bits & ((1 << valid) - 1)); // padding bits 0, as the format says
            }
        }
        float[] scales = new float[perRowScales ? rows : 1];
        for (int i = 0; i < scales.length; i++) {
            scales[i] = (float) random.nextDouble(0.01, 0.2);
        }
        return new BinaryDelta(name, rows, cols, MemorySegment.ofArray(packed), scales);
    }

    /** A [rows, cols] weight of {@code type} with N(0, 1) values, on the heap or in native memory. */
    static Tensor randomWeight(SplittableRandom random, DType type, int rows, int cols, boolean nativeMemory) {
        long count = (long) rows * cols;
        MemorySegment data = nativeMemory ? Arena.ofAuto().allocate(count * type.byteSize(), 64)
                : MemorySegment.ofArray(new byte[Math.toIntExact(count * type.byteSize())]);
        ValueLayout.OfFloat floatLayout = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        ValueLayout.OfShort shortLayout = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        for (long i = 0; i < count; i++) {
            float value = (float) gaussian(random);
            switch (type) {
                case F32 -> data.set(floatLayout, i * 4, value);
                case F16 -> data.set(shortLayout, i * 2, Float.floatToFloat16(value));
                case BF16 -> data.set(shortLayout, i * 2, (short) (Float.floatToRawIntBits(value) >>> 16));
                default -> throw new IllegalArgumentException("not a weight type: " + type);
            }
        }
        return new Tensor("weight", type, new long[]{rows, cols}, data);
    }

    static float[] gaussians(SplittableRandom random, int count) {
        float[] values = new float[count];
        for (int i = 0; i < count; i++) {
            values[i] = (float) gaussian(random);
        }
        return values;
    }

    static double gaussian(SplittableRandom random) {
        // Box-Muller; never exactly 0 in practice, and the tests never multiply by zeros.
        double u = random.nextDouble(Double.MIN_NORMAL, 1.0);
        return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random.nextDouble());
    }

    static float[] filledWithNaN(int count) {
        // Every output must be written: a skipped one stays NaN and fails the comparison.
        float[] values = new float[count];
        Arrays.fill(values, Float.NaN);
        return values;
    }

    static MemorySegment copy(MemorySegment segment) {
        MemorySegment copy = MemorySegment.ofArray(new byte[Math.toIntExact(segment.byteSize())]);
        copy.copyFrom(segment);
        return copy;
    }

    static int firstRowWithTenant(int[] tenantOfRow) {
        for (int r = 0; r < tenantOfRow.length; r++) {
            if (tenantOfRow[r] >= 0) {
                return r;
            }
        }
        throw new IllegalStateException("no row with a tenant");
    }

    static long caseSeed(long... parameters) {
        long seed = SEED;
        for (long parameter : parameters) {
            seed = (seed ^ parameter) * 0x9E3779B97F4A7C15L;
            seed ^= seed >>> 29;
        }
        return seed;
    }

    static String rerunHint() {
        return " (base seed " + SEED + ": rerun with -Dbitdelta.test.seed=" + SEED + ")";
    }

    static void assertClose(float[] expected, float[] actual, long seed, String what) {
        double error = Norms.relativeError(actual, expected);
        assertTrue(error <= TOLERANCE, () -> what + ": relative error " + error + " > " + TOLERANCE + "; case seed=" + seed
                + rerunHint() + "; first mismatch " + firstMismatch(expected, actual));
    }

    /**
     * Every output within {@code TOLERANCE} of the sum of its terms' magnitudes ({@link DeltaCase#absoluteTermSums}):
     * the bound floating-point summation in another order obeys, whatever the cancellation.
     */
    static void assertCloseElementwise(float[] expected, float[] actual, float[] absoluteTermSums, long seed, String what) {
        for (int i = 0; i < expected.length; i++) {
            double allowed = TOLERANCE * absoluteTermSums[i];
            int index = i;
            assertTrue(Math.abs((double) actual[i] - expected[i]) <= allowed, () -> what + ": output " + index + " is " + actual[index]
                    + ", the oracle's " + expected[index] + ", more than " + allowed + " apart (" + TOLERANCE + " x the sum of its"
                    + " terms' magnitudes " + absoluteTermSums[index] + "); case seed=" + seed + rerunHint());
        }
    }

    static String firstMismatch(float[] expected, float[] actual) {
        for (int i = 0; i < expected.length; i++) {
            if (!(Math.abs(expected[i] - actual[i]) <= 1e-4 * Math.max(1, Math.abs(expected[i])))) {
                return "at " + i + ": expected " + expected[i] + ", got " + actual[i];
            }
        }
        return "none beyond 1e-4";
    }
}
