package org.bitdelta.testing;

import java.util.SplittableRandom;

/** Random token sequences for the bundled models' tokenizers, whose ids 0 to 2 are the special tokens. */
public final class TestTokens {
    private TestTokens() {
    }

    /** BOS (id 1), then {@code length - 1} ids drawn from 3 up to {@code vocabulary - 1}. */
    public static int[] random(SplittableRandom random, int length, int vocabulary) {
        int[] tokens = new int[length];
        tokens[0] = 1;
        for (int i = 1; i < length; i++) {
            tokens[i] = 3 + random.nextInt(vocabulary - 3);
        }
        return tokens;
    }
}
