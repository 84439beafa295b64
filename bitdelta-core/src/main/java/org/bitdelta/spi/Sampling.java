package org.bitdelta.spi;

/**
 * How to pick each output row's next token. Per row: temperature 0 is greedy (argmax, ties to the lowest id);
 * otherwise softmax(logits / temperature) restricted to the {@code topK} most likely tokens (0: all) and to the
 * smallest set whose probability reaches {@code topP} (1: all), drawn with the uniform number
 * {@code uniform(seed, draw)}: a request's tokens depend on its own seed and count only, not on its batch.
 *
 * @param temperature [outputRows]
 * @param topK        [outputRows]
 * @param topP        [outputRows]
 * @param seed        [outputRows]
 * @param draw        [outputRows] how many tokens this row's request has sampled before
 */
public record Sampling(float[] temperature, int[] topK, float[] topP, long[] seed, int[] draw) {

    /** A uniform number in [0, 1) from (seed, draw): SplitMix64 of the pair, its top 53 bits. */
    public static double uniform(long seed, long draw) {
        long z = seed + (draw + 1) * 0x9E3779B97F4A7C15L;
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        z = z ^ (z >>> 31);
        return (z >>> 11) * 0x1.0p-53;
    }
}
