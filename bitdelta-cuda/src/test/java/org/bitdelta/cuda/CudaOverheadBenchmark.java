package org.bitdelta.cuda;

import org.bitdelta.BinaryDelta;
import org.bitdelta.cuda.internal.CudaLibrary;
import org.bitdelta.cuda.internal.DeviceBuffer;
import org.bitdelta.cuda.internal.DeviceScope;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.util.Arrays;
import java.util.List;

import static org.bitdelta.cuda.GpuTestSupport.assumeGpu;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** FFM call overhead: a no-op ABI call, a tiny decode launch (enqueue only), and a whole tiny deltaMatmul. */
class CudaOverheadTest {
    static final double GOAL_MICROS = 5.0;

    @Test
    void ffmCallOverheadPerLaunch() {
        assumeGpu();
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
            assertEquals(CudaLibrary.EXPECTED_ABI_VERSION * (calls + 200_000), sink, "bd_abi_version answered something else");

            // Tiny decode, 1 row x [16, 64], no tenants: times the enqueue of a launch through FFM (GPU work hidden).
            double[] launchMicros = new double[50];
            double[] memsetMicros = new double[50];
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
                    for (int round = 0; round < launchMicros.length + 10; round++) {
                        int launches = 100;
                        long begin = System.nanoTime();
                        for (int i = 0; i < launches; i++) {
                            int status = library.decode(CudaLibrary.DTYPE_F16, CudaLibrary.DTYPE_F32, weight.address(), x.address(),
                                    rowTenant.address(), 1, 0, 0, 0, CudaLibrary.SCALE_PER_ROW, y.address(), 16, 64,
                                    workspaceBytes == 0 ? 0 : workspace.address(), workspaceBytes, stream);
                            if (status != CudaLibrary.OK) {
                                library.check(status, "tiny bd_decode");
                            }
                        }
                        double micros = (System.nanoTime() - begin) / 1000.0 / launches;
                        library.check(library.streamSynchronize(stream), "tiny decode");
                        if (round >= 10) {
                            launchMicros[round - 10] = micros;
                        }
                    }
                    // One CUDA API call per downcall (cudaMemsetAsync), for comparison with bd_decode's host work.
                    for (int round = 0; round < memsetMicros.length + 10; round++) {
                        int memsetCalls = 100;
                        long begin = System.nanoTime();
                        for (int i = 0; i < memsetCalls; i++) {
                            int status = library.memset(y.address(), 0, y.bytes(), stream);
                            if (status != CudaLibrary.OK) {
                                library.check(status, "bd_memset");
                            }
                        }
                        double micros = (System.nanoTime() - begin) / 1000.0 / memsetCalls;
                        library.check(library.streamSynchronize(stream), "memset");
                        if (round >= 10) {
                            memsetMicros[round - 10] = micros;
                        }
                    }
                } finally {
                    library.check(library.streamDestroy(stream), "stream destroy");
                }
            }
            Arrays.sort(launchMicros);
            Arrays.sort(memsetMicros);

            // Whole deltaMatmul of 1 row, [64, 64], 1 tenant: copies in and out and a synchronize included.
            double[] roundTripMicros = new double[500];
            try (Arena arena = Arena.ofShared()) {
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
            System.out.printf("  bd_memset (one cudaMemsetAsync) enqueue:    %.2f us median per call (min %.2f)%n",
                    memsetMicros[memsetMicros.length / 2], memsetMicros[0]);
            System.out.printf("  deltaMatmul 1 row [64x64] round trip:       %.1f us median (min %.1f; copies, launch, synchronize)%n",
                    roundTripMicros[roundTripMicros.length / 2], roundTripMicros[0]);
            assertTrue(abiNanos / 1000 < GOAL_MICROS, "FFM no-op call " + abiNanos + " ns exceeds the " + GOAL_MICROS + " us goal");
            assertTrue(launchMedian < 4 * GOAL_MICROS, "a tiny decode launch takes " + launchMedian + " us to enqueue");
        }
    }
}
