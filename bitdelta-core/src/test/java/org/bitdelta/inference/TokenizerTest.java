package org.bitdelta.inference;

import org.bitdelta.BitDeltaException;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.nio.file.Files;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** DJL's tokenizer gives the ids the reference numbers were computed from (Python tokenizers, BOS added). */
class TokenizerTest {

    @ParameterizedTest(name = "{0}")
    @CsvSource({
            "stories260K-ft-alice, models/stories260K, text/eval/alice.heldout.txt",
            "stories260K-ft-shakespeare, models/stories260K, text/eval/shakespeare.heldout.txt",
            "tinyllama-shakespeare, models/tinyllama-shakespeare-base, text/eval/shakespeare.heldout.txt"})
    void wholeFileEncodingStartsWithTheGoldenInputIds(String pair, String model, String text) throws IOException {
        int[] golden = Golden.read(TestData.shared("golden/" + pair + ".safetensors")).inputIds();
        try (Tokenizer tokenizer = Tokenizer.load(TestData.shared(model))) {
            int[] ids = tokenizer.encode(Files.readString(TestData.shared(text)));
            assertArrayEquals(golden, Arrays.copyOf(ids, golden.length), pair + ": first " + golden.length + " ids of " + text);
        }
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource({"text/eval/shakespeare.heldout.txt, 44847", "text/eval/wikitext-2-raw-test.txt, 464272"})
    void tokenCountsMatchTheReference(String text, int expected) throws IOException {
        try (Tokenizer tokenizer = Tokenizer.load(TestData.shared("models/tinyllama-shakespeare-base"))) {
            int[] ids = tokenizer.encode(Files.readString(TestData.shared(text)));
            assertEquals(expected, ids.length, text + ": token count with special tokens (no truncation)");
            assertEquals(0, ids[0], "BOS (id 0) first");
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
}
