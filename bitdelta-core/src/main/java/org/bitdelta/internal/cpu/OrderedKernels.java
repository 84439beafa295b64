package org.bitdelta.internal.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;

import java.lang.foreign.MemorySegment;

import static org.bitdelta.internal.cpu.VectorKernels.BITS_PER_WORD;
import static org.bitdelta.internal.cpu.VectorKernels.FLOATS;
import static org.bitdelta.internal.cpu.VectorKernels.INTS;
import static org.bitdelta.internal.cpu.VectorKernels.INT_LE;
import static org.bitdelta.internal.cpu.VectorKernels.LANES;
import static org.bitdelta.internal.cpu.VectorKernels.LANE_BITS_0;
import static org.bitdelta.internal.cpu.VectorKernels.MASKS_PER_WORD;

/**
 * The batch-invariant kernels behind {@link VectorCpuBackend}'s decoder products: every output element
 * y[r, m] is computed by one fixed sequence of float operations, whatever the number of rows, the tile a row
 * lands in, the thread split or the JIT tier. Two rules give that:
 *
 * <ul>
 *   <li>one summation order per element: lane-wise FMAs over k in steps of LANES from 0, then the lanes summed
 *   in lane order, then the scalar tail in k order; the 4 x 4 and 4 x 1 kernels differ only in how many rows share
 *   a loaded weight vector, never in the arithmetic of one row;</li>
 *   <li>no {@code reduceLanes(ADD)}: its order is unspecified, and C2's intrinsic sums the lanes in another order
 *   than the interpreter (measured: the same product changes its last bits after warm-up). The accumulators are
 *   stored to a caller's scratch array and summed by {@link #sumLanes}.</li>
 * </ul>
 *
 * The weight is read from a converted float tile (as {@link VectorKernels#tile4x4}), for every row count.
 */
final class OrderedKernels {
    /** Floats of scratch a call needs: 16 accumulators of LANES floats. */
    static final int SCRATCH_FLOATS = 16 * LANES;

    private OrderedKernels() {
    }

    /** Σ of {@code scratch[offset .. offset + LANES)} in lane order. */
    static float sumLanes(float[] scratch, int offset) {
        float sum = scratch[offset];
        for (int lane = 1; lane < LANES; lane++) {
            sum += scratch[offset + lane];
        }
        return sum;
    }

    /**
     * A 4 x 4 register tile over one K block: for weight rows j (at w[j * wStride ...]) and activation rows i (at
     * x[x_i ...]), y[y_i + j] = (accumulate ? y[y_i + j] : 0) + Σ_{k < length} x_i[k] · w_j[k].
     */
    static void tile4x4(float[] w, int wStride, int length, float[] x, int x0, int x1, int x2, int x3,
                        float[] y, int y0, int y1, int y2, int y3, boolean accumulate, float[] scratch) {
        FloatVector a00 = FloatVector.zero(FLOATS), a01 = a00, a02 = a00, a03 = a00;
        FloatVector a10 = a00, a11 = a00, a12 = a00, a13 = a00;
        FloatVector a20 = a00, a21 = a00, a22 = a00, a23 = a00;
        FloatVector a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        int w1 = wStride, w2 = 2 * wStride, w3 = 3 * wStride;
        int bound = length - length % LANES;
        for (int k = 0; k < bound; k += LANES) {
            FloatVector wv0 = FloatVector.fromArray(FLOATS, w, k);
            FloatVector wv1 = FloatVector.fromArray(FLOATS, w, w1 + k);
            FloatVector wv2 = FloatVector.fromArray(FLOATS, w, w2 + k);
            FloatVector wv3 = FloatVector.fromArray(FLOATS, w, w3 + k);
            FloatVector xv = FloatVector.fromArray(FLOATS, x, x0 + k);
            a00 = wv0.fma(xv, a00);
            a01 = wv1.fma(xv, a01);
            a02 = wv2.fma(xv, a02);
            a03 = wv3.fma(xv, a03);
            xv = FloatVector.fromArray(FLOATS, x, x1 + k);
            a10 = wv0.fma(xv, a10);
            a11 = wv1.fma(xv, a11);
            a12 = wv2.fma(xv, a12);
            a13 = wv3.fma(xv, a13);
            xv = FloatVector.fromArray(FLOATS, x, x2 + k);
            a20 = wv0.fma(xv, a20);
            a21 = wv1.fma(xv, a21);
            a22 = wv2.fma(xv, a22);
            a23 = wv3.fma(xv, a23);
            xv = FloatVector.fromArray(FLOATS, x, x3 + k);
            a30 = wv0.fma(xv, a30);
            a31 = wv1.fma(xv, a31);
            a32 = wv2.fma(xv, a32);
            a33 = wv3.fma(xv, a33);
        }
        a00.intoArray(scratch, 0);
        a01.intoArray(scratch, LANES);
        a02.intoArray(scratch, 2 * LANES);
        a03.intoArray(scratch, 3 * LANES);
        a10.intoArray(scratch, 4 * LANES);
        a11.intoArray(scratch, 5 * LANES);
        a12.intoArray(scratch, 6 * LANES);
        a13.intoArray(scratch, 7 * LANES);
        a20.intoArray(scratch, 8 * LANES);
        a21.intoArray(scratch, 9 * LANES);
        a22.intoArray(scratch, 10 * LANES);
        a23.intoArray(scratch, 11 * LANES);
        a30.intoArray(scratch, 12 * LANES);
        a31.intoArray(scratch, 13 * LANES);
        a32.intoArray(scratch, 14 * LANES);
        a33.intoArray(scratch, 15 * LANES);
        storeRow(y, y0, accumulate, scratch, 0, w, wStride, x, x0, bound, length);
        storeRow(y, y1, accumulate, scratch, 4 * LANES, w, wStride, x, x1, bound, length);
        storeRow(y, y2, accumulate, scratch, 8 * LANES, w, wStride, x, x2, bound, length);
        storeRow(y, y3, accumulate, scratch, 12 * LANES, w, wStride, x, x3, bound, length);
    }

