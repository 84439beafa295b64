package org.bitdelta.internal.serving;

import java.util.List;

/**
 * A request checked against the model and tokenized, ready to schedule.
 *
 * @param tenant      the tenant as the decoder names it (the base alias resolved to "base")
 * @param prompt      the prompt's token ids
 * @param maxTokens   tokens to generate at most: the request's max_tokens, clamped to the context
 * @param clamped     whether the context, not max_tokens, set {@code maxTokens}
 * @param endTokens   end-of-sequence token ids (empty with ignore_eos)
 * @param stopTokens  the request's stop token ids
 * @param stopStrings the request's stop strings
 */
record PreparedRequest(String tenant, int[] prompt, int maxTokens, boolean clamped, float temperature, int topK, float topP, long seed,
                       int[] endTokens, int[] stopTokens, List<String> stopStrings) {
}
