package org.bitdelta.serving;

/**
 * One step of a streamed completion: the tokens generated since the previous piece and the text they completed.
 *
 * <p>Text is released only when it is final: a token that ends inside a multi-byte UTF-8 character, or text that
 * could be the start of a stop string, is held back and comes with a later piece, so {@code text} may be empty
 * while {@code tokens} is not. Concatenating every piece's text gives {@link CompletionResult#text()}.
 *
 * <p>Every completion ends with exactly one piece whose {@link #result()} is set (it may carry the last token,
 * the held-back text, or nothing: after a cancellation or an error).
 *
 * @param text     the new text, complete characters only (possibly empty)
 * @param tokens   the new tokens (usually one; none in a final piece without a token)
 * @param nanoTime {@link System#nanoTime()} when it was produced
 * @param result   the completion's result on its last piece, else null
 */
public record Piece(String text, int[] tokens, long nanoTime, CompletionResult result) {
    public Piece {
        tokens = tokens.clone();
    }

    @Override
    public int[] tokens() {
        return tokens.clone();
    }

    /** Whether this is the completion's last piece. */
    public boolean last() {
        return result != null;
    }

    /** The finish reason on the last piece, else null. */
    public FinishReason finishReason() {
        return result == null ? null : result.finishReason();
    }
}
