package org.bitdelta.internal.format;

import jdk.incubator.vector.DoubleVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;
import org.bitdelta.BitDeltaException;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.stream.IntStream;

/**
 * The compression kernel for one matrix: packs sign(W_ft − W_base) into bits and sums |W_ft − W_base| per row.
 *
 * <p>Arithmetic contract (the CUDA compressor matches it): d = float(ft) − float(base) in F32; the sign bit is
 * {@code d >= 0}; each row's Σ|d| is accumulated in double. The per-row scale is {@code (float)(rowSum / cols)},
 * the per-matrix scale {@code (float)(Σ rowSum / (rows · cols))} with the row sums added in row order.
 */
public final class SignCompressor {
    private static final VectorSpecies<Float> FLOATS = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Integer> INTS = VectorSpecies.of(int.class, FLOATS.vectorShape());
    private static final VectorSpecies<Short> SHORTS =
            VectorSpecies.of(short.class, VectorShape.forBitSize(FLOATS.vectorBitSize() / 2));
    private static final VectorSpecies<Double> DOUBLES = VectorSpecies.of(double.class, FLOATS.vectorShape());
    private static final int LANES = FLOATS.length();
    private static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Rows per parallel task: large enough to amortize scheduling, small enough to balance 2..64 cores. */
    private static final int ROWS_PER_TASK = 32;

    private SignCompressor() {
    }

    /** What one matrix compresses to. */
    public record Result(MemorySegment signs, double[] rowAbsoluteSums) {
    }

