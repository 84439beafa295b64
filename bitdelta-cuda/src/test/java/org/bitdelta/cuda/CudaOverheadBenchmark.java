package org.bitdelta.cuda;

import org.bitdelta.BinaryDelta;
import org.bitdelta.cuda.internal.CudaLibrary;
import org.bitdelta.cuda.internal.DeviceBuffer;
import org.bitdelta.cuda.internal.DeviceScope;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import org.bitdelta.cuda.internal.NativeLibraryLocator;

import java.lang.foreign.Arena;
import java.util.Arrays;
import java.util.List;
import java.util.function.IntSupplier;

/**
 * What Java and FFM add to a call (a benchmark, not a test: timings belong here, not in {@code mvn test}): a no-op
 * ABI call, the enqueue of a tiny decode launch, one cudaMemsetAsync, and a whole tiny deltaMatmul round trip.
 *
 * <pre>java ... org.bitdelta.cuda.CudaOverheadBenchmark [--c-launch-us=X]</pre>
 *
 * {@code --c-launch-us}: the median that {@code bd_harness --launch-overhead} printed for the same tiny bd_decode
 * enqueued from C (same shape, stream kind and loop), printed beside this one with the difference
 * (bench/check-device.sh passes it).
 */
public final class CudaOverheadBenchmark {
    private CudaOverheadBenchmark() {
    }

