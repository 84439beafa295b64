package org.bitdelta.internal.cpu;

import org.bitdelta.BinaryDelta;
import org.bitdelta.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;

/**
 * The scalar reference for every product: plain loops, float accumulation in input order. It is the oracle the
 * other backends are tested against, and it never goes away.
 */
public final class ScalarKernels {
    private ScalarKernels() {
    }

    /** y[r, m] = Σ_k x[r, k] · weight[m, k]. */
    public static void matmul(float[] x, int rows, Tensor weight, float[] y) {
        int outputs = Math.toIntExact(weight.dimension(0));
        int inputs = Math.toIntExact(weight.dimension(1));
        float[] weightRow = new float[inputs];
        for (int m = 0; m < outputs; m++) {
            loadRow(weight, m, weightRow);
            for (int r = 0; r < rows; r++) {
                float sum = 0;
                int offset = r * inputs;
                for (int k = 0; k < inputs; k++) {
                    sum += x[offset + k] * weightRow[k];
                }
                y[r * outputs + m] = sum;
            }
        }
    }

    /** y = x · (base + scale_t ⊙ S_t)ᵀ per row r with t = tenantOfRow[r] (−1: base only). */
    public static void deltaMatmul(float[] x, int rows, Tensor base, List<BinaryDelta> deltas, int[] tenantOfRow, float[] y) {
        matmul(x, rows, base, y);
        int outputs = Math.toIntExact(base.dimension(0));
        int inputs = Math.toIntExact(base.dimension(1));
        for (int r = 0; r < rows; r++) {
            int tenant = tenantOfRow[r];
            if (tenant < 0) {
                continue;
            }
            BinaryDelta delta = deltas.get(tenant);
            MemorySegment signs = delta.signs();
            int bytesPerRow = delta.bytesPerRow();
            int offset = r * inputs;
            for (int m = 0; m < outputs; m++) {
                float sum = 0;
                long rowStart = (long) m * bytesPerRow;
                for (int k = 0; k < inputs; k++) {
                    int bit = (signs.get(ValueLayout.JAVA_BYTE, rowStart + (k >>> 3)) >>> (k & 7)) & 1;
                    sum += bit != 0 ? x[offset + k] : -x[offset + k];
                }
                y[r * outputs + m] += delta.scale(m) * sum;
            }
        }
    }

    /** Row {@code row} of a [m, k] F32/F16/BF16 weight, as floats. */
    public static void loadRow(Tensor weight, int row, float[] target) {
        int inputs = target.length;
        long start = (long) row * inputs;
        for (int k = 0; k < inputs; k++) {
            target[k] = weight.getFloat(start + k);
        }
    }
}
