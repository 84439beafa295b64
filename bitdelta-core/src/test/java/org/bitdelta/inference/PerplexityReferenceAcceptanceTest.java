package org.bitdelta.inference;

import org.bitdelta.testing.TestData;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.util.List;
import java.util.stream.Stream;

/**
 * {@link PerplexityReferenceTest} for the pairs of the data folder's reference.json that are not bundled (the
 * tinyllama pair), on the data folder's models and texts (WikiText-2, the pretraining heldout text).
 */
class PerplexityReferenceAcceptanceTest {

    static Stream<Arguments> pairsAndTexts() throws IOException {
        return PerplexityReferenceTest.cases(PerplexityReferenceTest.reference(TestData.acceptance("reference.json")), false,
                List.of("tinyllama-shakespeare/heldout_finetune_text", "tinyllama-shakespeare/heldout_pretrain_text",
                        "tinyllama-shakespeare/wikitext2_test"),
                "the pairs x eval texts of reference.json that the default suite does not check");
    }

    @ParameterizedTest(name = "{0} on {1}")
    @MethodSource("pairsAndTexts")
    void matchesTheReference(String pair, String eval) throws IOException {
        PerplexityReferenceTest.check(PerplexityReferenceTest.reference(TestData.acceptance("reference.json")), pair, eval,
                TestData::acceptance, TestData::acceptance);
    }
}
