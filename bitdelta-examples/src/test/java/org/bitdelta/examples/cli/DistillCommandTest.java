package org.bitdelta.examples.cli;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.bitdelta.DeltaModel;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** `bitdelta distill` as a user runs it, and its errors. */
class DistillCommandTest {
    private static final Path BASE = TestData.bundledModel("stories260K");
    private static final Path TUNED = TestData.bundledModel("stories260K-ft-alice");
    private static final Path CALIBRATION = TestData.bundledText("tinystories-train-head-32k.txt");
    @TempDir
    Path folder;

    @Test
    void distillWritesANewDeltaWithTheSettingsAndLosses() throws IOException {
        Path delta = folder.resolve("alice.bitdelta");
        assertEquals(0, CliTest.run("compress", "--base", BASE.toString(), "--finetuned", TUNED.toString(), "--out", delta.toString()).code());
        byte[] original = Files.readAllBytes(delta);
        Path out = folder.resolve("alice-distilled.bitdelta");
        CliTest.Result result = CliTest.run("distill", "--base", BASE.toString(), "--finetuned", TUNED.toString(), "--delta", delta.toString(),
                "--calibration", CALIBRATION.toString(), "--out", out.toString(), "--steps", "3", "--batch", "2", "--seq", "32", "--seed", "8");
        assertEquals(0, result.code(), result.err());
        assertTrue(result.err().contains("step 3/3"), "progress on stderr: " + result.err());
        assertTrue(result.out().contains("in 3 steps, seed 8"), result.out());
        assertFalse(result.out().contains("Added differentiated op"), result.out());
        try (DeltaModel distilled = DeltaModel.load(out)) {
            JsonObject record = JsonParser.parseString(distilled.metadata().get("distilled")).getAsJsonObject();
            assertEquals(3, record.get("steps").getAsInt());
            assertEquals(2, record.get("batch").getAsInt());
            assertEquals(32, record.get("seq").getAsInt());
            assertEquals(8, record.get("seed").getAsLong());
            assertTrue(record.has("loss_first") && record.has("loss_last"), record.toString());
        }
        assertTrue(java.util.Arrays.equals(original, Files.readAllBytes(delta)), "the input delta must stay as it was");
    }

    @Test
    void aDivergingRunFailsNamingTheStepAndWritesNothing() throws IOException {
        Path delta = folder.resolve("alice.bitdelta");
        assertEquals(0, CliTest.run("compress", "--base", BASE.toString(), "--finetuned", TUNED.toString(), "--out", delta.toString()).code());
        Path out = folder.resolve("never.bitdelta");
        CliTest.Result result = CliTest.run("distill", "--base", BASE.toString(), "--finetuned", TUNED.toString(), "--delta", delta.toString(),
                "--calibration", CALIBRATION.toString(), "--out", out.toString(), "--steps", "4", "--batch", "2", "--seq", "32", "--lr", "1e30");
        assertEquals(1, result.code(), result.err());
        assertTrue(result.err().contains("bitdelta: error: distillation diverged at step 2 of 4"), result.err());
        assertFalse(Files.exists(out), "no output file after a failed run");
    }
}
