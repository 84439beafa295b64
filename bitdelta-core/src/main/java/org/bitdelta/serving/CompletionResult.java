package org.bitdelta.serving;

/**
 * The outcome of one request.
 *
 * @param tenant       the tenant that served it (as named in the request)
 * @param text         the generated text: the concatenation of every {@link Piece#text()}, a stop string and what
 *                     follows it cut off, end-of-sequence and stop tokens not rendered
 * @param tokens       the generated tokens, a final end-of-sequence or stop token included (the prompt not)
 * @param finishReason why it ended
 * @param finishDetail what exactly ended it, for people: "eos token 2", "stop string \"\\n\\n\"",
 *                     "max_tokens 64", "context length 512", "cancelled", or the error message
 * @param stopString   the stop string that ended it, else null
 * @param stopToken    the end-of-sequence or stop token that ended it, else −1
 * @param usage        token counts
 * @param timings      when it was submitted, scheduled, each token, and when it ended
 */
public record CompletionResult(String tenant, String text, int[] tokens, FinishReason finishReason, String finishDetail,
                               String stopString, int stopToken, Usage usage, Timings timings) {
    public CompletionResult {
        tokens = tokens.clone();
    }

    @Override
    public int[] tokens() {
        return tokens.clone();
    }

    /** The error message when {@link #finishReason()} is {@link FinishReason#ERROR}, else null. */
    public String error() {
        return finishReason == FinishReason.ERROR ? finishDetail : null;
    }
}
