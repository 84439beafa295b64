package org.bitdelta.spi;

import org.bitdelta.BinaryDelta;
import org.bitdelta.internal.cpu.CpuDecoderDevice;
import org.bitdelta.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * A compute backend: the multi-tenant products on heap arrays (what {@link org.bitdelta.DeltaLinear} calls), and
 * {@link #openDecoder}, the device side of a whole decoder step ({@link DecoderDevice}). Weights are
 * {@link Tensor}s (F32, F16 or BF16, HF layout [out, in]) that the backend may cache on its device.
 */
public interface TensorBackend extends AutoCloseable {

    /** The provider's name, as given to {@code -Dbitdelta.backend}. */
    String name();

    /**
     * Dense product: {@code y[r, m] = Σ_k x[r, k] · weight[m, k]}.
     *
     * @param x      F32 [rows, k]
     * @param rows   number of rows of x and y
     * @param weight F32/F16/BF16 [m, k]
     * @param y      F32 [rows, m], overwritten
     */
    void matmul(float[] x, int rows, Tensor weight, float[] y);

    /**
     * Multi-tenant BitDelta product: {@code y[r, m] = Σ_k x[r, k] · (base[m, k] + scale_t(m) · S_t[m, k])} where
     * {@code t = tenantOfRow[r]}; a row whose tenant is −1 gets the base product alone. The packed signs are read
     * directly, never expanded to floats in memory.
     *
     * @param x           F32 [rows, k]
     * @param rows        number of rows
     * @param base        F32/F16/BF16 [m, k]
     * @param deltas      tenant index → that tenant's delta for this matrix ([m, k]); entries may be null when
     *                    no row refers to them
     * @param tenantOfRow int [rows], each −1 or an index into {@code deltas}
     * @param y           F32 [rows, m], overwritten
     */
    void deltaMatmul(float[] x, int rows, Tensor base, List<BinaryDelta> deltas, int[] tenantOfRow, float[] y);

    /**
     * Optional: compresses one matrix on this backend's device. Writes the packed signs of
     * {@code finetuned − base} (computed in F32) into {@code signs} (U8 [rows, ceil(cols/8)], the .bitdelta layout:
     * bit i, LSB first, of byte b of a row is the sign of column 8b+i, 1 for Δ >= 0, padding bits 0) and returns
     * the mean |Δ| scales, bit-identical to the CPU compressor: F32 [rows] (per row) or F32 [1] (per matrix).
     * Returns null where this backend does not compress this pair (the caller then compresses on the CPU).
     *
     * @param base      F32/F16/BF16 [rows, cols]
     * @param finetuned same dtype and shape as {@code base}
     * @param signs     U8 [rows, ceil(cols / 8)], overwritten
     */
    default float[] compressMatrix(Tensor base, Tensor finetuned, MemorySegment signs, boolean perRowScales) {
        return null;
    }

    /**
     * Opens the device side of a decoder over {@code spec}'s weights: the buffers and operations of its steps.
     * The default runs every operation on the Java heap ({@code CpuDecoderDevice}) with this backend's products.
     */
    default DecoderDevice openDecoder(DecoderSpec spec) {
        return new CpuDecoderDevice(spec, this, true);
    }

    /** Releases what the backend holds (device memory, threads). The default holds nothing. */
    @Override
    default void close() {
    }
}