    public static void main(String[] args) {
        double cLaunchMicros = Double.NaN;
        for (String arg : args) {
            if (arg.startsWith("--c-launch-us=")) {
                cLaunchMicros = Double.parseDouble(arg.substring("--c-launch-us=".length()));
            } else {
                throw new IllegalArgumentException("unknown argument " + arg + " (usage: [--c-launch-us=X])");
            }
        }
        String reason = NativeLibraryLocator.unavailableReason();
        if (reason != null) {
            System.out.println("CudaOverheadBenchmark: no GPU here (" + reason + "), nothing measured");
            return;
        }
        try (CudaBackend backend = new CudaBackend()) {
            CudaLibrary library = backend.library();
            int sink = 0;
            for (int i = 0; i < 200_000; i++) {
                sink += library.abiVersion();
            }
            int calls = 2_000_000;
            long start = System.nanoTime();
            for (int i = 0; i < calls; i++) {
                sink += library.abiVersion();
            }
            double abiNanos = (System.nanoTime() - start) / (double) calls;
            if (sink != CudaLibrary.EXPECTED_ABI_VERSION * (calls + 200_000)) {
                throw new IllegalStateException("bd_abi_version answered something else than " + CudaLibrary.EXPECTED_ABI_VERSION);
            }

            // Tiny decode, 1 row x [16, 64], no tenants: times the enqueue of a launch through FFM (GPU work hidden).
            double[] launchMicros;
            double[] memsetMicros;
            try (DeviceScope scope = new DeviceScope(library)) {
                DeviceBuffer weight = scope.allocate(16 * 64 * 2, "tiny W");
                DeviceBuffer x = scope.allocate(64 * 2, "tiny x");
                DeviceBuffer rowTenant = scope.allocate(4, "tiny tenant");
                DeviceBuffer y = scope.allocate(16 * 4, "tiny y");
                long stream = library.streamCreate();
                try {
                    library.check(library.memset(weight.address(), 0, weight.bytes(), stream), "memset");
                    library.check(library.memset(x.address(), 0, x.bytes(), stream), "memset");
                    library.check(library.memset(rowTenant.address(), 0xFF, 4, stream), "memset");
                    long workspaceBytes = library.decodeWorkspaceBytes(16, 64, 1);
                    DeviceBuffer workspace = scope.allocate(workspaceBytes, "tiny workspace");
                    launchMicros = microsPerCall(library, stream, "tiny bd_decode", () -> library.decode(CudaLibrary.DTYPE_F16,
                            CudaLibrary.DTYPE_F32, weight.address(), x.address(), rowTenant.address(), 1, 0, 0, 0,
                            CudaLibrary.SCALE_PER_ROW, y.address(), 16, 64, workspaceBytes == 0 ? 0 : workspace.address(),
                            workspaceBytes, stream));
                    // One CUDA API call per downcall (cudaMemsetAsync), for comparison with bd_decode's host work.
                    memsetMicros = microsPerCall(library, stream, "bd_memset", () -> library.memset(y.address(), 0, y.bytes(), stream));
                } finally {
                    library.check(library.streamDestroy(stream), "stream destroy");
                }
            }

            // Whole deltaMatmul of 1 row, [64, 64], 1 tenant: copies in and out and a synchronize included.
            double[] roundTripMicros = new double[500];
            try (Arena arena = Arena.ofShared()) {
                // Fixed inputs: only the time is measured here.
                Tensor base = GpuTestSupport.randomWeight(arena, DType.F16, 64, 64, 5, 0.05f);
                List<BinaryDelta> deltas = List.of(GpuTestSupport.randomDelta(arena, "t", 64, 64, 6, true));
                float[] xs = GpuTestSupport.randomActivations(DType.F16, 1, 64, 7);
                float[] ys = new float[64];
                int[] tenant = {0};
                for (int i = 0; i < 200; i++) {
                    backend.deltaMatmul(xs, 1, base, deltas, tenant, ys);
                }
                for (int i = 0; i < roundTripMicros.length; i++) {
                    long begin = System.nanoTime();
                    backend.deltaMatmul(xs, 1, base, deltas, tenant, ys);
                    roundTripMicros[i] = (System.nanoTime() - begin) / 1000.0;
                }
            }
            Arrays.sort(roundTripMicros);
            double launchMedian = launchMicros[launchMicros.length / 2];
            System.out.printf("FFM overhead on %s:%n", backend.describe());
            System.out.printf("  bd_abi_version (no-op downcall):            %.1f ns per call (%d calls)%n", abiNanos, calls);
            System.out.printf("  bd_decode tiny launch, enqueue through FFM: %.2f us median per launch (min %.2f, max %.2f; 50 x 100 launches)%n",
                    launchMedian, launchMicros[0], launchMicros[launchMicros.length - 1]);
            if (!Double.isNaN(cLaunchMicros)) {
                System.out.printf("  bd_decode tiny launch, enqueue from C:      %.2f us median (bd_harness --launch-overhead): "
                        + "Java and FFM add %.2f us%n", cLaunchMicros, launchMedian - cLaunchMicros);
            }
            System.out.printf("  bd_memset (one cudaMemsetAsync) enqueue:    %.2f us median per call (min %.2f)%n",
                    memsetMicros[memsetMicros.length / 2], memsetMicros[0]);
            System.out.printf("  deltaMatmul 1 row [64x64] round trip:       %.1f us median (min %.1f; copies, launch, synchronize)%n",
                    roundTripMicros[roundTripMicros.length / 2], roundTripMicros[0]);
        }
    }

    /**
     * Microseconds per call of {@code call} (a BD_* status, checked as {@code what}) in each of 50 rounds of 100 calls
     * after 10 rounds of warm-up, sorted; the stream is synchronized after each round.
     */
    private static double[] microsPerCall(CudaLibrary library, long stream, String what, IntSupplier call) {
        double[] micros = new double[50];
        for (int round = 0; round < micros.length + 10; round++) {
            int calls = 100;
            long begin = System.nanoTime();
            for (int i = 0; i < calls; i++) {
                int status = call.getAsInt();
                if (status != CudaLibrary.OK) {
                    library.check(status, what);
                }
            }
            double perCall = (System.nanoTime() - begin) / 1000.0 / calls;
            library.check(library.streamSynchronize(stream), "synchronizing after " + what);
            if (round >= 10) {
                micros[round - 10] = perCall;
            }
        }
        Arrays.sort(micros);
        return micros;
    }
}
