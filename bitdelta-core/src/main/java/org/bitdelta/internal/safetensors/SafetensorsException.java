package org.bitdelta.internal.safetensors;

import org.bitdelta.BitDeltaException;

import java.nio.file.Path;

/** A safetensors file that cannot be read or written as asked; the message names the file (and tensor). */
public final class SafetensorsException extends BitDeltaException {
    public SafetensorsException(Path file, String problem) {
        super(file + ": " + problem);
    }

    public SafetensorsException(Path file, String problem, Throwable cause) {
        super(file + ": " + problem, cause);
    }
}
