package org.bitdelta.examples.cli;

import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.internal.safetensors.ModelWeights;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The command line as a user runs it: compress, inspect, merge, the demo, and its errors, on the bundled models
 * (compress, inspect and merge of the tinyllama pair: {@link CliAcceptanceTest}).
 */
class CliTest {
    @TempDir
    Path folder;

    record Result(int code, String out, String err) {
    }

    /** Compresses the bundled fine-tune {@code finetuned} against stories260K into {@code folder}; returns the file. */
    static Path compressBundled(Path folder, String finetuned) {
        Path file = folder.resolve(finetuned + ".bitdelta");
        try (DeltaModel delta = BitDelta.compress(TestData.bundledModel("stories260K"), TestData.bundledModel(finetuned))) {
            delta.save(file);
        }
        return file;
    }

    static Result run(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        int code = Main.run(args, new PrintWriter(out), new PrintWriter(err));
        return new Result(code, out.toString(), err.toString());
    }

    @Test
    void compressInspectMerge() throws IOException {
        // The Alice fine-tune with a generation config of its own (the base has none): merge must restore both the
        // files equal to the base's (recorded by hash) and this one (recorded whole).
        Path tuned = folder.resolve("stories260K-ft-alice");
        Files.createDirectories(tuned);
        try (var files = Files.list(TestData.bundledModel("stories260K-ft-alice"))) {
            for (Path file : files.toList()) {
                Files.copy(file, tuned.resolve(file.getFileName()));
            }
        }
        Files.writeString(tuned.resolve("generation_config.json"), "{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n  \"temperature\": 0.7\n}\n");
        checkCompressInspectMerge(folder, TestData.bundledModel("stories260K"), tuned, 35);
    }

