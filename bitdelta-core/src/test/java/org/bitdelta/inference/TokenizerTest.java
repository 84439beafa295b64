package org.bitdelta.inference;

import org.bitdelta.BitDeltaException;
import org.bitdelta.testing.Golden;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * DJL's tokenizer gives the ids the reference numbers were computed from (Python tokenizers, BOS added), on the
 * bundled models (the tinyllama byte-level BPE tokenizer: {@link TokenizerAcceptanceTest}).
 */
class TokenizerTest {

    @ParameterizedTest(name = "{0}")
    @CsvSource({
            "stories260K-ft-alice, stories260K, alice.heldout.txt",
            "stories260K-ft-shakespeare, stories260K, shakespeare.heldout.txt"})
    void wholeFileEncodingStartsWithTheGoldenInputIds(String pair, String model, String text) throws IOException {
        checkGoldenInputIds(pair, Golden.read(TestData.bundled("golden/" + pair + ".safetensors")).inputIds(),
                TestData.bundledModel(model), TestData.bundledText(text));
    }

    static void checkGoldenInputIds(String pair, int[] golden, Path model, Path text) throws IOException {
        try (Tokenizer tokenizer = Tokenizer.load(model)) {
            int[] ids = tokenizer.encode(Files.readString(text));
            assertArrayEquals(golden, Arrays.copyOf(ids, golden.length), pair + ": first " + golden.length + " ids of " + text);
        }
    }

    @Test
    void bosIsAddedOnceAndDecodeRoundTrips() {
        try (Tokenizer tokenizer = Tokenizer.load(TestData.bundledModel("stories260K"))) {
            int[] ids = tokenizer.encode("Once upon a time, there was a little girl.");
            assertEquals(1, ids[0], "BOS");
            assertTrue(Arrays.stream(ids).skip(1).noneMatch(id -> id == 1), "BOS only first: " + Arrays.toString(ids));
            assertEquals("Once upon a time, there was a little girl.", tokenizer.decode(ids));
            int[] plain = tokenizer.encodeWithoutSpecialTokens("Once upon a time");
            assertTrue(plain.length > 0 && plain[0] != 1, Arrays.toString(plain));
        }
    }

    @Test
    void aFolderWithoutTokenizerIsAClearError() {
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> Tokenizer.load(TestData.bundledModel("mistral-tiny")));
        assertTrue(error.getMessage().contains("tokenizer.json"), error.getMessage());
    }

    /** The messages DJL 0.38 gives when its native library cannot be fetched (a GPU host without network). */
    @Test
    void aNativeLibraryFailureNamesRustFlavorAndOtherFailuresDoNot() {
        Exception offline = new RuntimeException("Failed to load Huggingface native library.",
                new IllegalStateException("Cannot download jni files: https://publish.djl.ai/tokenizers/0.21.0/jnilib/0.38.0/linux-x86_64/cu122-90/libtokenizers.so",
                        new IOException("Blocked request to non-public address: publish.djl.ai")));
        assertTrue(Tokenizer.nativeLibraryHint(offline).contains("RUST_FLAVOR=cpu"), Tokenizer.nativeLibraryHint(offline));
        assertEquals("", Tokenizer.nativeLibraryHint(new IllegalArgumentException("data did not match any variant of untagged enum ModelWrapper")));
    }
}
