package org.bitdelta.serving;

import org.bitdelta.BitDeltaException;

/**
 * A request the engine refuses: its message names the field (OpenAI's names: tenant, prompt, messages,
 * max_tokens, temperature, top_p, top_k, stop, stop_token_ids) and the limit it broke. Thrown by the
 * {@link Request} setters and by {@link Engine#submit}, before anything runs.
 */
public class InvalidRequestException extends BitDeltaException {
    private final String field;

    public InvalidRequestException(String field, String message) {
        super(message);
        this.field = field;
    }

    /** The request field that was wrong, e.g. "max_tokens" ("tenant" for an unknown tenant). */
    public String field() {
        return field;
    }
}