    /** compress, inspect and merge through the command line; {@code matrices} projections are compressed. */
    static void checkCompressInspectMerge(Path folder, Path base, Path tuned, int matrices) throws IOException {
        Path file = folder.resolve("compressed.bitdelta");
        Result compress = run("compress", "--base", base.toString(), "--finetuned", tuned.toString(), "--out", file.toString());
        assertEquals(0, compress.code(), compress.err());
        assertTrue(compress.out().contains("compressed " + matrices + " matrices to 1 bit"), compress.out());

        Result inspect = run("inspect", file.toString());
        assertEquals(0, inspect.code(), inspect.err());
        long fileBytes = Files.size(file);
        long finetunedBytes = Files.size(tuned.resolve("model.safetensors"));
        // The summary states the compressed size next to the fine-tune's, in bytes.
        assertTrue(inspect.out().contains("(" + fileBytes + " bytes;"), inspect.out());
        assertTrue(inspect.out().contains("(" + finetunedBytes + " bytes): the delta is"), inspect.out());
        assertTrue(inspect.out().contains("model.layers.0.self_attn.q_proj.weight"), inspect.out());
        Matcher ratio = Pattern.compile("the delta is ([0-9.]+)x smaller").matcher(inspect.out());
        assertTrue(ratio.find(), inspect.out());
        assertEquals((double) finetunedBytes / fileBytes, Double.parseDouble(ratio.group(1)), 0.05);

        Path merged = folder.resolve("merged");
        Result merge = run("merge", "--base", base.toString(), "--delta", file.toString(), "--out", merged.toString());
        assertEquals(0, merge.code(), merge.err());
        try (ModelWeights weights = ModelWeights.open(merged); ModelWeights original = ModelWeights.open(tuned)) {
            assertEquals(original.names(), weights.names());
        }
        for (String name : new String[]{"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
            assertEquals(Files.readString(tuned.resolve(name)), Files.readString(merged.resolve(name)), name);
        }
    }

    @Test
    void anExistingOutputIsRefusedUnlessForced() throws IOException {
        Path base = TestData.bundledModel("stories260K");
        Path tuned = TestData.bundledModel("stories260K-ft-alice");
        Path file = folder.resolve("alice.bitdelta");
        Files.writeString(file, "precious");
        Result refused = run("compress", "--base", base.toString(), "--finetuned", tuned.toString(), "--out", file.toString());
        assertEquals(1, refused.code());
        assertTrue(refused.err().contains("already exists") && refused.err().contains("--force"), refused.err());
        assertEquals("precious", Files.readString(file));

        Result forced = run("compress", "--base", base.toString(), "--finetuned", tuned.toString(), "--out", file.toString(), "--force");
        assertEquals(0, forced.code(), forced.err());
        assertTrue(Files.size(file) > 1000);
    }

    @Test
    void badInputIsAClearErrorAndWritesNothing() {
        Path base = TestData.bundledModel("stories260K");
        Path other = TestData.bundledModel("mistral-tiny"); // another architecture
        Path file = folder.resolve("mixed.bitdelta");
        Result mixed = run("compress", "--base", base.toString(), "--finetuned", other.toString(), "--out", file.toString());
        assertEquals(1, mixed.code());
        assertTrue(mixed.err().startsWith("bitdelta: error: ") && mixed.err().contains("config.json"), mixed.err());
        assertFalse(Files.exists(file));

        Result missing = run("inspect", folder.resolve("nothing.bitdelta").toString());
        assertEquals(1, missing.code());
        assertTrue(missing.err().contains("nothing.bitdelta"), missing.err());

        Result usage = run("compress", "--base", base.toString());
        assertEquals(2, usage.code());
        assertTrue(usage.err().contains("Missing required options"), usage.err());
    }

    @Test
    void demoRunsOnTheBundledModels() {
        Path resources = TestData.bundledModel("stories260K").getParent().getParent();
        Result demo = run("demo", "--models", resources.resolve("models").toString(), "--texts", resources.resolve("text").toString());
        assertEquals(0, demo.code(), demo.err());
        assertTrue(demo.out().contains("stories260K-ft-alice: 35 matrices -> 1 bit"), demo.out());
        assertTrue(demo.out().contains("stories260K-ft-shakespeare: 35 matrices -> 1 bit"), demo.out());
        // The table's figures follow reference.json's protocol, so they must equal its numbers.
        assertTableRow(demo.out(), "alice.heldout.txt", "base", "40.0134", 32);
        assertTableRow(demo.out(), "alice.heldout.txt", "stories260K-ft-alice (1-bit delta)", "14.8366", 32);
        assertTableRow(demo.out(), "shakespeare.heldout.txt", "stories260K-ft-shakespeare (full)", "13.3410", 64);
        assertTableRow(demo.out(), "shakespeare.heldout.txt", "stories260K-ft-shakespeare (1-bit delta)", "19.8939", 64);
        assertTableRow(demo.out(), "tinystories-valid-30k.txt", "stories260K-ft-shakespeare (1-bit delta)", "10.8893", 60);
        // Then each model's own text for the same prompt, labelled, after the table.
        String output = demo.out();
        int table = output.indexOf("text                         model");
        int generated = output.indexOf("3. generate");
        assertTrue(table > 0 && generated > table, output);
        java.util.List<String> answers = new java.util.ArrayList<>();
        for (String label : new String[]{"[stories260K (the base)]", "[alice (1-bit delta of stories260K-ft-alice)]",
                "[shakespeare (1-bit delta of stories260K-ft-shakespeare)]"}) {
            int at = output.indexOf(label, generated);
            assertTrue(at > 0, "no " + label + " in:\n" + output);
            String answer = output.substring(output.indexOf('\n', at) + 1).lines().findFirst().orElseThrow().strip();
            assertTrue(answer.startsWith("Once upon a time") && answer.length() > 40, label + ": " + answer);
            answers.add(answer);
        }
        assertEquals(3, answers.stream().distinct().count(), "three different answers: " + answers);
    }

    private static void assertTableRow(String output, String text, String model, String perplexity, int windows) {
        Pattern row = Pattern.compile("(?m)^" + Pattern.quote(text) + " +" + Pattern.quote(model) + " +" + Pattern.quote(perplexity)
                + " +" + windows + "$");
        assertTrue(row.matcher(output).find(), "no row '" + text + " | " + model + " | " + perplexity + " | " + windows + "' in:\n" + output);
    }
}
