package org.bitdelta.inference;

import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.EngineOptions;
import org.bitdelta.serving.Request;
import org.bitdelta.testing.Golden;
import org.bitdelta.testing.Norms;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The repository's fixture models (bitdelta-core/src/test/python/make_fixtures.py; each NAME with its fine-tune
 * NAME-ft) against transformers: logits of the base, the fine-tune, and BitDelta with per-matrix and per-row initial
 * scales (W_base + a ⊙ sign(ΔW) in float32), and greedy continuations.
 *
 * <p>Every golden output was computed in float32 with eager attention, so each is held to 1e-4 relative: llama-rope3
 * (F32 weights, GQA 8/1, llama3 rope scaling, untied), llama-bf16 (BF16 weights, GQA 8/2, untied, byte-level BPE)
 * and llama-f16-tied (F16 weights, tied embeddings, multi-head attention, head_dim != hidden / heads).
 */
class FixtureModelsTest {
    private static final double TOLERANCE = 1e-4;

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"llama-rope3", "llama-bf16", "llama-f16-tied"})
    void baseFineTuneAndBitDeltaMatchTransformers(String name) {
        Golden golden = Golden.read(TestData.bundled("golden/" + name + ".safetensors"));
        Path base = TestData.bundledModel(name);
        Path finetuned = TestData.bundledModel(name + "-ft");
        try (DecoderModel model = DecoderModel.load(finetuned)) {
            assertClose(name + " fine-tune", model.logits(DecoderModel.BASE, golden.inputIds()), golden.logits("logits_finetuned"));
        }
        try (DeltaModel perMatrix = BitDelta.compress(base, finetuned);
             DeltaModel perRow = BitDelta.compress(base, finetuned, CompressOptions.defaults().perRowScales(true));
             DecoderModel model = DecoderModel.load(base)) {
            model.addTenant("per-matrix", perMatrix);
            model.addTenant("per-row", perRow);
            assertClose(name + " base", model.logits(DecoderModel.BASE, golden.inputIds()), golden.logits("logits_base"));
            assertClose(name + " bitdelta, per-matrix scales", model.logits("per-matrix", golden.inputIds()),
                    golden.logits("logits_bitdelta_initial"));
            assertClose(name + " bitdelta, per-row scales", model.logits("per-row", golden.inputIds()),
                    golden.logits("logits_bitdelta_per_row"));
        }
    }

    /** Greedy continuations of the float32 golden (24 tokens after the first 8 input ids) through the engine. */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"llama-rope3", "llama-bf16", "llama-f16-tied"})
    void greedyContinuationsMatchTransformers(String name) {
        Path goldenFile = TestData.bundled("golden/" + name + ".safetensors");
        int[] prompt = Arrays.copyOf(Golden.ints(goldenFile, "input_ids"), 8);
        Path base = TestData.bundledModel(name);
        Path finetuned = TestData.bundledModel(name + "-ft");
        try (DeltaModel delta = BitDelta.compress(base, finetuned); Engine engine = Engine.open(base, EngineOptions.defaults())) {
            engine.addTenant("bitdelta", delta);
            assertArrayEquals(Golden.ints(goldenFile, "greedy_base"), greedy(engine, Engine.BASE, prompt), name + " base");
            assertArrayEquals(Golden.ints(goldenFile, "greedy_bitdelta_initial"), greedy(engine, "bitdelta", prompt), name + " bitdelta");
        }
        try (Engine engine = Engine.open(finetuned, EngineOptions.defaults())) {
            assertArrayEquals(Golden.ints(goldenFile, "greedy_finetuned"), greedy(engine, Engine.BASE, prompt), name + " fine-tune");
        }
    }

    private static int[] greedy(Engine engine, String tenant, int[] prompt) {
        CompletionResult result = engine.submit(Request.tokens(tenant, prompt).maxTokens(24).temperature(0).ignoreEos(true)).result();
        return result.tokens();
    }

    private static void assertClose(String what, float[] actual, float[] expected) {
        double error = Norms.relativeError(actual, expected);
        System.out.printf("%s: relative error %.3g (tolerance %.0e)%n", what, error, TOLERANCE);
        assertTrue(error < TOLERANCE, what + ": ‖out − ref‖/‖ref‖ = " + error + ", over " + TOLERANCE);
    }
}
