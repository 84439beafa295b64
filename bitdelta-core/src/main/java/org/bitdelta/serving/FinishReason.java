package org.bitdelta.serving;

/** Why a completion ended. */
public enum FinishReason {
    /** The model produced an end-of-sequence token, a stop token, or the text reached a stop string. */
    STOP,
    /** max_tokens were generated, or the sequence reached the model's context length. */
    LENGTH,
    /** {@link Completion#cancel()} was called, or the engine was closed. */
    CANCELLED,
    /** This request failed (its tenant was removed or does not fit the device budget, or the step failed). */
    ERROR
}
