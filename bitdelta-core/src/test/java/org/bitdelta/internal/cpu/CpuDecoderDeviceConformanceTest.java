package org.bitdelta.internal.cpu;

import org.bitdelta.tensor.DType;
import org.bitdelta.testing.DecoderDeviceConformance;
import org.bitdelta.testing.DecoderDeviceConformance.Shape;
import org.bitdelta.testing.TestSeeds;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.List;

/** The vectorized CPU decoder device against the scalar oracle, operation by operation. */
class CpuDecoderDeviceConformanceTest {

    static List<Shape> shapes() {
        return List.of(
                // GQA ratio 1, no window, untied
                new Shape(DType.F32, 64, 96, 8, 8, 8, 33, 64, 0, false, 2, 16, 3, 4),
                // GQA ratio 4, window shorter than the context, tied, q width != hidden, tiny vocabulary, blocks of 4
                new Shape(DType.BF16, 72, 100, 8, 2, 16, 7, 48, 5, true, 2, 4, 3, 5),
                // GQA ratio 8, window longer than the context, a vocabulary past a tile edge
                new Shape(DType.F16, 136, 200, 16, 2, 8, 4097, 40, 64, false, 1, 16, 2, 3),
                // one token per block, window 3, one-word vocabulary
                new Shape(DType.F32, 32, 48, 4, 4, 8, 1, 24, 3, false, 2, 1, 2, 6));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("shapes")
    void everyOperationMatchesTheScalarOracle(Shape shape) {
        long seed = TestSeeds.seed("cpu decoder device conformance, " + shape);
        try (VectorCpuBackend vector = new VectorCpuBackend(2); ScalarCpuBackend scalar = new ScalarCpuBackend()) {
            new DecoderDeviceConformance(shape, seed).compare(vector, scalar, 1e-5);
        }
    }
}
