package org.bitdelta.inference;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Stopping and sampling rules of {@link Generator}. */
class GeneratorTest {
    private static final long SEED = 424242L;

    @Test
    void greedyPicksTheFirstOfEqualMaxima() {
        assertEquals(1, Generator.sample(new float[]{0f, 3f, 3f, -1f}, 0, new SplittableRandom(SEED)));
    }

    @Test
    void samplingFollowsSoftmaxAtTheTemperature() {
        float[] logits = {0f, (float) Math.log(2), (float) Math.log(4), (float) Math.log(8)}; // p ∝ 1, 2, 4, 8
        for (double temperature : new double[]{1.0, 2.0}) {
            SplittableRandom random = new SplittableRandom(SEED);
            int draws = 60_000;
            int[] counts = new int[logits.length];
            for (int i = 0; i < draws; i++) {
                counts[Generator.sample(logits, temperature, random)]++;
            }
            double[] weights = new double[logits.length];
            double total = 0;
            for (int v = 0; v < logits.length; v++) {
                weights[v] = Math.exp(logits[v] / temperature);
                total += weights[v];
            }
            for (int v = 0; v < logits.length; v++) {
                double expected = weights[v] / total;
                double observed = counts[v] / (double) draws;
                // 5 standard deviations of a binomial proportion: fails only for a wrong distribution.
                double tolerance = 5 * Math.sqrt(expected * (1 - expected) / draws);
                assertEquals(expected, observed, tolerance, "T=" + temperature + ", token " + v + ", counts " + Arrays.toString(counts) + " (seed " + SEED + ")");
            }
        }
    }

    @Test
    void generationStopsAtAnyEndOfSequenceTokenOfTheConfig(@TempDir Path folder) throws IOException {
        Path source = TestData.bundledModel("stories260K");
        JsonObject config = JsonParser.parseString(Files.readString(source.resolve("config.json"))).getAsJsonObject();
        // The greedy sample from BOS is 1, 403, 407, 261, 378, 432, 383, 286, 261, 376, ...: make 376 an end token.
        JsonArray endTokens = new JsonArray();
        endTokens.add(2);
        endTokens.add(376);
        config.add("eos_token_id", endTokens);
        Files.writeString(folder.resolve("config.json"), config.toString());
        Files.copy(source.resolve("model.safetensors"), folder.resolve("model.safetensors"));
        try (DecoderModel model = DecoderModel.load(folder)) {
            assertArrayEquals(new int[]{2, 376}, model.eosTokenIds());
            Generator.Result result = new Generator(model).generate(List.of(Generator.Request.greedy(DecoderModel.BASE, new int[]{1}, 40))).getFirst();
            assertEquals(Generator.FinishReason.END_OF_SEQUENCE, result.finishReason());
            assertArrayEquals(new int[]{403, 407, 261, 378, 432, 383, 286, 261, 376}, result.tokens(), "stops after the end token, which is kept");
        }
    }

    @Test
    void zeroNewTokensRunsNothingAndListenersSeeEveryToken() {
        try (DecoderModel model = DecoderModel.load(TestData.bundledModel("stories260K"))) {
            int[] seen = new int[2];
            List<Generator.Result> results = new Generator(model).generate(List.of(
                    Generator.Request.greedy(DecoderModel.BASE, new int[]{1}, 0),
                    Generator.Request.greedy(DecoderModel.BASE, new int[]{1}, 7)), (request, token) -> seen[request]++);
            assertEquals(0, results.get(0).tokens().length);
            assertEquals(Generator.FinishReason.LENGTH, results.get(0).finishReason());
            assertEquals(7, results.get(1).tokens().length);
            assertArrayEquals(new int[]{0, 7}, seen);
            assertTrue(Arrays.equals(new int[]{403, 407, 261, 378, 432, 383, 286}, results.get(1).tokens()), Arrays.toString(results.get(1).tokens()));
        }
    }
}
