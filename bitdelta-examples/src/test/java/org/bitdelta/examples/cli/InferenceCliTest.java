package org.bitdelta.examples.cli;

import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code bitdelta eval} and {@code bitdelta generate} as a user runs them. */
class InferenceCliTest {
    @TempDir
    Path folder;

    private static String lastLine(String text) {
        String[] lines = text.strip().split("\n");
        return lines[lines.length - 1].strip();
    }

    @Test
    void evalPrintsTheReferencePerplexityAsItsLastLine() {
        Path base = TestData.bundledModel("stories260K");
        Path text = TestData.bundledText("alice.heldout.txt");
        CliTest.Result plain = CliTest.run("eval", "--base", base.toString(), "--text", text.toString());
        assertEquals(0, plain.code(), plain.err());
        assertEquals("ppl=40.0134", lastLine(plain.out()), plain.out());

        CliTest.Result delta = CliTest.run("eval", "--base", base.toString(), "--delta", CliTest.compressBundled(folder, "stories260K-ft-alice").toString(),
                "--text", text.toString(), "--window", "256", "--max-windows", "64");
        assertEquals(0, delta.code(), delta.err());
        assertEquals("ppl=14.8366", lastLine(delta.out()), delta.out()); // reference.json: bitdelta_initial
        assertTrue(delta.out().contains("32 windows of 256 tokens"), delta.out());
    }

    @Test
    void evalWithADeltaForAnotherBaseFailsClearly() {
        Path foreign = folder.resolve("foreign.bitdelta");
        try (DeltaModel delta = BitDelta.compress(TestData.bundledModel("stories260K-ft-alice"), TestData.bundledModel("stories260K-ft-shakespeare"))) {
            delta.save(foreign);
        }
        CliTest.Result result = CliTest.run("eval", "--base", TestData.bundledModel("stories260K").toString(), "--delta", foreign.toString(),
                "--text", TestData.bundledText("alice.heldout.txt").toString());
        assertEquals(1, result.code(), result.out());
        assertTrue(result.err().contains("another base model"), result.err());
    }

    @Test
    void generateRunsEveryTenantInOneBatch() {
        CliTest.Result result = CliTest.run("generate", "--base", TestData.bundledModel("stories260K").toString(),
                "--delta", "alice=" + CliTest.compressBundled(folder, "stories260K-ft-alice"),
                "--delta", "shakespeare=" + CliTest.compressBundled(folder, "stories260K-ft-shakespeare"),
                "--prompt", "Once upon a time", "--max-tokens", "20");
        assertEquals(0, result.code(), result.err());
        String out = result.out();
        assertTrue(out.contains("=== base (20 tokens, length)\nOnce upon a time, there was a little girl named Lily."), out);
        assertTrue(out.contains("=== alice (20 tokens"), out);
        assertTrue(out.contains("=== shakespeare (20 tokens"), out);
        assertTrue(out.contains("3 tenants in one batch: 60 tokens"), out);

        CliTest.Result sampled = CliTest.run("generate", "--base", TestData.bundledModel("stories260K").toString(),
                "--prompt", "Once upon a time", "--max-tokens", "20", "--temperature", "0.8", "--seed", "7");
        CliTest.Result again = CliTest.run("generate", "--base", TestData.bundledModel("stories260K").toString(),
                "--prompt", "Once upon a time", "--max-tokens", "20", "--temperature", "0.8", "--seed", "7");
        assertEquals(0, sampled.code(), sampled.err());
        assertEquals(sampled.out().split("\n\n")[0], again.out().split("\n\n")[0], "same seed, same text (seed 7)");
    }

    @Test
    void generateWithAnUnknownBaseFolderFailsClearly() {
        CliTest.Result result = CliTest.run("generate", "--base", folder.resolve("missing").toString(), "--prompt", "x");
        assertEquals(1, result.code(), result.out());
        assertTrue(result.err().contains("missing"), result.err());
    }
}
