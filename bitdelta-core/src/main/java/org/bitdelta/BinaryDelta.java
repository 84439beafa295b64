package org.bitdelta;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Objects;

/**
 * The 1-bit delta of one projection matrix: {@code W_ft ≈ W_base + scale ⊙ S} with S in {+1, −1}.
 *
 * <p>{@code signs} holds U8 [rows, ceil(cols / 8)], row-major; bit i (LSB first) of byte b of a row is the sign of
 * column 8b + i: 1 means +scale, 0 means −scale; padding bits are 0. {@code scales} holds one value (per matrix)
 * or one per output row.
 */
public final class BinaryDelta {
    private final String name;
    private final int rows;
    private final int cols;
    private final MemorySegment signs;
    private final float[] scales;

    public BinaryDelta(String name, int rows, int cols, MemorySegment signs, float[] scales) {
        this.name = Objects.requireNonNull(name, "name");
        if (rows <= 0 || cols <= 0) {
            throw new IllegalArgumentException(name + ": shape [" + rows + ", " + cols + "] must be positive");
        }
        if (signs.byteSize() != (long) rows * bytesPerRow(cols)) {
            throw new IllegalArgumentException(name + ": " + signs.byteSize() + " sign bytes, expected rows * ceil(cols/8) = "
                    + (long) rows * bytesPerRow(cols));
        }
        if (scales.length != 1 && scales.length != rows) {
            throw new IllegalArgumentException(name + ": " + scales.length + " scales, expected 1 or rows = " + rows);
        }
        for (int i = 0; i < scales.length; i++) {
            if (!Float.isFinite(scales[i])) {
                throw new IllegalArgumentException(name + ": scale " + i + " is " + scales[i]);
            }
        }
        this.rows = rows;
        this.cols = cols;
        this.signs = signs;
        this.scales = scales.clone();
    }

    public static int bytesPerRow(int cols) {
        return (cols + 7) >>> 3;
    }

    public String name() {
        return name;
    }

    /** Output features (rows of HF {@code Linear.weight}). */
    public int rows() {
        return rows;
    }

    /** Input features. */
    public int cols() {
        return cols;
    }

    public int bytesPerRow() {
        return bytesPerRow(cols);
    }

    /** The packed signs, U8 [rows, ceil(cols/8)]; read-only by contract. */
    public MemorySegment signs() {
        return signs;
    }

    /** True when there is one scale per output row. */
    public boolean perRowScales() {
        return scales.length > 1;
    }

    /** A copy of the scales: length 1 (per matrix) or rows. */
    public float[] scales() {
        return scales.clone();
    }

    /** The scale applied to output row {@code row}. */
    public float scale(int row) {
        return scales.length == 1 ? scales[0] : scales[row];
    }

    /** +1 or −1: the sign of element (row, col). */
    public int sign(int row, int col) {
        byte packed = signs.get(ValueLayout.JAVA_BYTE, (long) row * bytesPerRow() + (col >>> 3));
        return ((packed >>> (col & 7)) & 1) != 0 ? 1 : -1;
    }

    /** The same signs with other scales (for distillation). */
    public BinaryDelta withScales(float[] newScales) {
        return new BinaryDelta(name, rows, cols, signs, newScales);
    }

    @Override
    public String toString() {
        return "BinaryDelta[" + name + " " + rows + "x" + cols + ", " + (scales.length == 1 ? "scale " + scales[0] : rows + " row scales") + "]";
    }
}
