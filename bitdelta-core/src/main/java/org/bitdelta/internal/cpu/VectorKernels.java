package org.bitdelta.internal.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The Vector API micro-kernels behind {@link VectorCpuBackend}. Each works on a small tile of weight rows times a
 * small tile of activation rows with every accumulator in a register; the backend decides the tiling and the
 * threads. Tails (a K that is not a multiple of the lane count) run with masked loads or in scalar code, so
 * every K from 1 up is exact.
 *
 * <p>Naming: "4x1" means 4 weight (output) rows times 1 activation row. {@code dot*} and {@code fused*} read the
 * weight where it lies (F32 or BF16 bytes in a MemorySegment; {@code fused*} adds the sign product in the same
 * pass); {@code tile*} and {@code dot1x1} read a weight tile already converted to floats ({@link #convertRow});
 * {@code positiveSum*} sum the activations whose sign bit is set (masked adds); {@code buildTables} and
 * {@code lookup*} are the table-lookup sign product over {@link SignBlocks}.
 */
final class VectorKernels {
    /** 16 lanes on AVX-512, 8 on AVX2; never fewer than 8 (the sign masks take a 32-bit word in at most 4 parts). */
    static final VectorSpecies<Float> FLOATS = FloatVector.SPECIES_PREFERRED.length() >= 8 && FloatVector.SPECIES_PREFERRED.length() <= 16
            ? FloatVector.SPECIES_PREFERRED : FloatVector.SPECIES_256;
    static final int LANES = FLOATS.length();
    /** Same lane count, half the bits: BF16/F16 raw values. */
    static final VectorSpecies<Short> SHORTS = VectorSpecies.of(short.class, VectorShape.forBitSize(FLOATS.vectorBitSize() / 2));
    static final VectorSpecies<Integer> INTS = VectorSpecies.of(int.class, FLOATS.vectorShape());

    static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Sign masks are taken from 32-bit words (4 packed bytes), broadcast to every lane. */
    static final int BITS_PER_WORD = 32;
    static final int MASKS_PER_WORD = BITS_PER_WORD / LANES;
    /** The scalar-tail partial sums of a 4 x 4 tile when there is no tail (read only). */
    private static final float[] NO_TAIL = new float[16];
    /**
     * Lane i = 1 << i. Shifted left by {@code part * LANES}, the bit lane i tests in part {@code part} of a 32-bit
     * word of packed signs broadcast to every lane: {@code word & bits != 0} is that lane's sign (vptestmd-like,
     * measured on Zen 4 about 30% faster than VectorMask.fromLong, a kmov from a general register per mask).
     */
    static final IntVector LANE_BITS_0 = laneBitsVector(0);

    private VectorKernels() {
    }

    private static IntVector laneBitsVector(int part) {
        int[] bits = new int[LANES];
        for (int lane = 0; lane < LANES; lane++) {
            int bit = part * LANES + lane;
            bits[lane] = bit < BITS_PER_WORD ? 1 << bit : 0;
        }
        return IntVector.fromArray(INTS, bits, 0);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Loading weights

    // Vectors never cross a call in these kernels: a vector passed to or returned from a method that C2 leaves
    // out of line is boxed, which costs ten times the product it serves, and a kernel this big reaches C2's
    // NodeCountInliningCutoff, after which even a 17-byte helper is not inlined (seen with -XX:+PrintInlining).
    // So loads, widening and sign masks are written out in each kernel, and accumulators are reduced to floats
    // before any store helper is called.

    static float bf16ToFloat(short raw) {
        return Float.intBitsToFloat((raw & 0xFFFF) << 16);
    }

    /**
     * Converts {@code count} elements of weight row {@code row} starting at column {@code column} to floats in
     * {@code target[targetOffset ...]}. F16 has no vector conversion in the Vector API, so it goes through
     * {@link Float#float16ToFloat} (an intrinsic: one vcvtph2ps per element).
     */
    static void convertRow(MemorySegment weight, WeightType type, long rowStartElement, int column, int count,
                           float[] target, int targetOffset) {
        long element = rowStartElement + column;
        switch (type) {
            case F32 -> MemorySegment.copy(weight, FLOAT_LE, element * 4, target, targetOffset, count);
            case BF16 -> {
                int bound = count - count % LANES;
                int k = 0;
                for (; k < bound; k += LANES) {
                    ((IntVector) ShortVector.fromMemorySegment(SHORTS, weight, (element + k) * 2, ByteOrder.LITTLE_ENDIAN)
                    .convertShape(VectorOperators.ZERO_EXTEND_S2I, INTS, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoArray(target, targetOffset + k);
                }
                for (; k < count; k++) {
                    target[targetOffset + k] = bf16ToFloat(weight.get(SHORT_LE, (element + k) * 2));
                }
            }
            case F16 -> {
                for (int k = 0; k < count; k++) {
                    target[targetOffset + k] = Float.float16ToFloat(weight.get(SHORT_LE, (element + k) * 2));
                }
            }
        }
    }

    /** The weight encodings the kernels read. */
    enum WeightType {
        F32, F16, BF16
    }

    // ---------------------------------------------------------------------------------------------------------
    // Dense products, weight read in place (decode: few activation rows, the weight streamed once)

    /**
     * out[j] = Σ_k x[xOffset + k] · w[row j, k] for the 4 F32 weight rows starting at byte {@code rowByte0},
     * {@code rowBytes} apart. Stores into y[yIndex + j].
     */
    static void dot4x1F32(MemorySegment weight, long rowByte0, long rowBytes, int inputs,
                          float[] x, int xOffset, float[] y, int yIndex) {
        FloatVector acc0 = FloatVector.zero(FLOATS), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        long row1 = rowByte0 + rowBytes, row2 = row1 + rowBytes, row3 = row2 + rowBytes;
        int bound = inputs - inputs % LANES;
        int k = 0;
        for (; k < bound; k += LANES) {
            FloatVector xv = FloatVector.fromArray(FLOATS, x, xOffset + k);
            long byteOffset = (long) k * 4;
            acc0 = FloatVector.fromMemorySegment(FLOATS, weight, rowByte0 + byteOffset, ByteOrder.LITTLE_ENDIAN).fma(xv, acc0);
            acc1 = FloatVector.fromMemorySegment(FLOATS, weight, row1 + byteOffset, ByteOrder.LITTLE_ENDIAN).fma(xv, acc1);
            acc2 = FloatVector.fromMemorySegment(FLOATS, weight, row2 + byteOffset, ByteOrder.LITTLE_ENDIAN).fma(xv, acc2);
            acc3 = FloatVector.fromMemorySegment(FLOATS, weight, row3 + byteOffset, ByteOrder.LITTLE_ENDIAN).fma(xv, acc3);
        }
        float s0 = acc0.reduceLanes(VectorOperators.ADD), s1 = acc1.reduceLanes(VectorOperators.ADD);
        float s2 = acc2.reduceLanes(VectorOperators.ADD), s3 = acc3.reduceLanes(VectorOperators.ADD);
        for (; k < inputs; k++) {
            float xk = x[xOffset + k];
            long byteOffset = (long) k * 4;
            s0 += xk * weight.get(FLOAT_LE, rowByte0 + byteOffset);
            s1 += xk * weight.get(FLOAT_LE, row1 + byteOffset);
            s2 += xk * weight.get(FLOAT_LE, row2 + byteOffset);
            s3 += xk * weight.get(FLOAT_LE, row3 + byteOffset);
        }
        y[yIndex] = s0;
        y[yIndex + 1] = s1;
        y[yIndex + 2] = s2;
        y[yIndex + 3] = s3;
    }

    /** As {@link #dot4x1F32} for BF16 weight rows, widened in registers. */
    static void dot4x1Bf16(MemorySegment weight, long rowByte0, long rowBytes, int inputs,
                           float[] x, int xOffset, float[] y, int yIndex) {
        FloatVector acc0 = FloatVector.zero(FLOATS), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        long row1 = rowByte0 + rowBytes, row2 = row1 + rowBytes, row3 = row2 + rowBytes;
        int bound = inputs - inputs % LANES;
        int k = 0;
        for (; k < bound; k += LANES) {
            FloatVector xv = FloatVector.fromArray(FLOATS, x, xOffset + k);
            long byteOffset = (long) k * 2;
            acc0 = ((IntVector) ShortVector.fromMemorySegment(SHORTS, weight, rowByte0 + byteOffset, ByteOrder.LITTLE_ENDIAN)
                    .convertShape(VectorOperators.ZERO_EXTEND_S2I, INTS, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xv, acc0);
            acc1 = ((IntVector) ShortVector.fromMemorySegment(SHORTS, weight, row1 + byteOffset, ByteOrder.LITTLE_ENDIAN)
                    .convertShape(VectorOperators.ZERO_EXTEND_S2I, INTS, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xv, acc1);
            acc2 = ((IntVector) ShortVector.fromMemorySegment(SHORTS, weight, row2 + byteOffset, ByteOrder.LITTLE_ENDIAN)
                    .convertShape(VectorOperators.ZERO_EXTEND_S2I, INTS, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xv, acc2);
            acc3 = ((IntVector) ShortVector.fromMemorySegment(SHORTS, weight, row3 + byteOffset, ByteOrder.LITTLE_ENDIAN)
                    .convertShape(VectorOperators.ZERO_EXTEND_S2I, INTS, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xv, acc3);
        }
        float s0 = acc0.reduceLanes(VectorOperators.ADD), s1 = acc1.reduceLanes(VectorOperators.ADD);
        float s2 = acc2.reduceLanes(VectorOperators.ADD), s3 = acc3.reduceLanes(VectorOperators.ADD);
        for (; k < inputs; k++) {
            float xk = x[xOffset + k];
            long byteOffset = (long) k * 2;
            s0 += xk * bf16ToFloat(weight.get(SHORT_LE, rowByte0 + byteOffset));
            s1 += xk * bf16ToFloat(weight.get(SHORT_LE, row1 + byteOffset));
            s2 += xk * bf16ToFloat(weight.get(SHORT_LE, row2 + byteOffset));
            s3 += xk * bf16ToFloat(weight.get(SHORT_LE, row3 + byteOffset));
        }
        y[yIndex] = s0;
        y[yIndex + 1] = s1;
        y[yIndex + 2] = s2;
        y[yIndex + 3] = s3;
    }

    /**
     * A 4 x 4 register tile read in place: 4 weight rows (BF16, from byte {@code rowByte0}, {@code rowBytes}
     * apart) times 4 activation rows over all K; y[yIndex_i + j] = Σ_k x_i[k] · w_j[k]. Each weight vector is
     * loaded (and widened) once for 4 rows: for decode batches, where the weight must stream from memory once.
     */
    static void dot4x4Bf16(MemorySegment weight, long rowByte0, long rowBytes, int inputs,
                       float[] x, int x0, int x1, int x2, int x3, float[] y, int y0, int y1, int y2, int y3) {
        FloatVector a00 = FloatVector.zero(FLOATS), a01 = a00, a02 = a00, a03 = a00;
        FloatVector a10 = a00, a11 = a00, a12 = a00, a13 = a00;
        FloatVector a20 = a00, a21 = a00, a22 = a00, a23 = a00;
        FloatVector a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        long row1 = rowByte0 + rowBytes, row2 = row1 + rowBytes, row3 = row2 + rowBytes;
        int elementBytes = 2;
        int bound = inputs - inputs % LANES;
        int k = 0;
        for (; k < bound; k += LANES) {
            long byteOffset = (long) k * elementBytes;
            FloatVector wv0 = ((IntVector) ShortVector.fromMemorySegment(SHORTS, weight, rowByte0 + byteOffset, ByteOrder.LITTLE_ENDIAN)
                    .convertShape(VectorOperators.ZERO_EXTEND_S2I, INTS, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector wv1 = ((IntVector) ShortVector.fromMemorySegment(SHORTS, weight, row1 + byteOffset, ByteOrder.LITTLE_ENDIAN)
                    .convertShape(VectorOperators.ZERO_EXTEND_S2I, INTS, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector wv2 = ((IntVector) ShortVector.fromMemorySegment(SHORTS, weight, row2 + byteOffset, ByteOrder.LITTLE_ENDIAN)
                    .convertShape(VectorOperators.ZERO_EXTEND_S2I, INTS, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector wv3 = ((IntVector) ShortVector.fromMemorySegment(SHORTS, weight, row3 + byteOffset, ByteOrder.LITTLE_ENDIAN)
                    .convertShape(VectorOperators.ZERO_EXTEND_S2I, INTS, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
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
        // Tail (K not a multiple of LANES): scalar, rare for real models.
        float[] tail = k < inputs ? new float[16] : NO_TAIL;
        for (; k < inputs; k++) {
            long byteOffset = (long) k * elementBytes;
            float w0 = scalar(weight, true, rowByte0 + byteOffset), w1 = scalar(weight, true, row1 + byteOffset);
            float w2 = scalar(weight, true, row2 + byteOffset), w3 = scalar(weight, true, row3 + byteOffset);
            int[] xs = {x0, x1, x2, x3};
            for (int i = 0; i < 4; i++) {
                float xk = x[xs[i] + k];
                tail[4 * i] += xk * w0;
                tail[4 * i + 1] += xk * w1;
                tail[4 * i + 2] += xk * w2;
                tail[4 * i + 3] += xk * w3;
            }
        }
        storeWithTail(y, y0, a00.reduceLanes(VectorOperators.ADD), a01.reduceLanes(VectorOperators.ADD), a02.reduceLanes(VectorOperators.ADD), a03.reduceLanes(VectorOperators.ADD), tail, 0);
        storeWithTail(y, y1, a10.reduceLanes(VectorOperators.ADD), a11.reduceLanes(VectorOperators.ADD), a12.reduceLanes(VectorOperators.ADD), a13.reduceLanes(VectorOperators.ADD), tail, 4);
        storeWithTail(y, y2, a20.reduceLanes(VectorOperators.ADD), a21.reduceLanes(VectorOperators.ADD), a22.reduceLanes(VectorOperators.ADD), a23.reduceLanes(VectorOperators.ADD), tail, 8);
        storeWithTail(y, y3, a30.reduceLanes(VectorOperators.ADD), a31.reduceLanes(VectorOperators.ADD), a32.reduceLanes(VectorOperators.ADD), a33.reduceLanes(VectorOperators.ADD), tail, 12);
    }

    /**
     * As {@link #dot4x4Bf16} for F32 weight rows. (Two methods, not one with a flag: a vector merged from two
     * branches is boxed by C2, which costs more than the product.) 4 weight rows (F32, from byte {@code rowByte0}, {@code rowBytes}
     * apart) times 4 activation rows over all K; y[yIndex_i + j] = Σ_k x_i[k] · w_j[k]. Each weight vector is
     * loaded (and widened) once for 4 rows: for decode batches, where the weight must stream from memory once.
     */
    static void dot4x4F32(MemorySegment weight, long rowByte0, long rowBytes, int inputs,
                       float[] x, int x0, int x1, int x2, int x3, float[] y, int y0, int y1, int y2, int y3) {
        FloatVector a00 = FloatVector.zero(FLOATS), a01 = a00, a02 = a00, a03 = a00;
        FloatVector a10 = a00, a11 = a00, a12 = a00, a13 = a00;
        FloatVector a20 = a00, a21 = a00, a22 = a00, a23 = a00;
        FloatVector a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        long row1 = rowByte0 + rowBytes, row2 = row1 + rowBytes, row3 = row2 + rowBytes;
        int elementBytes = 4;
        int bound = inputs - inputs % LANES;
        int k = 0;
        for (; k < bound; k += LANES) {
            long byteOffset = (long) k * elementBytes;
            FloatVector wv0 = FloatVector.fromMemorySegment(FLOATS, weight, rowByte0 + byteOffset, ByteOrder.LITTLE_ENDIAN);
            FloatVector wv1 = FloatVector.fromMemorySegment(FLOATS, weight, row1 + byteOffset, ByteOrder.LITTLE_ENDIAN);
            FloatVector wv2 = FloatVector.fromMemorySegment(FLOATS, weight, row2 + byteOffset, ByteOrder.LITTLE_ENDIAN);
            FloatVector wv3 = FloatVector.fromMemorySegment(FLOATS, weight, row3 + byteOffset, ByteOrder.LITTLE_ENDIAN);
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
        // Tail (K not a multiple of LANES): scalar, rare for real models.
        float[] tail = k < inputs ? new float[16] : NO_TAIL;
        for (; k < inputs; k++) {
            long byteOffset = (long) k * elementBytes;
            float w0 = scalar(weight, false, rowByte0 + byteOffset), w1 = scalar(weight, false, row1 + byteOffset);
            float w2 = scalar(weight, false, row2 + byteOffset), w3 = scalar(weight, false, row3 + byteOffset);
            int[] xs = {x0, x1, x2, x3};
            for (int i = 0; i < 4; i++) {
                float xk = x[xs[i] + k];
                tail[4 * i] += xk * w0;
                tail[4 * i + 1] += xk * w1;
                tail[4 * i + 2] += xk * w2;
                tail[4 * i + 3] += xk * w3;
            }
        }
        storeWithTail(y, y0, a00.reduceLanes(VectorOperators.ADD), a01.reduceLanes(VectorOperators.ADD), a02.reduceLanes(VectorOperators.ADD), a03.reduceLanes(VectorOperators.ADD), tail, 0);
        storeWithTail(y, y1, a10.reduceLanes(VectorOperators.ADD), a11.reduceLanes(VectorOperators.ADD), a12.reduceLanes(VectorOperators.ADD), a13.reduceLanes(VectorOperators.ADD), tail, 4);
        storeWithTail(y, y2, a20.reduceLanes(VectorOperators.ADD), a21.reduceLanes(VectorOperators.ADD), a22.reduceLanes(VectorOperators.ADD), a23.reduceLanes(VectorOperators.ADD), tail, 8);
        storeWithTail(y, y3, a30.reduceLanes(VectorOperators.ADD), a31.reduceLanes(VectorOperators.ADD), a32.reduceLanes(VectorOperators.ADD), a33.reduceLanes(VectorOperators.ADD), tail, 12);
    }

    private static float scalar(MemorySegment weight, boolean bf16, long offset) {
        return bf16 ? bf16ToFloat(weight.get(SHORT_LE, offset)) : weight.get(FLOAT_LE, offset);
    }

    private static void storeWithTail(float[] y, int index, float s0, float s1, float s2, float s3, float[] tail, int tailIndex) {
        y[index] = s0 + tail[tailIndex];
        y[index + 1] = s1 + tail[tailIndex + 1];
        y[index + 2] = s2 + tail[tailIndex + 2];
        y[index + 3] = s3 + tail[tailIndex + 3];
    }

    /**
     * Decode with a delta, one pass over memory: for 4 BF16 weight rows and the 4 matching sign rows of one
     * tenant, against one activation row, y[yIndex + j] = Σ_k x[k] · w_j[k] and positive[j] = Σ_{k: bit(j, k) = 1}
     * x[k], over the first {@code inputs - inputs % 32} inputs (the caller adds the rest with the tail kernels).
     * The sign work hides under the weight stream, where the separate passes would wait for memory twice.
     * Written without helpers: this kernel is big enough to hit C2's NodeCountInliningCutoff, and a helper left
     * out of line boxes its vectors.
     */
    static void fused4x1Bf16(MemorySegment weight, long rowByte0, long rowBytes, int inputs, float[] x, int xOffset,
                              MemorySegment signs, long signRow0, long bytesPerRow, float[] y, int yIndex, float[] positive) {
        FloatVector acc0 = FloatVector.zero(FLOATS), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        FloatVector pos0 = acc0, pos1 = acc0, pos2 = acc0, pos3 = acc0;
        long row1 = rowByte0 + rowBytes, row2 = row1 + rowBytes, row3 = row2 + rowBytes;
        long signRow1 = signRow0 + bytesPerRow, signRow2 = signRow1 + bytesPerRow, signRow3 = signRow2 + bytesPerRow;
        int bound = inputs - inputs % BITS_PER_WORD;
        for (int k = 0; k < bound; k += BITS_PER_WORD) {
            long signByte = k >>> 3;
            IntVector word0 = IntVector.broadcast(INTS, signs.get(INT_LE, signRow0 + signByte));
            IntVector word1 = IntVector.broadcast(INTS, signs.get(INT_LE, signRow1 + signByte));
            IntVector word2 = IntVector.broadcast(INTS, signs.get(INT_LE, signRow2 + signByte));
            IntVector word3 = IntVector.broadcast(INTS, signs.get(INT_LE, signRow3 + signByte));
            for (int part = 0; part < MASKS_PER_WORD; part++) {
                int column = k + part * LANES;
                long byteOffset = (long) column * 2;
                IntVector laneBits = LANE_BITS_0.lanewise(VectorOperators.LSHL, part * LANES);
                FloatVector xv = FloatVector.fromArray(FLOATS, x, xOffset + column);
                acc0 = ((IntVector) ShortVector.fromMemorySegment(SHORTS, weight, rowByte0 + byteOffset, ByteOrder.LITTLE_ENDIAN)
                        .convertShape(VectorOperators.ZERO_EXTEND_S2I, INTS, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xv, acc0);
                acc1 = ((IntVector) ShortVector.fromMemorySegment(SHORTS, weight, row1 + byteOffset, ByteOrder.LITTLE_ENDIAN)
                        .convertShape(VectorOperators.ZERO_EXTEND_S2I, INTS, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xv, acc1);
                acc2 = ((IntVector) ShortVector.fromMemorySegment(SHORTS, weight, row2 + byteOffset, ByteOrder.LITTLE_ENDIAN)
                        .convertShape(VectorOperators.ZERO_EXTEND_S2I, INTS, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xv, acc2);
                acc3 = ((IntVector) ShortVector.fromMemorySegment(SHORTS, weight, row3 + byteOffset, ByteOrder.LITTLE_ENDIAN)
                        .convertShape(VectorOperators.ZERO_EXTEND_S2I, INTS, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(xv, acc3);
                pos0 = pos0.add(xv, word0.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
                pos1 = pos1.add(xv, word1.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
                pos2 = pos2.add(xv, word2.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
                pos3 = pos3.add(xv, word3.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
            }
        }
        y[yIndex] = acc0.reduceLanes(VectorOperators.ADD);
        y[yIndex + 1] = acc1.reduceLanes(VectorOperators.ADD);
        y[yIndex + 2] = acc2.reduceLanes(VectorOperators.ADD);
        y[yIndex + 3] = acc3.reduceLanes(VectorOperators.ADD);
        positive[0] = pos0.reduceLanes(VectorOperators.ADD);
        positive[1] = pos1.reduceLanes(VectorOperators.ADD);
        positive[2] = pos2.reduceLanes(VectorOperators.ADD);
        positive[3] = pos3.reduceLanes(VectorOperators.ADD);
    }

    /**
     * Decode with a delta, one pass over memory: for 4 F32 weight rows and the 4 matching sign rows of one
     * tenant, against one activation row, y[yIndex + j] = Σ_k x[k] · w_j[k] and positive[j] = Σ_{k: bit(j, k) = 1}
     * x[k], over the first {@code inputs - inputs % 32} inputs (the caller adds the rest with the tail kernels).
     * The sign work hides under the weight stream, where the separate passes would wait for memory twice.
     * Written without helpers: this kernel is big enough to hit C2's NodeCountInliningCutoff, and a helper left
     * out of line boxes its vectors.
     */
    static void fused4x1F32(MemorySegment weight, long rowByte0, long rowBytes, int inputs, float[] x, int xOffset,
                              MemorySegment signs, long signRow0, long bytesPerRow, float[] y, int yIndex, float[] positive) {
        FloatVector acc0 = FloatVector.zero(FLOATS), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        FloatVector pos0 = acc0, pos1 = acc0, pos2 = acc0, pos3 = acc0;
        long row1 = rowByte0 + rowBytes, row2 = row1 + rowBytes, row3 = row2 + rowBytes;
        long signRow1 = signRow0 + bytesPerRow, signRow2 = signRow1 + bytesPerRow, signRow3 = signRow2 + bytesPerRow;
        int bound = inputs - inputs % BITS_PER_WORD;
        for (int k = 0; k < bound; k += BITS_PER_WORD) {
            long signByte = k >>> 3;
            IntVector word0 = IntVector.broadcast(INTS, signs.get(INT_LE, signRow0 + signByte));
            IntVector word1 = IntVector.broadcast(INTS, signs.get(INT_LE, signRow1 + signByte));
            IntVector word2 = IntVector.broadcast(INTS, signs.get(INT_LE, signRow2 + signByte));
            IntVector word3 = IntVector.broadcast(INTS, signs.get(INT_LE, signRow3 + signByte));
            for (int part = 0; part < MASKS_PER_WORD; part++) {
                int column = k + part * LANES;
                long byteOffset = (long) column * 4;
                IntVector laneBits = LANE_BITS_0.lanewise(VectorOperators.LSHL, part * LANES);
                FloatVector xv = FloatVector.fromArray(FLOATS, x, xOffset + column);
                acc0 = FloatVector.fromMemorySegment(FLOATS, weight, rowByte0 + byteOffset, ByteOrder.LITTLE_ENDIAN).fma(xv, acc0);
                acc1 = FloatVector.fromMemorySegment(FLOATS, weight, row1 + byteOffset, ByteOrder.LITTLE_ENDIAN).fma(xv, acc1);
                acc2 = FloatVector.fromMemorySegment(FLOATS, weight, row2 + byteOffset, ByteOrder.LITTLE_ENDIAN).fma(xv, acc2);
                acc3 = FloatVector.fromMemorySegment(FLOATS, weight, row3 + byteOffset, ByteOrder.LITTLE_ENDIAN).fma(xv, acc3);
                pos0 = pos0.add(xv, word0.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
                pos1 = pos1.add(xv, word1.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
                pos2 = pos2.add(xv, word2.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
                pos3 = pos3.add(xv, word3.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
            }
        }
        y[yIndex] = acc0.reduceLanes(VectorOperators.ADD);
        y[yIndex + 1] = acc1.reduceLanes(VectorOperators.ADD);
        y[yIndex + 2] = acc2.reduceLanes(VectorOperators.ADD);
        y[yIndex + 3] = acc3.reduceLanes(VectorOperators.ADD);
        positive[0] = pos0.reduceLanes(VectorOperators.ADD);
        positive[1] = pos1.reduceLanes(VectorOperators.ADD);
        positive[2] = pos2.reduceLanes(VectorOperators.ADD);
        positive[3] = pos3.reduceLanes(VectorOperators.ADD);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Dense products on a converted weight tile (prefill and larger batches: each converted chunk is reused by
    // every activation row)

    /**
     * A 4 x 4 register tile over one K block: for weight rows j (at w[j * wStride ...]) and activation rows i (at
     * x[xOffset_i ...]), y[yIndex_i + j] = (accumulate ? y[yIndex_i + j] : 0) + Σ_{k < length} x_i[k] · w_j[k].
     */
    static void tile4x4(float[] w, int wStride, int length, float[] x, int x0, int x1, int x2, int x3,
                        float[] y, int y0, int y1, int y2, int y3, boolean accumulate) {
        FloatVector a00 = FloatVector.zero(FLOATS), a01 = a00, a02 = a00, a03 = a00;
        FloatVector a10 = a00, a11 = a00, a12 = a00, a13 = a00;
        FloatVector a20 = a00, a21 = a00, a22 = a00, a23 = a00;
        FloatVector a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        int w1 = wStride, w2 = 2 * wStride, w3 = 3 * wStride;
        int bound = length - length % LANES;
        int k = 0;
        for (; k < bound; k += LANES) {
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
        storeRow(y, y0, accumulate, a00.reduceLanes(VectorOperators.ADD), a01.reduceLanes(VectorOperators.ADD), a02.reduceLanes(VectorOperators.ADD), a03.reduceLanes(VectorOperators.ADD), w, 0, wStride, x, x0, k, length);
        storeRow(y, y1, accumulate, a10.reduceLanes(VectorOperators.ADD), a11.reduceLanes(VectorOperators.ADD), a12.reduceLanes(VectorOperators.ADD), a13.reduceLanes(VectorOperators.ADD), w, 0, wStride, x, x1, k, length);
        storeRow(y, y2, accumulate, a20.reduceLanes(VectorOperators.ADD), a21.reduceLanes(VectorOperators.ADD), a22.reduceLanes(VectorOperators.ADD), a23.reduceLanes(VectorOperators.ADD), w, 0, wStride, x, x2, k, length);
        storeRow(y, y3, accumulate, a30.reduceLanes(VectorOperators.ADD), a31.reduceLanes(VectorOperators.ADD), a32.reduceLanes(VectorOperators.ADD), a33.reduceLanes(VectorOperators.ADD), w, 0, wStride, x, x3, k, length);
    }

    /** A 4 weight rows x 1 activation row tile over one K block; see {@link #tile4x4}. */
    static void tile4x1(float[] w, int wStride, int length, float[] x, int x0, float[] y, int y0, boolean accumulate) {
        FloatVector a0 = FloatVector.zero(FLOATS), a1 = a0, a2 = a0, a3 = a0;
        int w1 = wStride, w2 = 2 * wStride, w3 = 3 * wStride;
        int bound = length - length % LANES;
        int k = 0;
        for (; k < bound; k += LANES) {
            FloatVector xv = FloatVector.fromArray(FLOATS, x, x0 + k);
            a0 = FloatVector.fromArray(FLOATS, w, k).fma(xv, a0);
            a1 = FloatVector.fromArray(FLOATS, w, w1 + k).fma(xv, a1);
            a2 = FloatVector.fromArray(FLOATS, w, w2 + k).fma(xv, a2);
            a3 = FloatVector.fromArray(FLOATS, w, w3 + k).fma(xv, a3);
        }
        storeRow(y, y0, accumulate, a0.reduceLanes(VectorOperators.ADD), a1.reduceLanes(VectorOperators.ADD), a2.reduceLanes(VectorOperators.ADD), a3.reduceLanes(VectorOperators.ADD), w, 0, wStride, x, x0, k, length);
    }

    /** One weight row (at w[wOffset ...]) times one activation row over one K block. */
    static float dot1x1(float[] w, int wOffset, int length, float[] x, int x0) {
        FloatVector acc = FloatVector.zero(FLOATS);
        int bound = length - length % LANES;
        int k = 0;
        for (; k < bound; k += LANES) {
            acc = FloatVector.fromArray(FLOATS, w, wOffset + k).fma(FloatVector.fromArray(FLOATS, x, x0 + k), acc);
        }
        float sum = acc.reduceLanes(VectorOperators.ADD);
        for (; k < length; k++) {
            sum += w[wOffset + k] * x[x0 + k];
        }
        return sum;
    }

    /** Takes 4 reduced accumulators, adds the scalar tail from {@code tailStart} to {@code length}, stores 4 outputs. */
    private static void storeRow(float[] y, int yIndex, boolean accumulate, float s0, float s1, float s2, float s3,
                                 float[] w, int wOffset, int wStride, float[] x, int xOffset, int tailStart, int length) {
        for (int k = tailStart; k < length; k++) {
            float xk = x[xOffset + k];
            s0 += xk * w[wOffset + k];
            s1 += xk * w[wOffset + wStride + k];
            s2 += xk * w[wOffset + 2 * wStride + k];
            s3 += xk * w[wOffset + 3 * wStride + k];
        }
        if (accumulate) {
            y[yIndex] += s0;
            y[yIndex + 1] += s1;
            y[yIndex + 2] += s2;
            y[yIndex + 3] += s3;
        } else {
            y[yIndex] = s0;
            y[yIndex + 1] = s1;
            y[yIndex + 2] = s2;
            y[yIndex + 3] = s3;
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Binary (sign) products. Σ_k x_k · s_k = 2 · Σ_{k: s_k = +1} x_k − Σ_k x_k, so a kernel only sums the x lanes
    // whose sign bit is 1: a masked add per LANES inputs, the mask taken straight from the packed bits
    // (a broadcast word tested against per-lane bits). The signs are never expanded in memory.

    /** Σ_k x[xOffset + k] for k < length. */
    static float sum(float[] x, int xOffset, int length) {
        FloatVector acc = FloatVector.zero(FLOATS);
        int bound = length - length % LANES;
        int k = 0;
        for (; k < bound; k += LANES) {
            acc = acc.add(FloatVector.fromArray(FLOATS, x, xOffset + k));
        }
        float total = acc.reduceLanes(VectorOperators.ADD);
        for (; k < length; k++) {
            total += x[xOffset + k];
        }
        return total;
    }

    /** Up to 4 packed bytes from {@code offset} as the low bits of an int (little-endian), for row tails. */
    static int readBits(MemorySegment signs, long offset, int bytes) {
        int bits = 0;
        for (int b = 0; b < bytes; b++) {
            bits |= (signs.get(ValueLayout.JAVA_BYTE, offset + b) & 0xFF) << (8 * b);
        }
        return bits;
    }

    /**
     * Positive-sign sums of 4 sign rows (starting at byte {@code signRow0}, {@code bytesPerRow} apart) against one
     * activation row: out[outIndex + j] = Σ_{k: bit(j, k) = 1} x[xOffset + k].
     */
    static void positiveSum4x1(MemorySegment signs, long signRow0, long bytesPerRow, int inputs,
                               float[] x, int xOffset, float[] out, int outIndex) {
        FloatVector acc0 = FloatVector.zero(FLOATS), acc1 = acc0, acc2 = acc0, acc3 = acc0;
        long row1 = signRow0 + bytesPerRow, row2 = row1 + bytesPerRow, row3 = row2 + bytesPerRow;
        int wordBound = inputs - inputs % BITS_PER_WORD;
        int k = 0;
        for (; k < wordBound; k += BITS_PER_WORD) {
            long byteOffset = k >>> 3;
            IntVector word0 = IntVector.broadcast(INTS, signs.get(INT_LE, signRow0 + byteOffset));
            IntVector word1 = IntVector.broadcast(INTS, signs.get(INT_LE, row1 + byteOffset));
            IntVector word2 = IntVector.broadcast(INTS, signs.get(INT_LE, row2 + byteOffset));
            IntVector word3 = IntVector.broadcast(INTS, signs.get(INT_LE, row3 + byteOffset));
            for (int part = 0; part < MASKS_PER_WORD; part++) {
                IntVector laneBits = LANE_BITS_0.lanewise(VectorOperators.LSHL, part * LANES);
                FloatVector xv = FloatVector.fromArray(FLOATS, x, xOffset + k + part * LANES);
                acc0 = acc0.add(xv, word0.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
                acc1 = acc1.add(xv, word1.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
                acc2 = acc2.add(xv, word2.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
                acc3 = acc3.add(xv, word3.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
            }
        }
        if (k < inputs) {
            // Row tail: fewer than 32 inputs; read only the bytes the row has, load x under a range mask.
            long byteOffset = k >>> 3;
            IntVector word0 = IntVector.broadcast(INTS, readBits(signs, signRow0 + byteOffset, (inputs - k + 7) >>> 3));
            IntVector word1 = IntVector.broadcast(INTS, readBits(signs, row1 + byteOffset, (inputs - k + 7) >>> 3));
            IntVector word2 = IntVector.broadcast(INTS, readBits(signs, row2 + byteOffset, (inputs - k + 7) >>> 3));
            IntVector word3 = IntVector.broadcast(INTS, readBits(signs, row3 + byteOffset, (inputs - k + 7) >>> 3));
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
        store4(out, outIndex, acc0.reduceLanes(VectorOperators.ADD), acc1.reduceLanes(VectorOperators.ADD), acc2.reduceLanes(VectorOperators.ADD), acc3.reduceLanes(VectorOperators.ADD));
    }

    /**
     * Positive-sign sums of 4 sign rows against 4 activation rows (one tenant's prefill): each mask is built once
     * and used for 4 rows. out[outIndex_i + j] for activation row i, sign row j.
     */
    static void positiveSum4x4(MemorySegment signs, long signRow0, long bytesPerRow, int inputs,
                               float[] x, int x0, int x1, int x2, int x3,
                               float[] out, int o0, int o1, int o2, int o3) {
        FloatVector a00 = FloatVector.zero(FLOATS), a01 = a00, a02 = a00, a03 = a00;
        FloatVector a10 = a00, a11 = a00, a12 = a00, a13 = a00;
        FloatVector a20 = a00, a21 = a00, a22 = a00, a23 = a00;
        FloatVector a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        long row1 = signRow0 + bytesPerRow, row2 = row1 + bytesPerRow, row3 = row2 + bytesPerRow;
        for (int k = 0; k < inputs; k += BITS_PER_WORD) {
            long byteOffset = k >>> 3;
            boolean fullWord = k + BITS_PER_WORD <= inputs;
            IntVector word0 = fullWord ? IntVector.broadcast(INTS, signs.get(INT_LE, signRow0 + byteOffset)) : IntVector.broadcast(INTS, readBits(signs, signRow0 + byteOffset, (inputs - k + 7) >>> 3));
            IntVector word1 = fullWord ? IntVector.broadcast(INTS, signs.get(INT_LE, row1 + byteOffset)) : IntVector.broadcast(INTS, readBits(signs, row1 + byteOffset, (inputs - k + 7) >>> 3));
            IntVector word2 = fullWord ? IntVector.broadcast(INTS, signs.get(INT_LE, row2 + byteOffset)) : IntVector.broadcast(INTS, readBits(signs, row2 + byteOffset, (inputs - k + 7) >>> 3));
            IntVector word3 = fullWord ? IntVector.broadcast(INTS, signs.get(INT_LE, row3 + byteOffset)) : IntVector.broadcast(INTS, readBits(signs, row3 + byteOffset, (inputs - k + 7) >>> 3));
            for (int part = 0; part < MASKS_PER_WORD && k + part * LANES < inputs; part++) {
                IntVector laneBits = LANE_BITS_0.lanewise(VectorOperators.LSHL, part * LANES);
                int column = k + part * LANES;
                VectorMask<Float> m0 = word0.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS);
                VectorMask<Float> m1 = word1.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS);
                VectorMask<Float> m2 = word2.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS);
                VectorMask<Float> m3 = word3.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS);
                // Lanes past the row end are loaded as 0 (and their sign bits are padding, 0 by the format).
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
        store4(out, o0, a00.reduceLanes(VectorOperators.ADD), a01.reduceLanes(VectorOperators.ADD), a02.reduceLanes(VectorOperators.ADD), a03.reduceLanes(VectorOperators.ADD));
        store4(out, o1, a10.reduceLanes(VectorOperators.ADD), a11.reduceLanes(VectorOperators.ADD), a12.reduceLanes(VectorOperators.ADD), a13.reduceLanes(VectorOperators.ADD));
        store4(out, o2, a20.reduceLanes(VectorOperators.ADD), a21.reduceLanes(VectorOperators.ADD), a22.reduceLanes(VectorOperators.ADD), a23.reduceLanes(VectorOperators.ADD));
        store4(out, o3, a30.reduceLanes(VectorOperators.ADD), a31.reduceLanes(VectorOperators.ADD), a32.reduceLanes(VectorOperators.ADD), a33.reduceLanes(VectorOperators.ADD));
    }

    /** Positive-sign sum of one sign row against one activation row. */
    static float positiveSum1x1(MemorySegment signs, long signRow, int inputs, float[] x, int xOffset) {
        FloatVector acc = FloatVector.zero(FLOATS);
        for (int k = 0; k < inputs; k += BITS_PER_WORD) {
            long byteOffset = k >>> 3;
            IntVector word = k + BITS_PER_WORD <= inputs ? IntVector.broadcast(INTS, signs.get(INT_LE, signRow + byteOffset))
                    : IntVector.broadcast(INTS, readBits(signs, signRow + byteOffset, (inputs - k + 7) >>> 3));
            for (int part = 0; part < MASKS_PER_WORD && k + part * LANES < inputs; part++) {
                IntVector laneBits = LANE_BITS_0.lanewise(VectorOperators.LSHL, part * LANES);
                int column = k + part * LANES;
                FloatVector xv = FloatVector.fromArray(FLOATS, x, xOffset + column, FLOATS.indexInRange(column, inputs));
                acc = acc.add(xv, word.and(laneBits).compare(VectorOperators.NE, 0).cast(FLOATS));
            }
        }
        return acc.reduceLanes(VectorOperators.ADD);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Binary (sign) products by table lookup (T-MAC style), for 16 output rows at a time. For each group of 4
    // input columns, the 16 possible signed sums ±x0 ±x1 ±x2 ±x3 form a table of 16 floats (one 512-bit
    // register); the 4 sign bits of a row in that group are the index. With the signs re-laid out so that one
    // int lane holds 32 sign bits of one of 16 rows (SignBlocks), a shift, an and, one permute (vpermd,
    // IntVector.selectFrom) and one add do 16 rows x 4 columns = 64 sign products, where the masked-add kernels
    // above do 16 per mask and add.

    /** Whether the lookup kernels can run: a table of 16 floats must fill exactly one vector. */
    static final boolean LOOKUP_SUPPORTED = LANES == 16;
    /** Lane n holds +1 where bit j of n is set, else −1 (j = 0..3): table = Σ_j x_j · SIGN_j. */
    private static final FloatVector SIGN_0 = signPattern(0), SIGN_1 = signPattern(1), SIGN_2 = signPattern(2), SIGN_3 = signPattern(3);
    /** Floats of the table of one group of 4 columns. */
    static final int TABLE_FLOATS = 16;

    private static FloatVector signPattern(int bit) {
        float[] pattern = new float[LANES];
        for (int lane = 0; lane < LANES; lane++) {
            pattern[lane] = ((lane >>> bit) & 1) != 0 ? 1f : -1f;
        }
        return FloatVector.fromArray(FLOATS, pattern, 0);
    }

    /**
     * The lookup tables of one activation row: for group g of 4 columns (g < groups),
     * tables[tableOffset + 16 g + n] = Σ_{j < 4} (bit j of n ? +x : −x)[4 g + j], with x = 0 past {@code inputs}
     * (so padding sign bits, whatever they hold, add nothing).
     */
    static void buildTables(float[] x, int xOffset, int inputs, int groups, float[] tables, int tableOffset) {
        int full = Math.min(groups, inputs / 4);
        for (int g = 0; g < full; g++) {
            int k = xOffset + 4 * g;
            SIGN_0.mul(x[k]).add(SIGN_1.mul(x[k + 1])).add(SIGN_2.mul(x[k + 2]).add(SIGN_3.mul(x[k + 3])))
                    .intoArray(tables, tableOffset + g * TABLE_FLOATS);
        }
        for (int g = full; g < groups; g++) {
            int k = 4 * g;
            float x0 = k < inputs ? x[xOffset + k] : 0, x1 = k + 1 < inputs ? x[xOffset + k + 1] : 0;
            float x2 = k + 2 < inputs ? x[xOffset + k + 2] : 0, x3 = k + 3 < inputs ? x[xOffset + k + 3] : 0;
            SIGN_0.mul(x0).add(SIGN_1.mul(x1)).add(SIGN_2.mul(x2).add(SIGN_3.mul(x3)))
                    .intoArray(tables, tableOffset + g * TABLE_FLOATS);
        }
    }

    /**
     * Signed sums of one 16-row block of re-laid-out signs against one activation row's tables, over {@code words}
     * sign words (32 columns each): acc[accIndex + i] += Σ_k s(i, k) · x[k] for the block's row i.
     * {@code blockByte} is the block's first byte (64 per word: an int per row), {@code tableIndex} the first table
     * of the first word (8 tables per word, one per nibble). Lane i's int holds row i's 32 sign bits, so the
     * index of nibble j is {@code (word >>> 4j) & 15}: shifts and ands, one permute per 64 sign products.
     */
    static void lookup16x1(MemorySegment blocks, long blockByte, int words, float[] tables, int tableIndex, float[] acc, int accIndex) {
        FloatVector a0 = FloatVector.zero(FLOATS), a1 = a0, a2 = a0, a3 = a0;
        for (int w = 0; w < words; w++) {
            IntVector s = IntVector.fromMemorySegment(INTS, blocks, blockByte + w * 64L, ByteOrder.LITTLE_ENDIAN);
            int t = tableIndex + w * 8 * TABLE_FLOATS;
            a0 = a0.add(s.and(15).selectFrom(FloatVector.fromArray(FLOATS, tables, t).reinterpretAsInts()).reinterpretAsFloats());
            a1 = a1.add(s.lanewise(VectorOperators.LSHR, 4).and(15).selectFrom(FloatVector.fromArray(FLOATS, tables, t + 16).reinterpretAsInts()).reinterpretAsFloats());
            a2 = a2.add(s.lanewise(VectorOperators.LSHR, 8).and(15).selectFrom(FloatVector.fromArray(FLOATS, tables, t + 32).reinterpretAsInts()).reinterpretAsFloats());
            a3 = a3.add(s.lanewise(VectorOperators.LSHR, 12).and(15).selectFrom(FloatVector.fromArray(FLOATS, tables, t + 48).reinterpretAsInts()).reinterpretAsFloats());
            a0 = a0.add(s.lanewise(VectorOperators.LSHR, 16).and(15).selectFrom(FloatVector.fromArray(FLOATS, tables, t + 64).reinterpretAsInts()).reinterpretAsFloats());
            a1 = a1.add(s.lanewise(VectorOperators.LSHR, 20).and(15).selectFrom(FloatVector.fromArray(FLOATS, tables, t + 80).reinterpretAsInts()).reinterpretAsFloats());
            a2 = a2.add(s.lanewise(VectorOperators.LSHR, 24).and(15).selectFrom(FloatVector.fromArray(FLOATS, tables, t + 96).reinterpretAsInts()).reinterpretAsFloats());
            a3 = a3.add(s.lanewise(VectorOperators.LSHR, 28).selectFrom(FloatVector.fromArray(FLOATS, tables, t + 112).reinterpretAsInts()).reinterpretAsFloats());
        }
        FloatVector.fromArray(FLOATS, acc, accIndex).add(a0.add(a1).add(a2.add(a3))).intoArray(acc, accIndex);
    }

    /**
     * As {@link #lookup16x1} for two 16-row blocks of the same delta ({@code blockByte1} the second block's first
     * byte) against the same tables: each table is loaded once for both blocks, halving the table traffic (a row's
     * tables, 64 B per 4 inputs, do not fit L1 for K = 4096), and the two blocks' signs stream side by side.
     */
    static void lookup32x1(MemorySegment blocks, long blockByte0, long blockByte1, int words, float[] tables, int tableIndex,
                           float[] acc, int accIndex0, int accIndex1) {
        FloatVector a0 = FloatVector.zero(FLOATS), a1 = a0, a2 = a0, a3 = a0;
        FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int w = 0; w < words; w++) {
            IntVector s = IntVector.fromMemorySegment(INTS, blocks, blockByte0 + w * 64L, ByteOrder.LITTLE_ENDIAN);
            IntVector u = IntVector.fromMemorySegment(INTS, blocks, blockByte1 + w * 64L, ByteOrder.LITTLE_ENDIAN);
            int t = tableIndex + w * 8 * TABLE_FLOATS;
            IntVector table = FloatVector.fromArray(FLOATS, tables, t).reinterpretAsInts();
            a0 = a0.add(s.and(15).selectFrom(table).reinterpretAsFloats());
            b0 = b0.add(u.and(15).selectFrom(table).reinterpretAsFloats());
            table = FloatVector.fromArray(FLOATS, tables, t + 16).reinterpretAsInts();
            a1 = a1.add(s.lanewise(VectorOperators.LSHR, 4).and(15).selectFrom(table).reinterpretAsFloats());
            b1 = b1.add(u.lanewise(VectorOperators.LSHR, 4).and(15).selectFrom(table).reinterpretAsFloats());
            table = FloatVector.fromArray(FLOATS, tables, t + 32).reinterpretAsInts();
            a2 = a2.add(s.lanewise(VectorOperators.LSHR, 8).and(15).selectFrom(table).reinterpretAsFloats());
            b2 = b2.add(u.lanewise(VectorOperators.LSHR, 8).and(15).selectFrom(table).reinterpretAsFloats());
            table = FloatVector.fromArray(FLOATS, tables, t + 48).reinterpretAsInts();
            a3 = a3.add(s.lanewise(VectorOperators.LSHR, 12).and(15).selectFrom(table).reinterpretAsFloats());
            b3 = b3.add(u.lanewise(VectorOperators.LSHR, 12).and(15).selectFrom(table).reinterpretAsFloats());
            table = FloatVector.fromArray(FLOATS, tables, t + 64).reinterpretAsInts();
            a0 = a0.add(s.lanewise(VectorOperators.LSHR, 16).and(15).selectFrom(table).reinterpretAsFloats());
            b0 = b0.add(u.lanewise(VectorOperators.LSHR, 16).and(15).selectFrom(table).reinterpretAsFloats());
            table = FloatVector.fromArray(FLOATS, tables, t + 80).reinterpretAsInts();
            a1 = a1.add(s.lanewise(VectorOperators.LSHR, 20).and(15).selectFrom(table).reinterpretAsFloats());
            b1 = b1.add(u.lanewise(VectorOperators.LSHR, 20).and(15).selectFrom(table).reinterpretAsFloats());
            table = FloatVector.fromArray(FLOATS, tables, t + 96).reinterpretAsInts();
            a2 = a2.add(s.lanewise(VectorOperators.LSHR, 24).and(15).selectFrom(table).reinterpretAsFloats());
            b2 = b2.add(u.lanewise(VectorOperators.LSHR, 24).and(15).selectFrom(table).reinterpretAsFloats());
            table = FloatVector.fromArray(FLOATS, tables, t + 112).reinterpretAsInts();
            a3 = a3.add(s.lanewise(VectorOperators.LSHR, 28).selectFrom(table).reinterpretAsFloats());
            b3 = b3.add(u.lanewise(VectorOperators.LSHR, 28).selectFrom(table).reinterpretAsFloats());
        }
        FloatVector.fromArray(FLOATS, acc, accIndex0).add(a0.add(a1).add(a2.add(a3))).intoArray(acc, accIndex0);
        FloatVector.fromArray(FLOATS, acc, accIndex1).add(b0.add(b1).add(b2.add(b3))).intoArray(acc, accIndex1);
    }

    private static void store4(float[] out, int index, float s0, float s1, float s2, float s3) {
        out[index] = s0;
        out[index + 1] = s1;
        out[index + 2] = s2;
        out[index + 3] = s3;
    }
}
