package org.bitdelta.internal.model;

import org.bitdelta.spi.Sampling;
import org.junit.jupiter.api.Test;

import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

/** {@link Sampler}: greedy ties, the softmax at a temperature, top-k and top-p, draws that depend on (seed, index) only. */
class SamplerTest {
    private static final long SEED = 424242L;
    /** p ∝ 1, 2, 4, 8 at temperature 1. */
    private static final float[] LOGITS = {0f, (float) Math.log(2), (float) Math.log(4), (float) Math.log(8)};

    @Test
    void greedyPicksTheFirstOfEqualMaxima() {
        assertEquals(1, Sampler.sample(new float[]{0f, 3f, 3f, -1f}, 0, 4, 0, 0, 1, 0.99));
        assertEquals(1, Sampler.sample(new float[]{9f, 0f, 3f, 3f, -1f}, 1, 4, 0, 0, 1, 0.5), "within the row at the offset: ids count from it");
    }

    /** Counts of each token over {@code draws} draws with uniform(SEED, draw). */
    private static int[] counts(double temperature, int topK, double topP, int draws) {
        int[] counts = new int[LOGITS.length];
        for (int draw = 0; draw < draws; draw++) {
            counts[Sampler.sample(LOGITS, 0, LOGITS.length, (float) temperature, topK, (float) topP, Sampling.uniform(SEED, draw))]++;
        }
        return counts;
    }

    private static void assertDistribution(double[] expected, int[] counts, String what) {
        int draws = Arrays.stream(counts).sum();
        for (int v = 0; v < expected.length; v++) {
            double observed = counts[v] / (double) draws;
            // 5 standard deviations of a binomial proportion: fails only for a wrong distribution.
            double tolerance = 5 * Math.sqrt(Math.max(expected[v] * (1 - expected[v]), 1e-12) / draws);
            assertEquals(expected[v], observed, tolerance, what + ", token " + v + ", counts " + Arrays.toString(counts) + " (seed " + SEED + ")");
        }
    }

    @Test
    void samplingFollowsTheSoftmaxAtTheTemperature() {
        for (double temperature : new double[]{1.0, 2.0}) {
            double[] weights = new double[LOGITS.length];
            double total = 0;
            for (int v = 0; v < LOGITS.length; v++) {
                weights[v] = Math.exp(LOGITS[v] / temperature);
                total += weights[v];
            }
            for (int v = 0; v < LOGITS.length; v++) {
                weights[v] /= total;
            }
            assertDistribution(weights, counts(temperature, 0, 1, 60_000), "T=" + temperature);
        }
    }

    @Test
    void topKAndTopPKeepTheMostLikelyTokens() {
        // top-k 2: tokens 3 and 2, renormalized to 8:4.
        assertDistribution(new double[]{0, 0, 1 / 3.0, 2 / 3.0}, counts(1, 2, 1, 30_000), "top_k 2");
        // top-p 0.7: 8/15 = 0.53 is not enough, with 4/15 it is 0.8: tokens 3 and 2 again.
        assertDistribution(new double[]{0, 0, 1 / 3.0, 2 / 3.0}, counts(1, 0, 0.7, 30_000), "top_p 0.7");
        assertDistribution(new double[]{0, 0, 0, 1}, counts(1, 0, 0.5, 1_000), "top_p 0.5: the top token alone");
    }

    @Test
    void aDrawDependsOnTheSeedAndItsIndexOnly() {
        assertEquals(Sampling.uniform(SEED, 17), Sampling.uniform(SEED, 17));
        assertNotEquals(Sampling.uniform(SEED, 17), Sampling.uniform(SEED, 18));
        assertNotEquals(Sampling.uniform(SEED, 17), Sampling.uniform(SEED + 1, 17));
    }
}
