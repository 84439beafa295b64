package org.bitdelta.inference;

import org.bitdelta.testing.Golden;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.nio.file.Files;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * {@link TokenizerTest} on the tinyllama pair's byte-level BPE tokenizer (vocabulary 4096) of the data folder:
 * its golden input ids, and its token counts of reference.json on whole files (the WikiText-2 test split is 1.3 MB).
 */
class TokenizerAcceptanceTest {

    @Test
    void wholeFileEncodingStartsWithTheGoldenInputIds() throws IOException {
        TokenizerTest.checkGoldenInputIds("tinyllama-shakespeare",
                Golden.read(TestData.acceptance("golden/tinyllama-shakespeare.safetensors")).inputIds(),
                TestData.acceptance("models/tinyllama-shakespeare-base"), TestData.acceptance("text/eval/shakespeare.heldout.txt"));
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource({"text/eval/shakespeare.heldout.txt, 44847", "text/eval/wikitext-2-raw-test.txt, 464272"})
    void tokenCountsMatchTheReference(String text, int expected) throws IOException {
        try (Tokenizer tokenizer = Tokenizer.load(TestData.acceptance("models/tinyllama-shakespeare-base"))) {
            int[] ids = tokenizer.encode(Files.readString(TestData.acceptance(text)));
            assertEquals(expected, ids.length, text + ": token count with special tokens (no truncation)");
            assertEquals(0, ids[0], "BOS (id 0) first");
        }
    }
}
