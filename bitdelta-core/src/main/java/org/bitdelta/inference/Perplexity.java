package org.bitdelta.inference;

import org.bitdelta.BitDeltaException;
import org.bitdelta.ProgressListener;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

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
    /** Rows per forward pass: windows are batched as rows up to this many tokens, which bounds the activations. */
    private static final int ROWS_PER_BATCH = 2048;
    /** Floats of logits per forward pass (256 MiB): a 128K vocabulary gets fewer windows per pass. */
    private static final long LOGITS_PER_BATCH = 1L << 26;
    private static final VectorSpecies<Float> LANES = FloatVector.SPECIES_PREFERRED;

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
        return evaluate(model, tenant, tokens, window, maxWindows, ProgressListener.NONE);
    }

    /** As {@link #evaluate(DecoderModel, String, int[], int, int)}, reporting windows done as stage "perplexity". */
    public static Result evaluate(DecoderModel model, String tenant, int[] tokens, int window, int maxWindows,
                                  ProgressListener progress) {
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
        // Batch windows as rows, bounded by rows (activations) and by the logits they produce (rows · vocabulary).
        int windowsPerBatch = (int) Math.max(1, Math.min(ROWS_PER_BATCH / window, LOGITS_PER_BATCH / ((long) window * vocabulary)));
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
            progress.onProgress("perplexity", first + count, windows);
        }
        long scored = (long) windows * (window - 1);
        double meanLoss = totalLoss / scored;
        return new Result(Math.exp(meanLoss), meanLoss, windows, scored);
    }

    /**
     * −log softmax(logits)[target]: exponentials in float32 vector lanes (a vocabulary's worth per token is most of
     * the loss's cost), their sum and the logarithm in double.
     */
    static double crossEntropy(float[] logits, int offset, int vocabulary, int target) {
        int vectorEnd = LANES.loopBound(vocabulary);
        float max = Float.NEGATIVE_INFINITY;
        if (vectorEnd > 0) {
            FloatVector lanes = FloatVector.broadcast(LANES, Float.NEGATIVE_INFINITY);
            for (int v = 0; v < vectorEnd; v += LANES.length()) {
                lanes = lanes.max(FloatVector.fromArray(LANES, logits, offset + v));
            }
            max = lanes.reduceLanes(VectorOperators.MAX);
        }
        for (int v = vectorEnd; v < vocabulary; v++) {
            max = Math.max(max, logits[offset + v]);
        }
        double sum = 0;
        for (int v = 0; v < vectorEnd; v += LANES.length()) {
            sum += FloatVector.fromArray(LANES, logits, offset + v).sub(max).lanewise(VectorOperators.EXP).reduceLanes(VectorOperators.ADD);
        }
        for (int v = vectorEnd; v < vocabulary; v++) {
            sum += Math.exp(logits[offset + v] - max);
        }
        return Math.log(sum) + max - logits[offset + target];
    }
}
