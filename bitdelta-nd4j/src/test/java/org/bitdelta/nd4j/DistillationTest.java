package org.bitdelta.nd4j;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.DeltaModel;
import org.bitdelta.DistillListener;
import org.bitdelta.DistillOptions;
import org.bitdelta.ScaleDistiller;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A short distillation end to end, and every bad input the issue names. */
class DistillationTest {
    private static final Path BASE = TestData.bundledModel("stories260K");
    private static final Path SHAKESPEARE = TestData.bundledModel("stories260K-ft-shakespeare");
    private static final Path ALICE = TestData.bundledModel("stories260K-ft-alice");
    private static final Path CALIBRATION = TestData.bundledText("tinystories-train-head-32k.txt");
    private static final Path HELDOUT = TestData.bundledText("shakespeare.heldout.txt");

    @Test
    void serviceLoaderFindsTheNd4jDistiller() {
        assertInstanceOf(Nd4jScaleDistiller.class, ScaleDistiller.load());
    }

    @Test
    void aShortDistillationLowersTheLossAndThePerplexity() {
        long seed = 11L;
        int steps = 12;
        try (DeltaModel delta = BitDelta.compress(BASE, SHAKESPEARE)) {
            Map<String, float[]> scalesBefore = scalesOf(delta);
            List<DistillListener.Step> reported = new ArrayList<>();
            DistillOptions options = DistillOptions.defaults().steps(steps).seed(seed).listener(reported::add);
            DeltaModel distilled = ScaleDistiller.load().distill(BASE, SHAKESPEARE, delta, CALIBRATION, options);

            assertEquals(steps, reported.size(), "one listener call per step");
            for (int i = 0; i < steps; i++) {
                DistillListener.Step step = reported.get(i);
                assertEquals(i + 1, step.step());
                assertTrue(step.tokensPerSecond() > 0 && step.secondsLeft() >= 0 && Double.isFinite(step.loss()), step.toString());
            }
            assertEquals(0, reported.getLast().secondsLeft());
            assertTrue(reported.getFirst().learningRate() == 1e-4 && reported.getLast().learningRate() < 1e-4, "cosine schedule");

            // Same fixed windows before and after: the distilled scales fit the teacher better.
            double lossBefore = fixedBatchLoss(delta, seed);
            double lossAfter = fixedBatchLoss(distilled, seed);
            assertTrue(lossAfter < lossBefore, "seed " + seed + ": loss on fixed windows " + lossBefore + " -> " + lossAfter);
            double perplexityBefore = PerplexityOnNd4j.evaluate(BASE, SHAKESPEARE, delta, HELDOUT, 256, 16);
            double perplexityAfter = PerplexityOnNd4j.evaluate(BASE, SHAKESPEARE, distilled, HELDOUT, 256, 16);
            System.out.printf("short distillation, seed %d, %d steps on %s: loss on fixed windows %.5f -> %.5f, perplexity %.4f -> %.4f%n",
                    seed, steps, CALIBRATION.getFileName(), lossBefore, lossAfter, perplexityBefore, perplexityAfter);
            assertTrue(perplexityAfter < perplexityBefore, "seed " + seed + ": perplexity " + perplexityBefore + " -> " + perplexityAfter);

            JsonObject record = JsonParser.parseString(distilled.metadata().get(ScaleDistiller.METADATA_KEY)).getAsJsonObject();
            assertEquals(steps, record.get("steps").getAsInt());
            assertEquals(4, record.get("batch").getAsInt());
            assertEquals(128, record.get("seq").getAsInt());
            assertEquals(1e-4, record.get("lr").getAsDouble());
            assertEquals(seed, record.get("seed").getAsLong());
            assertEquals(reported.getFirst().loss(), record.get("loss_first").getAsDouble());
            assertEquals(reported.getLast().loss(), record.get("loss_last").getAsDouble());
            // The input delta is left as it was; the result keeps its signs and changes its scales.
            assertScalesEqual(scalesBefore, scalesOf(delta));
            assertEquals("false", delta.metadata().get(ScaleDistiller.METADATA_KEY));
            boolean changed = false;
            for (BinaryDelta matrix : distilled.matrices()) {
                assertEquals(delta.matrix(matrix.name()).signs(), matrix.signs());
                changed |= matrix.scales()[0] != delta.matrix(matrix.name()).scales()[0];
            }
            assertTrue(changed, "no scale changed");
        }
    }

    @Test
    void sameSeedSameResult() {
        try (DeltaModel delta = BitDelta.compress(BASE, ALICE)) {
            DistillOptions options = DistillOptions.defaults().steps(2).batchSize(2).sequenceLength(32).seed(5);
            DeltaModel first = ScaleDistiller.load().distill(BASE, ALICE, delta, CALIBRATION, options);
            DeltaModel second = ScaleDistiller.load().distill(BASE, ALICE, delta, CALIBRATION, options);
            assertScalesEqual(scalesOf(first), scalesOf(second));
        }
    }

    @Test
    void calibrationTextShorterThanOneWindowIsRefused(@TempDir Path folder) throws IOException {
        Path shortText = Files.writeString(folder.resolve("short.txt"), "Once upon a time there was a cat.");
        try (DeltaModel delta = BitDelta.compress(BASE, SHAKESPEARE)) {
            assertRefused(delta, SHAKESPEARE, shortText, "fewer than one window of 128", "short.txt");
        }
    }

