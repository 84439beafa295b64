package org.bitdelta.compress;

import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

/**
 * Reference arithmetic written separately from the library (no shared helpers), so tests compare the library
 * against an independent computation.
 */
final class Independent {
    private Independent() {
    }

    /** mean |ft − base| over the whole matrix, in double. */
    static float meanAbsoluteDelta(float[] base, float[] finetuned) {
        double sum = 0;
        for (int i = 0; i < base.length; i++) {
            sum += Math.abs((double) (finetuned[i] - base[i]));
        }
        return (float) (sum / base.length);
    }

    /** mean |ft − base| over row {@code row} of a [rows, cols] matrix. */
    static float meanAbsoluteDeltaOfRow(float[] base, float[] finetuned, int row, int cols) {
        double sum = 0;
        for (int col = 0; col < cols; col++) {
            int index = row * cols + col;
            sum += Math.abs((double) (finetuned[index] - base[index]));
        }
        return (float) (sum / cols);
    }

    /** The nearest bfloat16 (ties to even), found by comparing the two neighbours in double. */
    static float roundToBfloat16(float value) {
        int bits = Float.floatToRawIntBits(value);
        float down = Float.intBitsToFloat(bits & 0xFFFF0000);
        float up = Float.intBitsToFloat((bits & 0xFFFF0000) + 0x10000);
        double distanceDown = Math.abs((double) value - down);
        double distanceUp = Math.abs((double) up - value);
        if (distanceDown < distanceUp) {
            return down;
        }
        if (distanceUp < distanceDown) {
            return up;
        }
        return ((Float.floatToRawIntBits(down) >>> 16) & 1) == 0 ? down : up;
    }

    /** The value a merged element must hold: float(base) ± scale, rounded to the dtype. */
    static float merged(float base, boolean positive, float scale, DType dtype) {
        float sum = base + (positive ? scale : -scale);
        return switch (dtype) {
            case F32 -> sum;
            case BF16 -> roundToBfloat16(sum);
            case F16 -> Float.float16ToFloat(Float.floatToFloat16(sum));
            default -> throw new IllegalArgumentException(dtype.toString());
        };
    }

    static float[] floats(Tensor tensor) {
        float[] values = new float[Math.toIntExact(tensor.elementCount())];
        for (int i = 0; i < values.length; i++) {
            values[i] = tensor.getFloat(i);
        }
        return values;
    }
}
