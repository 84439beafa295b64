package org.bitdelta.examples.cli;

import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code --backend} (compress, eval, generate, demo), {@code --verbose} (eval, generate) and what {@code inspect}
 * reads through DeltaModel's typed accessors, as a user runs them.
 */
class BackendAndVerboseCliTest {
    private static final Path BASE = TestData.bundledModel("stories260K");
    private static final Path TEXT = TestData.bundledModel("stories260K").getParent().resolveSibling("text").resolve("alice.heldout.txt");
    /** A human-readable amount as the CLI prints it: "512 B", "1015.75 KiB", "5.00 MiB". */
    private static final String AMOUNT = "(\\d+ B|\\d+\\.\\d\\d [KMGT]iB)";
    @TempDir
    Path folder;

    @Test
    void anUnknownBackendIsAClearErrorNamingTheKnownOnes() {
        String[][] commands = {
                {"eval", "--base", BASE.toString(), "--text", TEXT.toString(), "--backend", "tpu"},
                {"generate", "--base", BASE.toString(), "--prompt", "Once", "--backend", "tpu"},
                {"compress", "--base", BASE.toString(), "--finetuned", TestData.bundledModel("stories260K-ft-alice").toString(),
                        "--out", folder.resolve("never.bitdelta").toString(), "--backend", "tpu"},
                {"demo", "--models", BASE.getParent().toString(), "--texts", TEXT.getParent().toString(), "--backend", "tpu"},
        };
        for (String[] command : commands) {
            CliTest.Result result = CliTest.run(command);
            assertEquals(1, result.code(), command[0] + ": " + result.out() + result.err());
            assertTrue(result.err().startsWith("bitdelta: error: --backend tpu: unknown backend 'tpu'; known: ")
                    && result.err().contains("cpu-scalar"), command[0] + ": " + result.err());
        }
        assertFalse(Files.exists(folder.resolve("never.bitdelta")));
    }

    @Test
    void theScalarBackendGivesTheReferencePerplexity() {
        CliTest.Result result = CliTest.run("eval", "--base", BASE.toString(), "--text", TEXT.toString(), "--backend", "cpu-scalar");
        assertEquals(0, result.code(), result.err());
        assertEquals("ppl=40.0134", result.out().strip().substring(result.out().strip().lastIndexOf('\n') + 1), result.out());
    }

    @Test
    void compressOnTheScalarBackendWritesTheSameFile() throws IOException {
        Path tuned = TestData.bundledModel("stories260K-ft-shakespeare");
        Path scalar = folder.resolve("scalar.bitdelta");
        Path vector = folder.resolve("vector.bitdelta");
        CliTest.Result first = CliTest.run("compress", "--base", BASE.toString(), "--finetuned", tuned.toString(), "--out", scalar.toString(),
                "--backend", "cpu-scalar", "--per-row-scales");
        CliTest.Result second = CliTest.run("compress", "--base", BASE.toString(), "--finetuned", tuned.toString(), "--out", vector.toString(),
                "--backend", "cpu", "--per-row-scales");
        assertEquals(0, first.code(), first.err());
        assertEquals(0, second.code(), second.err());
        assertArrayEquals(Files.readAllBytes(vector), Files.readAllBytes(scalar), "the backends must give the same bits");
    }

    @Test
    void evalVerbosePrintsTheMemoryByPurposeBeforeThePerplexity() {
        CliTest.Result result = CliTest.run("eval", "--base", BASE.toString(), "--delta", CliTest.compressBundled(folder, "stories260K-ft-alice").toString(),
                "--text", TEXT.toString(), "--max-windows", "2", "--backend", "cpu-scalar", "--verbose");
        assertEquals(0, result.code(), result.err());
        String out = result.out();
        assertTrue(out.contains("memory on the cpu-scalar backend:\n"), out);
        for (String what : new String[]{"base", "tenant delta", "KV cache", "workspace", "total"}) {
            assertTrue(Pattern.compile("(?m)^  " + Pattern.quote(what) + " +" + AMOUNT + "$").matcher(out).find(), what + " in:\n" + out);
        }
        // The heap reports no device figures, and says so rather than printing a number.
        assertTrue(out.contains("  device total             not reported by the backend\n"), out);
        assertTrue(out.strip().endsWith("\n" + "ppl=" + perplexityText(out)), "ppl stays the last line:\n" + out);
        assertFalse(out.contains("tenant delta             0 B"), "the tenant was used, so it is resident:\n" + out);

        CliTest.Result quiet = CliTest.run("eval", "--base", BASE.toString(), "--text", TEXT.toString(), "--max-windows", "1");
        assertEquals(0, quiet.code(), quiet.err());
        assertFalse(quiet.out().contains("memory on"), "memory only with --verbose:\n" + quiet.out());
    }

    @Test
    void generateVerboseNamesEveryTenant() {
        CliTest.Result result = CliTest.run("generate", "--base", BASE.toString(),
                "--delta", "alice=" + CliTest.compressBundled(folder, "stories260K-ft-alice"),
                "--delta", "shakespeare=" + CliTest.compressBundled(folder, "stories260K-ft-shakespeare"),
                "--prompt", "Once upon a time", "--max-tokens", "4", "--verbose");
        assertEquals(0, result.code(), result.err());
        String out = result.out();
        assertTrue(out.contains("3 tenants in one batch: 12 tokens"), out);
        for (String what : new String[]{"base", "tenant alice", "tenant shakespeare", "KV cache", "workspace", "total"}) {
            assertTrue(Pattern.compile("(?m)^  " + Pattern.quote(what) + " +" + AMOUNT + "$").matcher(out).find(), what + " in:\n" + out);
        }
    }

    @Test
    void inspectShowsWhatTheFileRecordsTyped() {
        Path file = folder.resolve("distilled.bitdelta");
        String record = "{\"steps\":3,\"batch\":2,\"seq\":32,\"lr\":1.0E-4,\"weight_decay\":0.01,\"seed\":8,"
                + "\"loss_first\":0.5,\"loss_last\":0.25}";
        try (DeltaModel delta = BitDelta.compress(BASE, TestData.bundledModel("stories260K-ft-alice"));
             DeltaModel distilled = delta.withScales(java.util.Map.of(), java.util.Map.of(org.bitdelta.ScaleDistiller.METADATA_KEY, record))) {
            distilled.save(file);
        }
        CliTest.Result result = CliTest.run("inspect", file.toString());
        assertEquals(0, result.code(), result.err());
        String out = result.out();
        assertTrue(out.contains("format version:    1\n"), out);
        assertTrue(out.contains("library version:   " + BitDelta.version() + "\n"), out);
        assertTrue(out.contains("fine-tune:         stories260K-ft-alice\n"), out);
        assertTrue(out.contains("scales:            per_matrix\n"), out);
        assertTrue(out.contains("distilled:         3 steps of 2 x 32 tokens, lr 1.0E-4, weight decay 0.01, seed 8; loss 0.500000 -> 0.250000\n"), out);
    }

    private static String perplexityText(String out) {
        Matcher matcher = Pattern.compile("(?m)^ppl=([0-9.]+)$").matcher(out);
        assertTrue(matcher.find(), out);
        return matcher.group(1);
    }
}