    @Test
    void aDeltaOfAnotherBaseIsRefused() {
        // Compressed against the Alice fine-tune as its "base": the fingerprint names that model, not stories260K.
        try (DeltaModel foreign = BitDelta.compress(ALICE, SHAKESPEARE)) {
            assertRefused(foreign, SHAKESPEARE, CALIBRATION, "was not made from the base", "base_fingerprint");
        }
    }

    @Test
    void aFineTuneOfAnotherArchitectureIsRefused(@TempDir Path otherArchitecture) throws IOException {
        // The Shakespeare fine-tune's weights under a config of another width: a llama like the base, hidden_size differs.
        JsonObject config = JsonParser.parseString(Files.readString(SHAKESPEARE.resolve("config.json"))).getAsJsonObject();
        config.addProperty("hidden_size", 128);
        Files.writeString(otherArchitecture.resolve("config.json"), config.toString());
        Files.copy(SHAKESPEARE.resolve("model.safetensors"), otherArchitecture.resolve("model.safetensors"));
        Files.copy(SHAKESPEARE.resolve("tokenizer.json"), otherArchitecture.resolve("tokenizer.json"));
        Files.copy(SHAKESPEARE.resolve("tokenizer_config.json"), otherArchitecture.resolve("tokenizer_config.json"));
        try (DeltaModel delta = BitDelta.compress(BASE, SHAKESPEARE)) {
            assertRefused(delta, otherArchitecture, CALIBRATION, "must have the base's architecture", "hidden_size");
        }
    }

    /** Distilling {@code delta} against BASE and {@code finetuned} for one step fails with a message naming every part. */
    private static void assertRefused(DeltaModel delta, Path finetuned, Path calibration, String... parts) {
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> ScaleDistiller.load()
                .distill(BASE, finetuned, delta, calibration, DistillOptions.defaults().steps(1)));
        for (String part : parts) {
            assertTrue(error.getMessage().contains(part), error.getMessage());
        }
    }

    @Test
    void aDivergingLossStopsWithTheStepAndLeavesTheDeltaUntouched() {
        long seed = 3L;
        try (DeltaModel delta = BitDelta.compress(BASE, SHAKESPEARE)) {
            Map<String, float[]> before = scalesOf(delta);
            // A learning rate of 1e30 throws every scale to about ±1e30 on the first step: the next loss overflows.
            DistillOptions options = DistillOptions.defaults().steps(5).batchSize(2).sequenceLength(32).learningRate(1e30).seed(seed);
            BitDeltaException error = assertThrows(BitDeltaException.class,
                    () -> ScaleDistiller.load().distill(BASE, SHAKESPEARE, delta, CALIBRATION, options));
            assertTrue(error.getMessage().contains("diverged at step 2 of 5") && error.getMessage().contains("seed " + seed)
                    && error.getMessage().contains("unchanged"), error.getMessage());
            assertScalesEqual(before, scalesOf(delta));
        }
    }

    @Test
    void optionsAreValidatedAndImmutable() {
        DistillOptions defaults = DistillOptions.defaults();
        assertEquals(200, defaults.steps());
        assertEquals(4, defaults.batchSize());
        assertEquals(128, defaults.sequenceLength());
        assertEquals(1e-4, defaults.learningRate());
        assertEquals(0.01, defaults.weightDecay());
        assertEquals(0.9, defaults.beta1());
        assertEquals(0.999, defaults.beta2());
        DistillOptions changed = defaults.steps(10).seed(4);
        assertEquals(200, defaults.steps(), "withers return copies");
        assertEquals(10, changed.steps());
        assertThrows(IllegalArgumentException.class, () -> defaults.steps(0));
        assertThrows(IllegalArgumentException.class, () -> defaults.learningRate(Double.NaN));
        assertThrows(IllegalArgumentException.class, () -> defaults.betas(1.0, 0.999));
        assertEquals(1e-4, defaults.learningRateAt(1));
        assertEquals(0.5e-4, defaults.learningRateAt(101), 1e-15);
    }

    private static double fixedBatchLoss(DeltaModel delta, long seed) {
        int[] tokens = Nd4jScaleDistiller.calibrationTokens(SHAKESPEARE, HELDOUT, 128);
        int[][] windows = Nd4jScaleDistiller.sampleWindows(tokens, 4, 128, new java.util.SplittableRandom(seed));
        try (DistillationModel model = DistillationModel.open(BASE, SHAKESPEARE, delta, org.nd4j.linalg.api.buffer.DataType.FLOAT, 4, 128)) {
            return model.loss(windows, model.teacherTarget(windows));
        }
    }

    private static Map<String, float[]> scalesOf(DeltaModel delta) {
        Map<String, float[]> scales = new LinkedHashMap<>();
        for (BinaryDelta matrix : delta.matrices()) {
            scales.put(matrix.name(), matrix.scales());
        }
        return scales;
    }

    private static void assertScalesEqual(Map<String, float[]> expected, Map<String, float[]> actual) {
        assertEquals(expected.keySet(), actual.keySet());
        expected.forEach((name, scales) -> assertArrayEquals(scales, actual.get(name), name));
    }
}
