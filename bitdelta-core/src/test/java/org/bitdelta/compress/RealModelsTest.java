package org.bitdelta.compress;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.internal.safetensors.ModelWeights;
import org.bitdelta.tensor.Tensor;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Compression of the real model pairs: every scale and sign against an independent computation, and file sizes.
 * The bundled stories260K pairs here; the tinyllama pair (BF16) in {@link RealModelsAcceptanceTest}.
 */
class RealModelsTest {
    @TempDir
    static Path folder;

    static Stream<Arguments> pairs() {
        return Stream.of(
                Arguments.of("stories260K-ft-alice", TestData.bundledModel("stories260K"), TestData.bundledModel("stories260K-ft-alice")),
                Arguments.of("stories260K-ft-shakespeare", TestData.bundledModel("stories260K"), TestData.bundledModel("stories260K-ft-shakespeare")));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("pairs")
    void scalesAndSignsMatchAnIndependentComputation(String name, Path base, Path finetuned) {
        checkScalesAndSigns(base, finetuned);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("pairs")
    void fileSizeIsTheSumOfItsParts(String name, Path base, Path finetuned) throws IOException {
        checkFileSize(folder.resolve(name + ".bitdelta"), base, finetuned);
    }

    static void checkScalesAndSigns(Path base, Path finetuned) {
        for (boolean perRow : List.of(false, true)) {
            try (DeltaModel delta = BitDelta.compress(base, finetuned, CompressOptions.defaults().perRowScales(perRow));
                 ModelWeights baseWeights = ModelWeights.open(base); ModelWeights tunedWeights = ModelWeights.open(finetuned)) {
                int projections = 0;
                for (String tensorName : baseWeights.names()) {
                    boolean projection = tensorName.matches(".*\\.(q|k|v|o|gate|up|down)_proj\\.weight");
                    Tensor baseTensor = baseWeights.tensor(tensorName);
                    Tensor tunedTensor = tunedWeights.tensor(tensorName);
                    if (!projection) {
                        boolean differs = baseTensor.data().mismatch(tunedTensor.data()) != -1;
                        assertEquals(differs, delta.tensors().containsKey(tensorName), tensorName + " kept whole iff it differs");
                        assertFalse(delta.hasMatrix(tensorName), tensorName);
                        continue;
                    }
                    projections++;
                    BinaryDelta matrix = delta.matrix(tensorName);
                    float[] baseValues = Independent.floats(baseTensor);
                    float[] tunedValues = Independent.floats(tunedTensor);
                    int rows = matrix.rows();
                    int cols = matrix.cols();
                    if (perRow) {
                        for (int row = 0; row < rows; row++) {
                            assertEquals(Independent.meanAbsoluteDeltaOfRow(baseValues, tunedValues, row, cols), matrix.scale(row),
                                    tensorName + " row " + row);
                        }
                    } else {
                        assertEquals(Independent.meanAbsoluteDelta(baseValues, tunedValues), matrix.scale(0), tensorName);
                    }
                    for (int index = 0; index < baseValues.length; index++) {
                        int expected = tunedValues[index] - baseValues[index] >= 0 ? 1 : -1;
                        if (expected != matrix.sign(index / cols, index % cols)) {
                            throw new AssertionError(tensorName + ": sign of element " + index + " is wrong");
                        }
                    }
                }
                assertEquals(projections, delta.matrices().size());
                assertTrue(projections >= 7, "found " + projections + " projections");
            }
        }
    }

    static void checkFileSize(Path file, Path base, Path finetuned) throws IOException {
        long expectedTensorBytes = 0;
        try (DeltaModel delta = BitDelta.compress(base, finetuned)) {
            for (BinaryDelta matrix : delta.matrices()) {
                expectedTensorBytes += (long) matrix.rows() * ((matrix.cols() + 7) / 8) + 4;
            }
            for (Tensor tensor : delta.tensors().values()) {
                expectedTensorBytes += tensor.elementCount() * tensor.dtype().byteSize();
            }
            delta.save(file, true);
        }
        long headerLength;
        try (FileChannel channel = FileChannel.open(file)) {
            ByteBuffer buffer = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            channel.read(buffer, 0);
            headerLength = buffer.getLong(0);
        }
        assertEquals(8 + headerLength + expectedTensorBytes, Files.size(file));
        assertEquals(0, (8 + headerLength) % 8, "data section 8-byte aligned");
        try (DeltaModel loaded = DeltaModel.load(file)) {
            assertEquals(expectedTensorBytes, loaded.tensorBytes());
            assertEquals("bitdelta", loaded.metadata().get("format"));
            assertTrue(loaded.baseFingerprint().startsWith("sha256:"));
        }
    }
}
