package org.bitdelta.serving;

import org.bitdelta.BitDeltaException;

/**
 * {@link Engine#submit} found the waiting queue full ({@link EngineOptions#maxWaiting}): nothing was queued; retry
 * later (an HTTP server answers 429 or 503).
 */
public class EngineBusyException extends BitDeltaException {
    public EngineBusyException(String message) {
        super(message);
    }
}