    /**
     * Fills {@code signs} (U8 [rows, ceil(cols/8)], zero padding bits) and returns each row's Σ|d|.
     * Throws naming the tensor and element if either matrix holds NaN or infinity.
     */
    public static double[] compress(Tensor base, Tensor finetuned, MemorySegment signs) {
        int rows = Math.toIntExact(base.dimension(0));
        int cols = Math.toIntExact(base.dimension(1));
        int bytesPerRow = (cols + 7) >>> 3;
        if (signs.byteSize() != (long) rows * bytesPerRow) {
            throw new IllegalArgumentException("sign buffer of " + signs.byteSize() + " bytes for " + rows + "x" + cols);
        }
        double[] rowSums = new double[rows];
        int tasks = (rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
        IntStream.range(0, tasks).parallel().forEach(task -> {
            int end = Math.min(rows, (task + 1) * ROWS_PER_TASK);
            float[] scratchBase = base.dtype() == DType.F16 ? new float[cols] : null;
            float[] scratchFinetuned = base.dtype() == DType.F16 ? new float[cols] : null;
            for (int row = task * ROWS_PER_TASK; row < end; row++) {
                double sum = switch (base.dtype()) {
                    case BF16 -> rowBf16(base.data(), finetuned.data(), row, cols, signs, bytesPerRow);
                    case F32 -> rowF32(base.data(), finetuned.data(), row, cols, signs, bytesPerRow);
                    case F16 -> rowF16(base, finetuned, row, cols, signs, bytesPerRow, scratchBase, scratchFinetuned);
                    default -> throw new BitDeltaException(base.name() + ": cannot compress a " + base.dtype() + " matrix");
                };
                if (!Double.isFinite(sum)) {
                    throw nonFinite(base, finetuned, row, cols);
                }
                rowSums[row] = sum;
            }
        });
        return rowSums;
    }

    private static double rowBf16(MemorySegment base, MemorySegment finetuned, int row, int cols,
                                  MemorySegment signs, int bytesPerRow) {
        long rowOffset = (long) row * cols * 2;
        long signOffset = (long) row * bytesPerRow;
        // Σ|d| in double lanes: the float deltas are exact, so the sum barely depends on the order of additions.
        DoubleVector low = DoubleVector.zero(DOUBLES);
        DoubleVector high = DoubleVector.zero(DOUBLES);
        int col = 0;
        int vectorEnd = cols - cols % LANES;
        for (; col < vectorEnd; col += LANES) {
            FloatVector baseValues = widenBf16(base, rowOffset + col * 2L);
            FloatVector finetunedValues = widenBf16(finetuned, rowOffset + col * 2L);
            FloatVector delta = finetunedValues.sub(baseValues);
            storeSigns(delta.compare(VectorOperators.GE, 0f), signs, signOffset + (col >>> 3));
            FloatVector magnitude = delta.abs();
            low = low.add(magnitude.convertShape(VectorOperators.F2D, DOUBLES, 0));
            high = high.add(magnitude.convertShape(VectorOperators.F2D, DOUBLES, 1));
        }
        double total = low.add(high).reduceLanes(VectorOperators.ADD);
        for (; col < cols; col++) {
            float baseValue = Float.intBitsToFloat((base.get(SHORT_LE, rowOffset + col * 2L) & 0xFFFF) << 16);
            float finetunedValue = Float.intBitsToFloat((finetuned.get(SHORT_LE, rowOffset + col * 2L) & 0xFFFF) << 16);
            total += scalarSign(finetunedValue - baseValue, signs, signOffset, col);
        }
        return total;
    }

    private static double rowF32(MemorySegment base, MemorySegment finetuned, int row, int cols,
                                 MemorySegment signs, int bytesPerRow) {
        long rowOffset = (long) row * cols * 4;
        long signOffset = (long) row * bytesPerRow;
        // Σ|d| in double lanes: the float deltas are exact, so the sum barely depends on the order of additions.
        DoubleVector low = DoubleVector.zero(DOUBLES);
        DoubleVector high = DoubleVector.zero(DOUBLES);
        int col = 0;
        int vectorEnd = cols - cols % LANES;
        for (; col < vectorEnd; col += LANES) {
            FloatVector baseValues = FloatVector.fromMemorySegment(FLOATS, base, rowOffset + col * 4L, ByteOrder.LITTLE_ENDIAN);
            FloatVector finetunedValues = FloatVector.fromMemorySegment(FLOATS, finetuned, rowOffset + col * 4L, ByteOrder.LITTLE_ENDIAN);
            FloatVector delta = finetunedValues.sub(baseValues);
            storeSigns(delta.compare(VectorOperators.GE, 0f), signs, signOffset + (col >>> 3));
            FloatVector magnitude = delta.abs();
            low = low.add(magnitude.convertShape(VectorOperators.F2D, DOUBLES, 0));
            high = high.add(magnitude.convertShape(VectorOperators.F2D, DOUBLES, 1));
        }
        double total = low.add(high).reduceLanes(VectorOperators.ADD);
        for (; col < cols; col++) {
            float delta = finetuned.get(FLOAT_LE, rowOffset + col * 4L) - base.get(FLOAT_LE, rowOffset + col * 4L);
            total += scalarSign(delta, signs, signOffset, col);
        }
        return total;
    }

    private static double rowF16(Tensor base, Tensor finetuned, int row, int cols, MemorySegment signs,
                                 int bytesPerRow, float[] baseRow, float[] finetunedRow) {
        long start = (long) row * cols;
        for (int col = 0; col < cols; col++) {
            baseRow[col] = Float.float16ToFloat(base.data().get(SHORT_LE, (start + col) * 2));
            finetunedRow[col] = Float.float16ToFloat(finetuned.data().get(SHORT_LE, (start + col) * 2));
        }
        long signOffset = (long) row * bytesPerRow;
        double total = 0;
        for (int col = 0; col < cols; col++) {
            total += scalarSign(finetunedRow[col] - baseRow[col], signs, signOffset, col);
        }
        return total;
    }

    private static FloatVector widenBf16(MemorySegment segment, long offset) {
        ShortVector raw = ShortVector.fromMemorySegment(SHORTS, segment, offset, ByteOrder.LITTLE_ENDIAN);
        IntVector widened = (IntVector) raw.convertShape(VectorOperators.S2I, INTS, 0);
        return widened.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    private static void storeSigns(VectorMask<Float> nonNegative, MemorySegment signs, long byteOffset) {
        long bits = nonNegative.toLong();
        for (int b = 0; b < LANES / 8; b++) {
            signs.set(ValueLayout.JAVA_BYTE, byteOffset + b, (byte) (bits >>> (8 * b)));
        }
    }

    /** Sets or clears one sign bit (the tail and the F16 path) and returns |delta|. */
    private static double scalarSign(float delta, MemorySegment signs, long signOffset, int col) {
        long byteIndex = signOffset + (col >>> 3);
        byte current = signs.get(ValueLayout.JAVA_BYTE, byteIndex);
        int bit = 1 << (col & 7);
        signs.set(ValueLayout.JAVA_BYTE, byteIndex, (byte) (delta >= 0 ? current | bit : current & ~bit));
        return Math.abs(delta);
    }

    private static BitDeltaException nonFinite(Tensor base, Tensor finetuned, int row, int cols) {
        long start = (long) row * cols;
        for (int col = 0; col < cols; col++) {
            float baseValue = base.getFloat(start + col);
            float finetunedValue = finetuned.getFloat(start + col);
            if (!Float.isFinite(baseValue) || !Float.isFinite(finetunedValue)) {
                String which = !Float.isFinite(finetunedValue) ? "fine-tune" : "base";
                float value = !Float.isFinite(finetunedValue) ? finetunedValue : baseValue;
                return new BitDeltaException("tensor '" + base.name() + "' of the " + which + " holds " + value
                        + " at [" + row + ", " + col + "]: weights must be finite");
            }
        }
        return new BitDeltaException("tensor '" + base.name() + "': the delta overflows in row " + row);
    }

    /** Whether every element of a float tensor is finite; throws naming the first offender otherwise. */
    public static void requireFinite(Tensor tensor, String owner) {
        if (!tensor.dtype().isFloatingPoint() || tensor.dtype() == DType.F64) {
            return;
        }
        long count = tensor.elementCount();
        for (long i = 0; i < count; i++) {
            float value = tensor.getFloat(i);
            if (!Float.isFinite(value)) {
                throw new BitDeltaException("tensor '" + tensor.name() + "' of the " + owner + " holds " + value
                        + " at flat index " + i + ": weights must be finite");
            }
        }
    }
}
