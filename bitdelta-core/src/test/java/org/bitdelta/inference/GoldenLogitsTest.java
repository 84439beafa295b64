package org.bitdelta.inference;

import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.testing.Norms;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertTrue;

/** The decoder's logits against PyTorch + transformers' (fp32) on the same weights and tokens. */
class GoldenLogitsTest {
    private static final double TOLERANCE = 1e-4;

    @ParameterizedTest(name = "{0}: base and fine-tune")
    @CsvSource({
            "stories260K-ft-alice, models/stories260K, models/stories260K-ft-alice",
            "stories260K-ft-shakespeare, models/stories260K, models/stories260K-ft-shakespeare",
            "tinyllama-shakespeare, models/tinyllama-shakespeare-base, models/tinyllama-shakespeare-finetuned"})
    void baseAndFinetuneMatchTransformers(String pair, String base, String finetuned) {
        Golden golden = Golden.read(TestData.shared("golden/" + pair + ".safetensors"));
        try (DecoderModel model = DecoderModel.load(TestData.shared(base))) {
            assertClose(pair + " base", model.logits(DecoderModel.BASE, golden.inputIds()), golden.logits("logits_base"));
        }
        try (DecoderModel model = DecoderModel.load(TestData.shared(finetuned))) {
            assertClose(pair + " fine-tune", model.logits(DecoderModel.BASE, golden.inputIds()), golden.logits("logits_finetuned"));
        }
    }

    @ParameterizedTest(name = "{0}: BitDelta initial scales through DeltaLinear")
    @CsvSource({
            "stories260K-ft-alice, models/stories260K, models/stories260K-ft-alice",
            "stories260K-ft-shakespeare, models/stories260K, models/stories260K-ft-shakespeare",
            "tinyllama-shakespeare, models/tinyllama-shakespeare-base, models/tinyllama-shakespeare-finetuned"})
    void bitDeltaOnTheFlyMatchesTransformersOnMergedWeights(String pair, String base, String finetuned) {
        Golden golden = Golden.read(TestData.shared("golden/" + pair + ".safetensors"));
        try (DeltaModel delta = BitDelta.compress(TestData.shared(base), TestData.shared(finetuned));
             DecoderModel model = DecoderModel.load(TestData.shared(base))) {
            model.addTenant("bitdelta", delta);
            assertClose(pair + " bitdelta initial", model.logits("bitdelta", golden.inputIds()), golden.logits("logits_bitdelta_initial"));
            // The base is still the base with a tenant loaded beside it.
            assertClose(pair + " base beside a tenant", model.logits(DecoderModel.BASE, golden.inputIds()), golden.logits("logits_base"));
        }
    }

    @Test
    void mistralWithSlidingWindowAndGroupedQueryAttentionMatchesTransformers() {
        Path folder = TestData.bundledModel("mistral-tiny");
        Golden golden = Golden.read(TestData.repositoryRoot().resolve("bitdelta-core/src/test/resources/golden/mistral-tiny.safetensors"));
        try (DecoderModel model = DecoderModel.load(folder)) {
            assertClose("mistral-tiny", model.logits(DecoderModel.BASE, golden.inputIds()), golden.logits("logits"));
        }
    }

    static void assertClose(String what, float[] actual, float[] expected) {
        double error = Norms.relativeError(actual, expected);
        System.out.printf("%s: relative error %.3g%n", what, error);
        assertTrue(error < TOLERANCE, what + ": ‖out − ref‖/‖ref‖ = " + error + ", over " + TOLERANCE);
    }
}
