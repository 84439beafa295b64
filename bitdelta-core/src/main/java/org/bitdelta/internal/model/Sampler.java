package org.bitdelta.internal.model;

import java.util.Arrays;

/**
 * Picks a token from one row of logits: the reference for every backend's sampling (see
 * {@link org.bitdelta.spi.Sampling}). Greedy at temperature 0 (argmax, ties to the lowest id). Otherwise, as
 * OpenAI-style servers do: logits / temperature, keep the top-k (0: all), softmax, keep the smallest set of most
 * likely tokens whose probability reaches top-p (1: all; ties in probability go to the lower id), renormalize,
 * and take the token where the cumulative probability first exceeds {@code uniform}.
 */
public final class Sampler {
    private Sampler() {
    }

    public static int sample(float[] logits, int offset, int vocabulary, float temperature, int topK, float topP, double uniform) {
        int best = argmax(logits, offset, vocabulary);
        if (temperature == 0) {
            return best;
        }
        double max = logits[offset + best];
        // Candidates in descending probability (ties: lower id first), so that top-k and top-p are prefixes.
        Integer[] order = new Integer[vocabulary];
        for (int v = 0; v < vocabulary; v++) {
            order[v] = v;
        }
        Arrays.sort(order, (a, b) -> {
            int byLogit = Float.compare(logits[offset + b], logits[offset + a]);
            return byLogit != 0 ? byLogit : Integer.compare(a, b);
        });
        int kept = topK > 0 ? Math.min(topK, vocabulary) : vocabulary;
        double[] weights = new double[kept];
        double sum = 0;
        for (int i = 0; i < kept; i++) {
            weights[i] = Math.exp((logits[offset + order[i]] - max) / temperature);
            sum += weights[i];
        }
        if (topP < 1) {
            double cumulative = 0;
            int count = 0;
            while (count < kept) {
                cumulative += weights[count] / sum;
                count++;
                if (cumulative >= topP) {
                    break;
                }
            }
            kept = count;
            sum = 0;
            for (int i = 0; i < kept; i++) {
                sum += weights[i];
            }
        }
        double target = uniform * sum;
        double cumulative = 0;
        for (int i = 0; i < kept; i++) {
            cumulative += weights[i];
            if (target < cumulative) {
                return order[i];
            }
        }
        return order[kept - 1]; // rounding left target at the very top of the sum
    }

    /** Index of the largest logit (the first of equal ones). */
    public static int argmax(float[] logits, int offset, int vocabulary) {
        int best = 0;
        for (int v = 1; v < vocabulary; v++) {
            if (logits[offset + v] > logits[offset + best]) {
                best = v;
            }
        }
        return best;
    }
}
