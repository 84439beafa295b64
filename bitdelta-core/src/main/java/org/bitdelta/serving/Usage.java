package org.bitdelta.serving;

/**
 * Token counts of one completion.
 *
 * @param promptTokens     tokens of the prompt (after the chat template and the tokenizer's special tokens)
 * @param completionTokens tokens generated, a final end-of-sequence or stop token included
 */
public record Usage(int promptTokens, int completionTokens) {
    public int totalTokens() {
        return promptTokens + completionTokens;
    }
}
