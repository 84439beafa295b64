package org.bitdelta.nd4j;

import org.bitdelta.DeltaModel;
import org.bitdelta.inference.Tokenizer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * Perplexity of base + delta by the protocol of reference.json (BOS-first token ids of the whole file,
 * non-overlapping windows from the start, loss of tokens 1..window−1 of each window, the first maxWindows
 * windows, exp of the mean), computed with the student graph: fast on the CPU, and checked against the
 * reference's initial-scale perplexities by the tests that use it.
 */
final class PerplexityOnNd4j {
    private static final int WINDOWS_PER_BATCH = 8;

    private PerplexityOnNd4j() {
    }

    static double evaluate(Path base, Path finetuned, DeltaModel delta, Path text, int window, int maxWindows) {
        int[] tokens;
        try (Tokenizer tokenizer = Tokenizer.load(finetuned)) {
            tokens = tokenizer.encode(Files.readString(text, StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        int windows = Math.min(maxWindows, tokens.length / window);
        int batch = Math.min(WINDOWS_PER_BATCH, windows);
        double totalLoss = 0;
        try (DistillationModel model = DistillationModel.open(base, finetuned, delta, DataType.FLOAT, batch, window)) {
            int vocabulary = model.config().vocabularySize();
            for (int first = 0; first < windows; first += batch) {
                int count = Math.min(batch, windows - first);
                int[][] ids = new int[batch][];
                for (int b = 0; b < batch; b++) {
                    int w = first + Math.min(b, count - 1); // pad a last, partial batch with a repeated window
                    ids[b] = Arrays.copyOfRange(tokens, w * window, (w + 1) * window);
                }
                INDArray logits = model.studentLogits(ids);
                float[] values = logits.data().asFloat();
                for (int b = 0; b < count; b++) {
                    for (int position = 0; position + 1 < window; position++) {
                        int offset = (b * window + position) * vocabulary;
                        totalLoss += crossEntropy(values, offset, vocabulary, ids[b][position + 1]);
                    }
                }
            }
        }
        return Math.exp(totalLoss / ((double) windows * (window - 1)));
    }

    private static double crossEntropy(float[] logits, int offset, int vocabulary, int target) {
        double max = Double.NEGATIVE_INFINITY;
        for (int v = 0; v < vocabulary; v++) {
            max = Math.max(max, logits[offset + v]);
        }
        double sum = 0;
        for (int v = 0; v < vocabulary; v++) {
            sum += Math.exp(logits[offset + v] - max);
        }
        return Math.log(sum) + max - logits[offset + target];
    }
}
