package org.bitdelta.cuda;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.cuda.internal.CudaException;
import org.bitdelta.cuda.internal.CudaLibrary;
import org.bitdelta.cuda.internal.DeviceScope;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.function.Executable;

import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.bitdelta.cuda.GpuTestSupport.freshSeed;
import static org.bitdelta.cuda.GpuTestSupport.oracle;
import static org.bitdelta.cuda.GpuTestSupport.poisoned;
import static org.bitdelta.cuda.GpuTestSupport.randomActivations;
import static org.bitdelta.cuda.GpuTestSupport.randomDelta;
import static org.bitdelta.cuda.GpuTestSupport.randomWeight;
import static org.bitdelta.cuda.GpuTestSupport.relativeError;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Bad input is rejected in Java before any kernel; CUDA failures surface as exceptions; the backend stays usable. */
class CudaBackendErrorsTest {
    @RegisterExtension
    static final GpuResources cuda = new GpuResources();

    /** Asserts a BitDeltaException whose message contains each fragment, and that y was not touched. */
    private static void assertRejected(Executable call, float[] y, String... fragments) {
        BitDeltaException error = assertThrows(BitDeltaException.class, call);
        for (String fragment : fragments) {
            assertTrue(error.getMessage().contains(fragment), "message '" + error.getMessage() + "' lacks '" + fragment + "'");
        }
        for (float value : y) {
            assertTrue(Float.isNaN(value), "y was written although the input was rejected: " + error.getMessage());
        }
        System.out.println("  rejected: " + error.getMessage());
    }

    @Test
    void badInputIsRejectedInJava() {
        long seed = freshSeed("bad input");
        try (Arena arena = Arena.ofShared()) {
            Tensor base = randomWeight(arena, DType.F16, 64, 128, seed, 0.05f);
            List<BinaryDelta> deltas = List.of(randomDelta(arena, "t0", 64, 128, seed + 1, true),
                    randomDelta(arena, "t1", 64, 128, seed + 2, false));
            float[] x = randomActivations(DType.F16, 2, 128, seed + 3);
            float[] y = poisoned(2 * 64);
            assertRejected(() -> cuda.backend().deltaMatmul(Arrays.copyOf(x, 200), 2, base, deltas, new int[] {0, 1}, y), y, "x has 200 floats", "[64, 128]");
            assertRejected(() -> cuda.backend().deltaMatmul(x, 2, base, deltas, new int[] {0, 1}, new float[100]), y, "y has 100 floats");
            assertRejected(() -> cuda.backend().deltaMatmul(x, 2, base, deltas, new int[] {0, 2}, y), y, "row 1 names tenant 2", "outside [-1, 2)");
            assertRejected(() -> cuda.backend().deltaMatmul(x, 2, base, deltas, new int[] {-5, 0}, y), y, "row 0 names tenant -5");
            assertRejected(() -> cuda.backend().deltaMatmul(x, 2, base, deltas, new int[] {0}, y), y, "tenantOfRow has 1 entries for 2 rows");
            List<BinaryDelta> withNull = new ArrayList<>(deltas);
            withNull.set(1, null);
            assertRejected(() -> cuda.backend().deltaMatmul(x, 2, base, withNull, new int[] {0, 1}, y), y, "tenant 1, whose delta is null");
            List<BinaryDelta> otherShape = List.of(randomDelta(arena, "wide", 64, 256, seed + 4, true));
            assertRejected(() -> cuda.backend().deltaMatmul(x, 2, base, otherShape, new int[] {0, -1}, y), y, "wide is 64x256 but the base weight is 64x128");
            Tensor integers = Tensor.zeros("ints", DType.I32, 64, 128);
            assertRejected(() -> cuda.backend().matmul(x, 2, integers, y), y, "not i32");
            Tensor flat = Tensor.zeros("flat", DType.F16, 64 * 128);
            assertRejected(() -> cuda.backend().matmul(x, 2, flat, y), y, "2-D weight");
            assertRejected(() -> cuda.backend().matmul(x, -1, base, y), y, "negative row count");

            // Still correct afterwards.
            cuda.backend().deltaMatmul(x, 2, base, deltas, new int[] {1, 0}, y);
            double error = relativeError(y, oracle(x, 2, base, deltas, new int[] {1, 0}), y.length);
            assertTrue(error < 2e-3, "after rejections: relative error " + error + " (seed " + seed + ")");
            cuda.backend().clearCaches();
        }
    }

    @Test
    void cudaErrorsSurfaceAndTheBackendStaysUsable() {
        long seed = freshSeed("forced CUDA error");
        CudaLibrary library = cuda.backend().library();
        try (DeviceScope scope = new DeviceScope(library)) {
            CudaException error = assertThrows(CudaException.class, () -> scope.allocate(1L << 50, "an absurd 1 PiB buffer"));
            System.out.println("  forced allocation failure: " + error.getMessage());
            assertEquals(CudaLibrary.ERROR_CUDA, error.status());
            assertTrue(error.getMessage().contains("1125899906842624 bytes") && error.getMessage().contains("cudaError"),
                    "message should name the size and the CUDA error: " + error.getMessage());
            assertEquals(0, scope.liveBuffers());
        }
        // A status error from the ABI itself (unknown dtype code) also becomes an exception naming it.
        CudaException dtypeError = assertThrows(CudaException.class,
                () -> library.check(library.decode(7, 0, 16, 16, 16, 1, 0, 0, 0, 0, 16, 16, 16, 0, 0, 0), "bd_decode(dtype 7)"));
        System.out.println("  ABI status error: " + dtypeError.getMessage());
        assertTrue(dtypeError.getMessage().contains("bd_decode(dtype 7)") && dtypeError.getMessage().contains("status 3"), dtypeError.getMessage());

        try (Arena arena = Arena.ofShared()) {
            Tensor base = randomWeight(arena, DType.BF16, 512, 256, seed, 0.05f);
            List<BinaryDelta> deltas = List.of(randomDelta(arena, "t0", 512, 256, seed + 1, true));
            float[] x = randomActivations(DType.BF16, 3, 256, seed + 2);
            float[] y = poisoned(3 * 512);
            int[] tenants = {0, -1, 0};
            cuda.backend().deltaMatmul(x, 3, base, deltas, tenants, y);
            double error = relativeError(y, oracle(x, 3, base, deltas, tenants), y.length);
            assertTrue(error < 2e-3, "after CUDA errors: relative error " + error + " (seed " + seed + ")");
            cuda.backend().clearCaches();
        }
    }

    @Test
    void closedBackendRefusesWorkAndFreesItsMemory() {
        long seed = freshSeed("closed backend");
        CudaBackend second = new CudaBackend();
        try (Arena arena = Arena.ofShared()) {
            Tensor base = randomWeight(arena, DType.F16, 256, 256, seed, 0.05f);
            float[] y = new float[256];
            second.matmul(new float[256], 1, base, y);
            assertTrue(second.deviceBytes() >= 256 * 256 * 2, "the weight should be cached on the device: " + second.deviceBytes());
            second.clearCaches();
            assertTrue(second.deviceBytes() < 256 * 256 * 2, "clearCaches should free the weight: " + second.deviceBytes());
            second.close();
            assertThrows(IllegalStateException.class, () -> second.matmul(new float[256], 1, base, y));
            second.close();
        }
    }
}
