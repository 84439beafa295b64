package org.bitdelta.cuda;

import org.bitdelta.BinaryDelta;
import org.bitdelta.cuda.internal.CudaLibrary;
import org.bitdelta.cuda.internal.DeviceBuffer;
import org.bitdelta.cuda.internal.DeviceScope;
import org.bitdelta.internal.format.Compressor;
import org.bitdelta.internal.format.SignCompressor;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.bitdelta.cuda.GpuTestSupport.freshSeed;
import static org.bitdelta.cuda.GpuTestSupport.uniform;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;

/**
 * {@link CudaBackend#compressMatrix} (bd_compress) against the CPU compressor: {@link SignCompressor#compress} and
 * the scale arithmetic of BitDelta.compress ({@link Compressor#cpuScales}). Sign bytes must be identical and scales
 * bit-identical.
 */
class CudaCompressTest {
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    @RegisterExtension
    static final GpuResources cuda = new GpuResources();

    /**
     * What a row of a test pair holds. Every kind keeps its row's |d| sum exact in double whatever the order of
     * additions (the CPU compressor's BF16 path adds in vector lanes, bd_compress left to right where a row leaves
     * its exact fast path), so the two must agree bit for bit.
     */
    enum Row {
        /** base ±0.05, fine-tune = base ± 0.004: the kernel's exact fast path. */
        TYPICAL,
        /** |values| in [1024, 30000): |d| >= 1024 takes the serial path (multiples of 8 in BF16: exact sums). */
        LARGE,
        /** BF16: |values| in [2^-70, 2^-60), off the 2^-40 grid (serial path); F16: its smallest subnormals. */
        TINY,
        /** fine-tune == base: every sign 1, sum 0. */
        EQUAL,
        /** multiples of 1/16 in [-8, 8): the row sum passes 2^13 for long rows (serial path), still exact. */
        BIG_SUM
    }

    record Case(DType dtype, int rows, int cols) {
        @Override
        public String toString() {
            return dtype + " [" + rows + " x " + cols + "]";
        }
    }

    static Stream<Case> cases() {
        List<Case> cases = new ArrayList<>();
        for (DType dtype : new DType[] {DType.F16, DType.BF16}) {
            for (int[] shape : new int[][] {{1, 1}, {17, 33}, {4097, 127}, {256, 4096}, {5, 11008}}) {
                cases.add(new Case(dtype, shape[0], shape[1]));
            }
        }
        return cases.stream();
    }

