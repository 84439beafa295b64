package org.bitdelta.examples.cli;

import org.bitdelta.BitDeltaException;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/** Reading the user's input files with errors that name them. */
final class CliFiles {
    private CliFiles() {
    }

    static String readText(Path file) {
        try {
            return Files.readString(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new BitDeltaException(file + ": cannot be read as UTF-8 text: " + e.getMessage(), e);
        }
    }
}
