package org.bitdelta.internal.model;

import org.bitdelta.spi.TensorBackend;
import org.bitdelta.spi.TensorBackends;
import org.bitdelta.testing.TestData;
import org.bitdelta.testing.TestTokens;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The KV cache: feeding a sequence in chunks (a prefill, then one token at a time, across mistral-tiny's sliding
 * window) gives the logits of one pass over the whole sequence.
 */
class DecoderCacheTest {
    private static final long SEED = 77L;

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"mistral-tiny", "stories260K"})
    void chunkedDecodingEqualsOnePass(String modelName) {
        try (TensorBackend backend = TensorBackends.createDefault();
             Decoder decoder = Decoder.load(TestData.bundledModel(modelName), backend, false)) {
            int vocabulary = decoder.config().vocabularySize();
            SplittableRandom random = new SplittableRandom(SEED);
            int[] tokens = TestTokens.random(random, 60, vocabulary);
            Sequence whole = decoder.newSequence("base");
            float[] expected = decoder.forward(List.of(whole), List.of(tokens), true).getFirst();
            assertEquals(tokens.length, whole.length());

            // Chunks 7, 1, 1, ..., 1, 20, 1, ... with a second sequence in the same batches at other positions.
            Sequence chunked = decoder.newSequence("base");
            Sequence other = decoder.newSequence("base");
            List<float[]> rows = new ArrayList<>();
            int position = 0;
            while (position < tokens.length) {
                int length = position == 0 ? 7 : position == 25 ? 20 : 1;
                length = Math.min(length, tokens.length - position);
                int[] chunk = java.util.Arrays.copyOfRange(tokens, position, position + length);
                int[] otherChunk = {3 + random.nextInt(vocabulary - 3), 5};
                List<float[]> out = decoder.forward(List.of(other, chunked), List.of(otherChunk, chunk), true);
                rows.add(out.get(1));
                position += length;
                if (other.length() + 2 > decoder.config().contextLength()) {
                    other.close();
                    other = decoder.newSequence("base");
                }
            }
            float[] actual = new float[expected.length];
            int offset = 0;
            for (float[] row : rows) {
                System.arraycopy(row, 0, actual, offset, row.length);
                offset += row.length;
            }
            assertEquals(expected.length, offset);
            double difference = 0;
            double norm = 0;
            for (int i = 0; i < expected.length; i++) {
                difference += (actual[i] - expected[i]) * (double) (actual[i] - expected[i]);
                norm += expected[i] * (double) expected[i];
            }
            double error = Math.sqrt(difference / norm);
            assertTrue(error < 1e-6, modelName + ": chunked vs one pass relative error " + error + " (seed " + SEED + ")");
        }
    }
}
