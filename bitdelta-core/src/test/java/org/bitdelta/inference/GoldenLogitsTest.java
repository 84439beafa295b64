package org.bitdelta.inference;

import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.testing.Golden;
import org.bitdelta.testing.Norms;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.nio.file.Path;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The decoder's logits against PyTorch + transformers' (fp32) on the same weights and tokens, on the bundled models
 * (the tinyllama pair: {@link GoldenLogitsAcceptanceTest}).
 */
class GoldenLogitsTest {
    private static final double TOLERANCE = 1e-4;

    /** The bundled fine-tunes of stories260K, each with its golden logits: pair name, golden, base folder, fine-tune folder. */
    static Stream<Arguments> bundledPairs() {
        return Stream.of("stories260K-ft-alice", "stories260K-ft-shakespeare").map(pair -> Arguments.of(pair,
                Golden.read(TestData.bundled("golden/" + pair + ".safetensors")), TestData.bundledModel("stories260K"), TestData.bundledModel(pair)));
    }

    @ParameterizedTest(name = "{0}: base and fine-tune")
    @MethodSource("bundledPairs")
    void baseAndFinetuneMatchTransformers(String pair, Golden golden, Path base, Path finetuned) {
        checkBaseAndFinetune(pair, golden, base, finetuned);
    }

    @ParameterizedTest(name = "{0}: BitDelta initial scales through DeltaLinear")
    @MethodSource("bundledPairs")
    void bitDeltaOnTheFlyMatchesTransformersOnMergedWeights(String pair, Golden golden, Path base, Path finetuned) {
        checkBitDelta(pair, golden, base, finetuned);
    }

    static void checkBaseAndFinetune(String pair, Golden golden, Path base, Path finetuned) {
        try (DecoderModel model = DecoderModel.load(base)) {
            assertClose(pair + " base", model.logits(DecoderModel.BASE, golden.inputIds()), golden.logits("logits_base"));
        }
        try (DecoderModel model = DecoderModel.load(finetuned)) {
            assertClose(pair + " fine-tune", model.logits(DecoderModel.BASE, golden.inputIds()), golden.logits("logits_finetuned"));
        }
    }

    static void checkBitDelta(String pair, Golden golden, Path base, Path finetuned) {
        try (DeltaModel delta = BitDelta.compress(base, finetuned);
             DecoderModel model = DecoderModel.load(base)) {
            model.addTenant("bitdelta", delta);
            assertClose(pair + " bitdelta initial", model.logits("bitdelta", golden.inputIds()), golden.logits("logits_bitdelta_initial"));
            // The base is still the base with a tenant loaded beside it.
            assertClose(pair + " base beside a tenant", model.logits(DecoderModel.BASE, golden.inputIds()), golden.logits("logits_base"));
        }
    }

    @Test
    void mistralWithSlidingWindowAndGroupedQueryAttentionMatchesTransformers() {
        Path folder = TestData.bundledModel("mistral-tiny");
        Golden golden = Golden.read(TestData.bundled("golden/mistral-tiny.safetensors"));
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
