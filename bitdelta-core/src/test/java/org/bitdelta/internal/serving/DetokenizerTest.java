package org.bitdelta.internal.serving;

import org.bitdelta.inference.Tokenizer;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

/**
 * {@link Detokenizer}: text comes out in complete characters only, whatever the tokens' byte boundaries, and the
 * pieces add up to the tokenizer's decoding of the whole sequence. Two tokenizer families: SentencePiece with byte
 * fallback (stories260K: byte b is token 3 + b, the decoder drops the text's first leading space) and GPT-2 style
 * byte-level BPE (one token per byte).
 */
class DetokenizerTest {
    private static final String TEXT = "Lily said: café, naïve, 日本語 🙂🎭!";

    /** Feeds the tokens one by one; returns the released pieces (the flush last). */
    private static List<String> pieces(Tokenizer tokenizer, int[] prompt, int[] generated) {
        Detokenizer detokenizer = new Detokenizer(tokenizer, prompt);
        List<String> pieces = new ArrayList<>();
        for (int token : generated) {
            pieces.add(detokenizer.add(token));
        }
        pieces.add(detokenizer.flush());
        return pieces;
    }

    private static int[] bytesAsTokens(String text, int offset) {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        int[] tokens = new int[bytes.length];
        for (int i = 0; i < bytes.length; i++) {
            tokens[i] = offset + (bytes[i] & 0xFF);
        }
        return tokens;
    }

    private static void assertWholeCharacters(List<String> pieces) {
        for (String piece : pieces) {
            assertFalse(piece.contains("\uFFFD"), "a piece holds a broken character: " + pieces);
            assertFalse(!piece.isEmpty() && Character.isHighSurrogate(piece.charAt(piece.length() - 1)), "a piece ends inside a surrogate pair: " + pieces);
        }
    }

    @Test
    void sentencePieceByteFallbackReleasesWholeCharacters() {
        try (Tokenizer tokenizer = Tokenizer.load(TestData.bundledModel("stories260K"))) {
            // "Once upon" as the tokenizer encodes it, then every byte of TEXT as a byte-fallback token (3 + byte).
            int[] prompt = tokenizer.encode("Once upon");
            int[] generated = bytesAsTokens(TEXT, 3);
            List<String> pieces = pieces(tokenizer, prompt, generated);
            assertWholeCharacters(pieces);
            assertEquals(TEXT, String.join("", pieces));
            // "é" is two bytes: nothing after its first byte, the whole character after its second.
            int at = "Lily said: caf".getBytes(StandardCharsets.UTF_8).length;
            assertEquals("", pieces.get(at));
            assertEquals("é", pieces.get(at + 1));
            // "🙂" is four bytes (two UTF-16 chars): released at once with its fourth byte.
            int smile = "Lily said: café, naïve, 日本語 ".getBytes(StandardCharsets.UTF_8).length;
            assertEquals(List.of("", "", "", "🙂"), pieces.subList(smile, smile + 4));
        }
    }

    @Test
    void sentencePieceWordsKeepTheirLeadingSpaces() {
        try (Tokenizer tokenizer = Tokenizer.load(TestData.bundledModel("stories260K"))) {
            int[] prompt = tokenizer.encode("Once upon a time");
            // The normalizer prepends "▁": these are "▁there", "▁was", ..., each word with its space.
            int[] generated = tokenizer.encodeWithoutSpecialTokens("there was a little girl");
            List<String> pieces = pieces(tokenizer, prompt, generated);
            assertEquals(" there was a little girl", String.join("", pieces), "pieces " + pieces);
            int[] all = new int[prompt.length + generated.length];
            System.arraycopy(prompt, 0, all, 0, prompt.length);
            System.arraycopy(generated, 0, all, prompt.length, generated.length);
            assertEquals(tokenizer.decode(all), tokenizer.decode(prompt) + String.join("", pieces));
        }
    }

    @Test
    void byteLevelBpeReleasesWholeCharacters(@TempDir Path folder) throws IOException {
        try (Tokenizer tokenizer = Tokenizer.load(ByteLevelTokenizers.write(folder))) {
            int[] prompt = {ByteLevelTokenizers.BOS, 'H', 'i'};
            int[] generated = bytesAsTokens(TEXT, 0);
            List<String> pieces = pieces(tokenizer, prompt, generated);
            assertWholeCharacters(pieces);
            assertEquals(TEXT, String.join("", pieces));
            int at = "Lily said: café, naïve, ".getBytes(StandardCharsets.UTF_8).length;
            assertEquals(List.of("", "", "日"), pieces.subList(at, at + 3), "three bytes of 日");
        }
    }

    @Test
    void anUnfinishedCharacterAtTheEndIsFlushedAsAReplacementCharacter(@TempDir Path folder) throws IOException {
        try (Tokenizer tokenizer = Tokenizer.load(ByteLevelTokenizers.write(folder))) {
            Detokenizer detokenizer = new Detokenizer(tokenizer, new int[]{ByteLevelTokenizers.BOS});
            assertEquals("a", detokenizer.add('a'));
            assertEquals("", detokenizer.add(0xE6)); // first byte of a three-byte character
            assertEquals("\uFFFD", detokenizer.flush(), "the completion ended inside a character");
            assertEquals("", detokenizer.flush(), "nothing is released twice");
        }
    }

    @Test
    void withoutATokenizerThereIsNoText() {
        Detokenizer detokenizer = new Detokenizer(null, new int[]{1, 2});
        assertEquals("", detokenizer.add(5));
        assertEquals("", detokenizer.flush());
    }
}