    /** The kind of row {@code row}: the special kinds on the first rows and the last, typical rows elsewhere. */
    static Row kindOf(int row, int rows) {
        Row[] special = {Row.LARGE, Row.TINY, Row.EQUAL, Row.BIG_SUM};
        if (rows > 1 && row == rows - 1) {
            return Row.LARGE;
        }
        return row < special.length && rows > special.length ? special[row] : Row.TYPICAL;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void compressMatchesTheCpuCompressor(Case testCase) {
        long seed = freshSeed("compress " + testCase);
        // Small pairs live on the Java heap (compressMatrix copies them off it), larger ones in native memory (shared: the
        // CPU compressor and the fills read them from the common pool).
        boolean heap = (long) testCase.rows() * testCase.cols() < 4096;
        try (Arena arena = Arena.ofShared()) {
            Tensor base = heap ? Tensor.zeros("w", testCase.dtype(), testCase.rows(), testCase.cols())
                    : Tensor.allocate(arena, "w", testCase.dtype(), testCase.rows(), testCase.cols());
            Tensor finetuned = heap ? Tensor.zeros("w", testCase.dtype(), testCase.rows(), testCase.cols())
                    : Tensor.allocate(arena, "w", testCase.dtype(), testCase.rows(), testCase.cols());
            fill(base, finetuned, seed);
            long signBytes = (long) testCase.rows() * BinaryDelta.bytesPerRow(testCase.cols());
            MemorySegment cpuSigns = arena.allocate(signBytes, 64);
            double[] rowSums = SignCompressor.compress(base, finetuned, cpuSigns);
            for (boolean perRow : new boolean[] {true, false}) {
                String what = testCase + (perRow ? " per-row" : " per-matrix") + (heap ? ", heap" : ", native") + " (seed " + seed + ")";
                MemorySegment gpuSigns = (heap ? MemorySegment.ofArray(new byte[Math.toIntExact(signBytes)]) : arena.allocate(signBytes, 64))
                        .fill((byte) 0x5A);
                float[] gpu = cuda.backend().compressMatrix(base, finetuned, gpuSigns, perRow);
                assertNotNull(gpu, what + ": the GPU declined a pair it takes");
                float[] cpu = Compressor.cpuScales(rowSums, testCase.rows(), testCase.cols(), perRow);
                long mismatch = gpuSigns.mismatch(cpuSigns);
                assertEquals(-1, mismatch, () -> what + ": sign byte " + mismatch + " (row " + mismatch / BinaryDelta.bytesPerRow(testCase.cols())
                        + ", " + kindOf((int) (mismatch / BinaryDelta.bytesPerRow(testCase.cols())), testCase.rows()) + ") differs: GPU "
                        + gpuSigns.get(ValueLayout.JAVA_BYTE, mismatch) + ", CPU " + cpuSigns.get(ValueLayout.JAVA_BYTE, mismatch));
                assertEquals(cpu.length, gpu.length, what + ": number of scales");
                for (int i = 0; i < cpu.length; i++) {
                    int row = i;
                    assertEquals(Float.floatToRawIntBits(cpu[i]), Float.floatToRawIntBits(gpu[i]), () -> what + ": scale " + row
                            + (perRow ? " (" + kindOf(row, testCase.rows()) + " row)" : "") + " GPU " + gpu[row] + " vs CPU " + cpu[row]);
                }
            }
        }
    }

    @Test
    void nonFinitePairsAndOtherDtypesAreLeftToTheCpu() {
        long seed = freshSeed("compress declines");
        try (Arena arena = Arena.ofShared()) {
            Tensor base = Tensor.allocate(arena, "inf", DType.BF16, 3, 40);
            Tensor finetuned = Tensor.allocate(arena, "inf", DType.BF16, 3, 40);
            fill(base, finetuned, seed);
            finetuned.data().set(SHORT, 2L * (40 + 7), (short) 0x7F80);  // +Inf at [1, 7]
            MemorySegment signs = arena.allocate(3L * BinaryDelta.bytesPerRow(40));
            assertNull(cuda.backend().compressMatrix(base, finetuned, signs, true), "a pair holding +Inf, per-row scales");
            assertNull(cuda.backend().compressMatrix(base, finetuned, signs, false), "a pair holding +Inf, per-matrix scale");
            Tensor f32 = Tensor.ofFloats("f32", new float[12], 3, 4);
            assertNull(cuda.backend().compressMatrix(f32, f32, arena.allocate(3), true), "an F32 pair");
        }
    }

    @Test
    void signsSurviveTheDeviceLayoutRoundTrip() {
        long seed = freshSeed("repack/unpack");
        CudaLibrary library = cuda.backend().library();
        for (int[] shape : new int[][] {{1, 1}, {17, 33}, {33, 4097}, {4097, 127}}) {
            int rows = shape[0];
            int cols = shape[1];
            long packedBytes = (long) rows * BinaryDelta.bytesPerRow(cols);
            try (Arena arena = Arena.ofShared(); DeviceScope scope = new DeviceScope(library)) {
                BinaryDelta delta = GpuTestSupport.randomDelta(arena, "round trip", rows, cols, seed, false);
                DeviceBuffer packed = scope.allocate(packedBytes, "packed signs");
                DeviceBuffer repacked = scope.allocate(library.signsDeviceBytes(rows, cols), "device-layout signs");
                DeviceBuffer unpacked = scope.allocate(packedBytes, "unpacked signs");
                String what = "[" + rows + " x " + cols + "] (seed " + seed + ")";
                library.check(library.copyHostToDevice(packed.address(), delta.signs(), packedBytes), "upload " + what);
                library.check(library.memset(unpacked.address(), 0x5A, packedBytes, 0), "poison " + what);
                library.check(library.repackSigns(packed.address(), repacked.address(), rows, cols, 0), "bd_repack_signs " + what);
                library.check(library.unpackSigns(repacked.address(), unpacked.address(), rows, cols, 0), "bd_unpack_signs " + what);
                library.check(library.streamSynchronize(0), "round trip " + what);
                MemorySegment back = arena.allocate(packedBytes);
                library.check(library.copyDeviceToHost(back, unpacked.address(), packedBytes), "fetch " + what);
                long mismatch = back.mismatch(delta.signs());
                assertEquals(-1, mismatch, () -> what + ": byte " + mismatch + " differs after repack + unpack");
            }
        }
    }

    /** Fills a pair row by row according to {@link #kindOf}. */
    static void fill(Tensor base, Tensor finetuned, long seed) {
        DType dtype = base.dtype();
        int rows = Math.toIntExact(base.dimension(0));
        int cols = Math.toIntExact(base.dimension(1));
        for (int row = 0; row < rows; row++) {
            Row kind = kindOf(row, rows);
            for (int col = 0; col < cols; col++) {
                long index = (long) row * cols + col;
                float u = uniform(seed, 2 * index);
                float v = uniform(seed, 2 * index + 1);
                short b;
                short f;
                switch (kind) {
                    case TYPICAL -> {
                        b = bits(dtype, 0.05f * u);
                        f = bits(dtype, value(dtype, b) + 0.004f * v);
                    }
                    case LARGE -> {
                        b = bits(dtype, Math.copySign(1024f + 28976f * Math.abs(u), u));
                        f = bits(dtype, Math.copySign(1024f + 28976f * Math.abs(v), v));
                    }
                    case TINY -> {
                        if (dtype == DType.F16) {
                            b = (short) ((int) ((u + 1) * 2) & 3);  // 0 .. 3 x 2^-24
                            f = (short) ((int) ((v + 1) * 2) & 3);
                        } else {
                            b = bits(dtype, tiny(u, uniform(seed ^ 0x7E57L, index)));
                            f = bits(dtype, tiny(v, uniform(seed ^ 0x7E58L, index)));
                        }
                    }
                    case EQUAL -> {
                        b = bits(dtype, 0.05f * u);
                        f = b;
                    }
                    case BIG_SUM -> {
                        b = bits(dtype, Math.round(128 * u) / 16f);
                        f = bits(dtype, Math.round(128 * v) / 16f);
                    }
                    default -> throw new IllegalStateException(kind.toString());
                }
                base.data().set(SHORT, 2 * index, b);
                finetuned.data().set(SHORT, 2 * index, f);
            }
        }
    }

    /** ±m * 2^e with e in [-70, -61) and m in [1, 2): BF16 values whose differences stay exact in F32. */
    private static float tiny(float signAndMantissa, float exponent) {
        int e = -70 + (int) ((exponent + 1) * 4.5f);
        return Math.copySign((1 + Math.abs(signAndMantissa)) * (float) Math.scalb(1.0, e), signAndMantissa);
    }

    private static short bits(DType dtype, float value) {
        return dtype == DType.F16 ? Float.floatToFloat16(value) : CudaBackend.toBfloat16(value);
    }

    private static float value(DType dtype, short bits) {
        return dtype == DType.F16 ? Float.float16ToFloat(bits) : Float.intBitsToFloat((bits & 0xFFFF) << 16);
    }
}
