package org.bitdelta.inference;

import org.bitdelta.BitDeltaException;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/**
 * Perplexity by the protocol of the project's reference numbers: the token ids of the whole text (special tokens
 * included, so BOS first), cut into non-overlapping windows of {@code window} tokens from the start (a last,
 * shorter remainder is not used); in each window the loss is the cross-entropy of tokens 1 .. window−1 given the
 * tokens before them in that window; the first {@code maxWindows} windows; perplexity = exp(mean loss).
 */
public final class Perplexity {
    /** Rows per forward pass: windows are batched as rows up to this many tokens, which bounds the memory. */
    private static final int ROWS_PER_BATCH = 2048;

    private Perplexity() {
    }

    /**
     * @param perplexity   exp(meanLoss)
     * @param meanLoss     mean cross-entropy in nats over the scored tokens
     * @param windows      windows evaluated
     * @param scoredTokens tokens whose loss was counted: windows · (window − 1)
     */
    public record Result(double perplexity, double meanLoss, int windows, long scoredTokens) {
    }

    /** Perplexity of {@code tenant} on a UTF-8 text file, tokenized with the model's tokenizer.json. */
    public static Result evaluate(DecoderModel model, String tenant, Path textFile, int window, int maxWindows) {
        String text;
        try {
            text = Files.readString(textFile, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new BitDeltaException(textFile + ": cannot be read as UTF-8 text: " + e.getMessage(), e);
        }
        return evaluate(model, tenant, model.tokenizer().encode(text), window, maxWindows);
    }

    /** Perplexity of {@code tenant} on the token ids {@code tokens}. */
    public static Result evaluate(DecoderModel model, String tenant, int[] tokens, int window, int maxWindows) {
        if (window < 2 || window > model.contextLength()) {
            throw new BitDeltaException("window " + window + " must be between 2 and the model's context of " + model.contextLength() + " tokens");
        }
        if (maxWindows < 1) {
            throw new BitDeltaException("maxWindows must be at least 1, got " + maxWindows);
        }
        int windows = Math.min(maxWindows, tokens.length / window);
        if (windows == 0) {
            throw new BitDeltaException("the text has " + tokens.length + " tokens, fewer than one window of " + window);
        }
        int vocabulary = model.vocabularySize();
        int windowsPerBatch = Math.max(1, ROWS_PER_BATCH / window);
        double totalLoss = 0;
        for (int first = 0; first < windows; first += windowsPerBatch) {
            int count = Math.min(windowsPerBatch, windows - first);
            List<int[]> batch = new ArrayList<>();
            for (int w = first; w < first + count; w++) {
                batch.add(Arrays.copyOfRange(tokens, w * window, (w + 1) * window));
            }
            List<float[]> logits = model.logits(Collections.nCopies(count, tenant), batch);
            for (int b = 0; b < count; b++) {
                int[] ids = batch.get(b);
                float[] rows = logits.get(b);
                for (int position = 0; position + 1 < window; position++) {
                    totalLoss += crossEntropy(rows, position * vocabulary, vocabulary, ids[position + 1]);
                }
            }
        }
        long scored = (long) windows * (window - 1);
        double meanLoss = totalLoss / scored;
        return new Result(Math.exp(meanLoss), meanLoss, windows, scored);
    }

    /** −log softmax(logits)[target], in double precision. */
    static double crossEntropy(float[] logits, int offset, int vocabulary, int target) {
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
