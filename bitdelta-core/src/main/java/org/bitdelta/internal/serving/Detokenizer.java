package org.bitdelta.internal.serving;

import org.bitdelta.inference.Tokenizer;

import java.util.Arrays;

/**
 * Turns a growing token sequence into text increments, as vLLM and TGI do: decode a short window that ends at the
 * new tokens, and again without them, and release the difference. The window starts a few tokens back (in the
 * prompt at first) so that the tokenizer's rules for the first token of a text (SentencePiece drops its leading
 * space) do not apply to a token in the middle. While the newest text ends in U+FFFD (bytes of an unfinished UTF-8
 * character) nothing is released; the tokens wait for the rest of the character.
 */
final class Detokenizer {
    /** Tokens of context before the unreleased ones. */
    private static final int CONTEXT_TOKENS = 5;
    private static final char REPLACEMENT = '\uFFFD';

    private final Tokenizer tokenizer;
    private int[] tokens;
    private int count;
    /** Start of the decoding window. */
    private int prefixOffset;
    /** End of the tokens whose text was released. */
    private int readOffset;

    /** @param tokenizer null: the model has no tokenizer, and the text stays empty */
    Detokenizer(Tokenizer tokenizer, int[] prompt) {
        this.tokenizer = tokenizer;
        int context = Math.min(CONTEXT_TOKENS, prompt.length);
        this.tokens = Arrays.copyOfRange(prompt, prompt.length - context, Math.max(prompt.length - context + 16, prompt.length));
        this.count = context;
        this.prefixOffset = 0;
        this.readOffset = context;
    }

    /** Adds a generated token; returns the text it completes (empty while a character is unfinished). */
    String add(int token) {
        if (count == tokens.length) {
            tokens = Arrays.copyOf(tokens, tokens.length * 2);
        }
        tokens[count++] = token;
        if (tokenizer == null) {
            return "";
        }
        String before = decode(prefixOffset, readOffset);
        String after = decode(prefixOffset, count);
        if (after.length() <= before.length() || after.charAt(after.length() - 1) == REPLACEMENT) {
            return "";
        }
        prefixOffset = readOffset;
        readOffset = count;
        compact();
        return after.substring(before.length());
    }

    /** The text of the tokens not yet released, unfinished characters as U+FFFD: for the end of a completion. */
    String flush() {
        if (tokenizer == null || readOffset == count) {
            return "";
        }
        String before = decode(prefixOffset, readOffset);
        String after = decode(prefixOffset, count);
        readOffset = count;
        return after.length() > before.length() ? after.substring(before.length()) : "";
    }

    private String decode(int from, int to) {
        return from == to ? "" : tokenizer.decode(Arrays.copyOfRange(tokens, from, to));
    }

    /** Drops tokens before the window so the array stays small. */
    private void compact() {
        if (prefixOffset > 64) {
            System.arraycopy(tokens, prefixOffset, tokens, 0, count - prefixOffset);
            count -= prefixOffset;
            readOffset -= prefixOffset;
            prefixOffset = 0;
        }
    }
}
