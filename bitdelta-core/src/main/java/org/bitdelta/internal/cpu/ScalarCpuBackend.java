package org.bitdelta.internal.cpu;

import org.bitdelta.BinaryDelta;
import org.bitdelta.spi.DecoderDevice;
import org.bitdelta.spi.DecoderSpec;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.tensor.Tensor;

import java.util.List;

/** The scalar oracle as a backend ({@code -Dbitdelta.backend=cpu-scalar}): slow, simple, always right. */
public final class ScalarCpuBackend implements TensorBackend {
    @Override
    public String name() {
        return "cpu-scalar";
    }

    @Override
    public void matmul(float[] x, int rows, Tensor weight, float[] y) {
        ScalarKernels.matmul(x, rows, weight, y);
    }

    /** The decoder with every operation as a plain loop: the oracle of the other devices. */
    @Override
    public DecoderDevice openDecoder(DecoderSpec spec) {
        return new CpuDecoderDevice(spec, this, false);
    }

    @Override
    public void deltaMatmul(float[] x, int rows, Tensor base, List<BinaryDelta> deltas, int[] tenantOfRow, float[] y) {
        ScalarKernels.deltaMatmul(x, rows, base, deltas, tenantOfRow, y);
    }
}
