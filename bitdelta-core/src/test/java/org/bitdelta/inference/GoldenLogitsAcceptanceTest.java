package org.bitdelta.inference;

import org.bitdelta.testing.Golden;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;

/**
 * {@link GoldenLogitsTest} on the tinyllama pair of the data folder: the only real BF16 model pair with an untied
 * lm_head, a 4096-token vocabulary and 6 layers (12.9 MB each), against PyTorch's fp32 logits.
 */
class GoldenLogitsAcceptanceTest {
    private static final String PAIR = "tinyllama-shakespeare";

    @Test
    void baseAndFinetuneMatchTransformers() {
        GoldenLogitsTest.checkBaseAndFinetune(PAIR, Golden.read(TestData.acceptance("golden/" + PAIR + ".safetensors")),
                TestData.acceptance("models/tinyllama-shakespeare-base"), TestData.acceptance("models/tinyllama-shakespeare-finetuned"));
    }

    @Test
    void bitDeltaOnTheFlyMatchesTransformersOnMergedWeights() {
        GoldenLogitsTest.checkBitDelta(PAIR, Golden.read(TestData.acceptance("golden/" + PAIR + ".safetensors")),
                TestData.acceptance("models/tinyllama-shakespeare-base"), TestData.acceptance("models/tinyllama-shakespeare-finetuned"));
    }
}