    /** A 4 weight rows x 1 activation row tile over one K block; the same arithmetic per row as {@link #tile4x4}. */
    static void tile4x1(float[] w, int wStride, int length, float[] x, int x0, float[] y, int y0, boolean accumulate,
                        float[] scratch) {
        FloatVector a0 = FloatVector.zero(FLOATS), a1 = a0, a2 = a0, a3 = a0;
        int w1 = wStride, w2 = 2 * wStride, w3 = 3 * wStride;
        int bound = length - length % LANES;
        for (int k = 0; k < bound; k += LANES) {
            FloatVector xv = FloatVector.fromArray(FLOATS, x, x0 + k);
            a0 = FloatVector.fromArray(FLOATS, w, k).fma(xv, a0);
            a1 = FloatVector.fromArray(FLOATS, w, w1 + k).fma(xv, a1);
            a2 = FloatVector.fromArray(FLOATS, w, w2 + k).fma(xv, a2);
            a3 = FloatVector.fromArray(FLOATS, w, w3 + k).fma(xv, a3);
        }
        a0.intoArray(scratch, 0);
        a1.intoArray(scratch, LANES);
        a2.intoArray(scratch, 2 * LANES);
        a3.intoArray(scratch, 3 * LANES);
        storeRow(y, y0, accumulate, scratch, 0, w, wStride, x, x0, bound, length);
    }

    /** One weight row (at w[wOffset ...]) times one activation row over one K block; the same arithmetic as the tiles. */
    static float dot1x1(float[] w, int wOffset, int length, float[] x, int x0, float[] scratch) {
        FloatVector acc = FloatVector.zero(FLOATS);
        int bound = length - length % LANES;
        for (int k = 0; k < bound; k += LANES) {
            acc = FloatVector.fromArray(FLOATS, w, wOffset + k).fma(FloatVector.fromArray(FLOATS, x, x0 + k), acc);
        }
        acc.intoArray(scratch, 0);
        float sum = sumLanes(scratch, 0);
        for (int k = bound; k < length; k++) {
            sum += w[wOffset + k] * x[x0 + k];
        }
        return sum;
    }

    /** Sums 4 stored accumulators (at scratch[base + j * LANES]), adds the scalar tail, stores 4 outputs. */
    private static void storeRow(float[] y, int yIndex, boolean accumulate, float[] scratch, int base,
                                 float[] w, int wStride, float[] x, int xOffset, int tailStart, int length) {
        for (int j = 0; j < 4; j++) {
            float sum = sumLanes(scratch, base + j * LANES);
            int row = j * wStride;
            for (int k = tailStart; k < length; k++) {
                sum += x[xOffset + k] * w[row + k];
            }
            y[yIndex + j] = accumulate ? y[yIndex + j] + sum : sum;
        }
    }

