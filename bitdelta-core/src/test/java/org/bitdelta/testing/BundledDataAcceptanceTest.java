package org.bitdelta.testing;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The default suite checks the stories260K family against reference numbers and golden logits bundled in
 * bitdelta-core's test resources: every bundled copy must still be the data folder's file, byte for byte.
 */
class BundledDataAcceptanceTest {

    @ParameterizedTest(name = "{0}")
    @CsvSource({
            "reference.json, reference.json",
            "golden/stories260K-ft-alice.safetensors, golden/stories260K-ft-alice.safetensors",
            "golden/stories260K-ft-shakespeare.safetensors, golden/stories260K-ft-shakespeare.safetensors",
            "text/alice.heldout.txt, text/eval/alice.heldout.txt",
            "text/shakespeare.heldout.txt, text/eval/shakespeare.heldout.txt",
            "text/tinystories-valid-30k.txt, text/eval/tinystories-valid-30k.txt"})
    void bundledFileEqualsTheDataFolders(String bundled, String original) throws IOException {
        assertFilesEqual(TestData.acceptance(original), TestData.bundled(bundled));
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource({"stories260K", "stories260K-ft-alice", "stories260K-ft-shakespeare"})
    void bundledModelEqualsTheDataFolders(String model) throws IOException {
        Path original = TestData.acceptance("models/" + model);
        Path bundled = TestData.bundledModel(model);
        List<String> files = names(original);
        assertEquals(files, names(bundled), model + ": the same files");
        assertTrue(files.contains("model.safetensors"), files.toString());
        for (String file : files) {
            assertFilesEqual(original.resolve(file), bundled.resolve(file));
        }
    }

    @Test
    void bundledCalibrationTextIsTheHeadOfTheDataFolders() throws IOException {
        byte[] original = Files.readAllBytes(TestData.acceptance("text/calibration/tinystories-train-head-197k.txt"));
        byte[] bundled = Files.readAllBytes(TestData.bundledText("tinystories-train-head-32k.txt"));
        assertTrue(bundled.length > 30_000 && bundled.length < original.length, "length " + bundled.length);
        assertArrayEquals(Arrays.copyOf(original, bundled.length), bundled, "the first " + bundled.length + " bytes");
    }

    private static List<String> names(Path folder) throws IOException {
        try (Stream<Path> files = Files.list(folder)) {
            return files.map(file -> file.getFileName().toString()).sorted().toList();
        }
    }

    private static void assertFilesEqual(Path original, Path bundled) throws IOException {
        long mismatch = Files.mismatch(original, bundled);
        assertEquals(-1L, mismatch, bundled + " differs from " + original + " at byte " + mismatch);
    }
}
