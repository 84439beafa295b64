package org.bitdelta.inference;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Function;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Perplexities of reference.json (PyTorch, fp32), reproduced to within 0.05%: for every pair and eval text, the
 * base, the fine-tune, and BitDelta with initial scales (per matrix and per row) served through DeltaLinear. This
 * class checks the pairs of bundled models on the bundled texts, with the bundled copy of reference.json; the
 * tinyllama pair is {@link PerplexityReferenceAcceptanceTest}'s.
 */
class PerplexityReferenceTest {
    private static final double RELATIVE_TOLERANCE = 5e-4;
    private static final int WINDOW = 256;
    private static final int MAX_WINDOWS = 64;
    /** Token ids per (tokenizer folder, text): base and fine-tune share a tokenizer. */
    private static final Map<String, int[]> TOKENS = new ConcurrentHashMap<>();

    static JsonObject reference(Path file) throws IOException {
        return JsonParser.parseString(Files.readString(file)).getAsJsonObject();
    }

    /** Whether reference.json's pair names models that are bundled (models/NAME with NAME in the test resources). */
    static boolean bundled(JsonObject pair) {
        return Stream.of("base", "finetuned").map(key -> pair.get(key).getAsString())
                .allMatch(model -> model.startsWith("models/") && Files.isDirectory(TestData.bundledResources().resolve(model)));
    }

    /**
     * (pair, eval) of every pair of reference.json that is (or is not) bundled, checked to be exactly {@code expected}
     * ("pair/eval"): a case that reference.json gains or loses must show here, not be passed over.
     */
    static Stream<Arguments> cases(JsonObject reference, boolean bundled, List<String> expected, String what) {
        List<Arguments> cases = cases(reference, bundled);
        assertEquals(expected, cases.stream().map(arguments -> arguments.get()[0] + "/" + arguments.get()[1]).toList(), what);
        return cases.stream();
    }

    private static List<Arguments> cases(JsonObject reference, boolean bundled) {
        List<Arguments> cases = new ArrayList<>();
        JsonObject pairs = reference.getAsJsonObject("pairs");
        for (String pair : pairs.keySet()) {
            if (bundled(pairs.getAsJsonObject(pair)) != bundled) {
                continue;
            }
            JsonObject evals = pairs.getAsJsonObject(pair).getAsJsonObject("evals");
            for (String eval : evals.keySet()) {
                cases.add(Arguments.of(pair, eval));
            }
        }
        return cases;
    }

    static Stream<Arguments> bundledPairsAndTexts() throws IOException {
        return cases(reference(TestData.bundled("reference.json")), true,
                List.of("stories260K-ft-alice/heldout_finetune_text", "stories260K-ft-alice/tinystories_valid",
                        "stories260K-ft-shakespeare/heldout_finetune_text", "stories260K-ft-shakespeare/tinystories_valid"),
                "the bundled pairs x eval texts of reference.json");
    }

    @ParameterizedTest(name = "{0} on {1}")
    @MethodSource("bundledPairsAndTexts")
    void matchesTheReference(String pair, String eval) throws IOException {
        // models/NAME and text/eval/FILE of the data folder are bundled as models/NAME and text/FILE.
        check(reference(TestData.bundled("reference.json")), pair, eval, TestData::bundled,
                text -> TestData.bundledText(Path.of(text).getFileName().toString()));
    }

    /** One (pair, eval) of {@code reference}, with its models and texts found by the given functions. */
    static void check(JsonObject reference, String pair, String eval, Function<String, Path> models, Function<String, Path> texts) throws IOException {
        JsonObject entry = reference.getAsJsonObject("pairs").getAsJsonObject(pair);
        JsonObject expected = entry.getAsJsonObject("numbers").getAsJsonObject(eval);
        Path text = texts.apply(entry.getAsJsonObject("evals").get(eval).getAsString());
        int expectedWindows = expected.get("windows").getAsInt();

        Path basePath = models.apply(entry.get("base").getAsString());
        Path finetunedPath = models.apply(entry.get("finetuned").getAsString());
        // Both compressed fine-tunes are tenants of one loaded base, beside the base itself.
        try (DeltaModel perMatrix = BitDelta.compress(basePath, finetunedPath);
             DeltaModel perRow = BitDelta.compress(basePath, finetunedPath, CompressOptions.defaults().perRowScales(true));
             DecoderModel base = DecoderModel.load(basePath)) {
            base.addTenant("initial", perMatrix);
            base.addTenant("initial_per_row", perRow);
            int[] tokens = tokens(base, text);
            check(pair, eval, "base", expected, expectedWindows, Perplexity.evaluate(base, DecoderModel.BASE, tokens, WINDOW, MAX_WINDOWS));
            check(pair, eval, "bitdelta_initial", expected, expectedWindows, Perplexity.evaluate(base, "initial", tokens, WINDOW, MAX_WINDOWS));
            check(pair, eval, "bitdelta_initial_per_row", expected, expectedWindows, Perplexity.evaluate(base, "initial_per_row", tokens, WINDOW, MAX_WINDOWS));
        }
        try (DecoderModel finetuned = DecoderModel.load(finetunedPath)) {
            int[] tokens = tokens(finetuned, text);
            check(pair, eval, "finetuned", expected, expectedWindows, Perplexity.evaluate(finetuned, DecoderModel.BASE, tokens, WINDOW, MAX_WINDOWS));
        }
    }

    private static int[] tokens(DecoderModel model, Path text) {
        return TOKENS.computeIfAbsent(model.folder() + "|" + text, key -> {
            try {
                return model.tokenizer().encode(Files.readString(text));
            } catch (IOException e) {
                throw new IllegalStateException("cannot read " + text, e);
            }
        });
    }

    private static void check(String pair, String eval, String variant, JsonObject expected, int expectedWindows, Perplexity.Result result) {
        double reference = expected.get(variant).getAsDouble();
        double relative = Math.abs(result.perplexity() / reference - 1);
        System.out.printf("%s %s %s: ppl %.4f (reference %.4f, relative %.2e, %d windows)%n",
                pair, eval, variant, result.perplexity(), reference, relative, result.windows());
        assertEquals(expectedWindows, result.windows(), pair + " " + eval + ": windows");
        assertTrue(relative < RELATIVE_TOLERANCE, pair + " " + eval + " " + variant + ": perplexity " + result.perplexity()
                + " vs reference " + reference + " (relative " + relative + ")");
    }
}