    /** Σ_k x[xOffset + k] for k < length, in the fixed order. */
    static float sum(float[] x, int xOffset, int length, float[] scratch) {
        FloatVector acc = FloatVector.zero(FLOATS);
        int bound = length - length % LANES;
        for (int k = 0; k < bound; k += LANES) {
            acc = acc.add(FloatVector.fromArray(FLOATS, x, xOffset + k));
        }
        acc.intoArray(scratch, 0);
        float total = sumLanes(scratch, 0);
        for (int k = bound; k < length; k++) {
            total += x[xOffset + k];
        }
        return total;
    }

    /**
     * Positive-sign sums of 4 sign rows (from byte {@code signRow0}, {@code bytesPerRow} apart) against 4 activation
     * rows: out[o_i + j] = Σ_{k: bit(j, k) = 1} x_i[k]. Lanes past the row end load as 0 (their sign bits are padding).
     */
    static void positiveSum4x4(MemorySegment signs, long signRow0, long bytesPerRow, int inputs,
                               float[] x, int x0, int x1, int x2, int x3,
                               float[] out, int o0, int o1, int o2, int o3, float[] scratch) {
        FloatVector a00 = FloatVector.zero(FLOATS), a01 = a00, a02 = a00, a03 = a00;
        FloatVector a10 = a00, a11 = a00, a12 = a00, a13 = a00;
        FloatVector a20 = a00, a21 = a00, a22 = a00, a23 = a00;
        FloatVector a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        long row1 = signRow0 + bytesPerRow, row2 = row1 + bytesPerRow, row3 = row2 + bytesPerRow;
        for (int k = 0; k < inputs; k += BITS_PER_WORD) {
            long byteOffset = k >>> 3;
            boolean fullWord = k + BITS_PER_WORD <= inputs;
            int bytes = (Math.min(BITS_PER_WORD, inputs - k) + 7) >>> 3;
            IntVector word0 = IntVector.broadcast(INTS, fullWord ? signs.get(INT_LE, signRow0 + byteOffset) : VectorKernels.readBits(signs, signRow0 + byteOffset, bytes));
            IntVector word1 = IntVector.broadcast(INTS, fullWord ? signs.get(INT_LE, row1 + byteOffset) : VectorKernels.readBits(signs, row1 + byteOffset, bytes));
            IntVector word2 = IntVector.broadcast(INTS, fullWord ? signs.get(INT_LE, row2 + byteOffset) : VectorKernels.readBits(signs, row2 + byteOffset, bytes));
            IntVector word3 = IntVector.broadcast(INTS, fullWord ? signs.get(INT_LE, row3 + byteOffset) : VectorKernels.readBits(signs, row3 + byteOffset, bytes));
            for (int part = 0; part < MASKS_PER_WORD && k + part * LANES < inputs; part++) {
                IntVector laneBits = LANE_BITS_0.lanewise(VectorOperators.LSHL, part * LANES);
                int column = k + part * LANES;
                VectorMask<Float> m0 = word0.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS);
                VectorMask<Float> m1 = word1.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS);
                VectorMask<Float> m2 = word2.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS);
                VectorMask<Float> m3 = word3.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS);
                VectorMask<Float> inRange = FLOATS.indexInRange(column, inputs);
                FloatVector xv = FloatVector.fromArray(FLOATS, x, x0 + column, inRange);
                a00 = a00.add(xv, m0); a01 = a01.add(xv, m1); a02 = a02.add(xv, m2); a03 = a03.add(xv, m3);
                xv = FloatVector.fromArray(FLOATS, x, x1 + column, inRange);
                a10 = a10.add(xv, m0); a11 = a11.add(xv, m1); a12 = a12.add(xv, m2); a13 = a13.add(xv, m3);
                xv = FloatVector.fromArray(FLOATS, x, x2 + column, inRange);
                a20 = a20.add(xv, m0); a21 = a21.add(xv, m1); a22 = a22.add(xv, m2); a23 = a23.add(xv, m3);
                xv = FloatVector.fromArray(FLOATS, x, x3 + column, inRange);
                a30 = a30.add(xv, m0); a31 = a31.add(xv, m1); a32 = a32.add(xv, m2); a33 = a33.add(xv, m3);
            }
        }
        a00.intoArray(scratch, 0);
        a01.intoArray(scratch, LANES);
        a02.intoArray(scratch, 2 * LANES);
        a03.intoArray(scratch, 3 * LANES);
        a10.intoArray(scratch, 4 * LANES);
        a11.intoArray(scratch, 5 * LANES);
        a12.intoArray(scratch, 6 * LANES);
        a13.intoArray(scratch, 7 * LANES);
        a20.intoArray(scratch, 8 * LANES);
        a21.intoArray(scratch, 9 * LANES);
        a22.intoArray(scratch, 10 * LANES);
        a23.intoArray(scratch, 11 * LANES);
        a30.intoArray(scratch, 12 * LANES);
        a31.intoArray(scratch, 13 * LANES);
        a32.intoArray(scratch, 14 * LANES);
        a33.intoArray(scratch, 15 * LANES);
        int[] outputs = {o0, o1, o2, o3};
        for (int i = 0; i < 4; i++) {
            for (int j = 0; j < 4; j++) {
                out[outputs[i] + j] = sumLanes(scratch, (4 * i + j) * LANES);
            }
        }
    }

    /** As {@link #positiveSum4x4} for one activation row; the same arithmetic per row. */
    static void positiveSum4x1(MemorySegment signs, long signRow0, long bytesPerRow, int inputs,
                               float[] x, int xOffset, float[] out, int outIndex, float[] scratch) {
        FloatVector acc0 = FloatVector.zero(FLOATS), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        long row1 = signRow0 + bytesPerRow, row2 = row1 + bytesPerRow, row3 = row2 + bytesPerRow;
        for (int k = 0; k < inputs; k += BITS_PER_WORD) {
            long byteOffset = k >>> 3;
            boolean fullWord = k + BITS_PER_WORD <= inputs;
            int bytes = (Math.min(BITS_PER_WORD, inputs - k) + 7) >>> 3;
            IntVector word0 = IntVector.broadcast(INTS, fullWord ? signs.get(INT_LE, signRow0 + byteOffset) : VectorKernels.readBits(signs, signRow0 + byteOffset, bytes));
            IntVector word1 = IntVector.broadcast(INTS, fullWord ? signs.get(INT_LE, row1 + byteOffset) : VectorKernels.readBits(signs, row1 + byteOffset, bytes));
            IntVector word2 = IntVector.broadcast(INTS, fullWord ? signs.get(INT_LE, row2 + byteOffset) : VectorKernels.readBits(signs, row2 + byteOffset, bytes));
            IntVector word3 = IntVector.broadcast(INTS, fullWord ? signs.get(INT_LE, row3 + byteOffset) : VectorKernels.readBits(signs, row3 + byteOffset, bytes));
            for (int part = 0; part < MASKS_PER_WORD && k + part * LANES < inputs; part++) {
                IntVector laneBits = LANE_BITS_0.lanewise(VectorOperators.LSHL, part * LANES);
                int column = k + part * LANES;
                FloatVector xv = FloatVector.fromArray(FLOATS, x, xOffset + column, FLOATS.indexInRange(column, inputs));
                acc0 = acc0.add(xv, word0.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
                acc1 = acc1.add(xv, word1.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
                acc2 = acc2.add(xv, word2.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
                acc3 = acc3.add(xv, word3.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
            }
        }
        acc0.intoArray(scratch, 0);
        acc1.intoArray(scratch, LANES);
        acc2.intoArray(scratch, 2 * LANES);
        acc3.intoArray(scratch, 3 * LANES);
        for (int j = 0; j < 4; j++) {
            out[outIndex + j] = sumLanes(scratch, j * LANES);
        }
    }

    /** Positive-sign sum of one sign row against one activation row; the same arithmetic as the 4-row kernels. */
    static float positiveSum1x1(MemorySegment signs, long signRow, int inputs, float[] x, int xOffset, float[] scratch) {
        FloatVector acc = FloatVector.zero(FLOATS);
        for (int k = 0; k < inputs; k += BITS_PER_WORD) {
            long byteOffset = k >>> 3;
            int bytes = (Math.min(BITS_PER_WORD, inputs - k) + 7) >>> 3;
            IntVector word = IntVector.broadcast(INTS, k + BITS_PER_WORD <= inputs ? signs.get(INT_LE, signRow + byteOffset)
                    : VectorKernels.readBits(signs, signRow + byteOffset, bytes));
            for (int part = 0; part < MASKS_PER_WORD && k + part * LANES < inputs; part++) {
                IntVector laneBits = LANE_BITS_0.lanewise(VectorOperators.LSHL, part * LANES);
                int column = k + part * LANES;
                FloatVector xv = FloatVector.fromArray(FLOATS, x, xOffset + column, FLOATS.indexInRange(column, inputs));
                acc = acc.add(xv, word.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
            }
        }
        acc.intoArray(scratch, 0);
        return sumLanes(scratch, 0);
    }
}
