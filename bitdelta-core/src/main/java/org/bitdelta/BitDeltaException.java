package org.bitdelta;

/**
 * Every error the library reports about its input (files, tensors, shapes, configs) is one of these; the
 * message names the file and the tensor or field that was wrong.
 */
public class BitDeltaException extends RuntimeException {
    public BitDeltaException(String message) {
        super(message);
    }

    public BitDeltaException(String message, Throwable cause) {
        super(message, cause);
    }
}
