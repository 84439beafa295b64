package org.bitdelta.examples.cli;

import org.bitdelta.BitDeltaException;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/** The user's input and output files, with errors that name them. */
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

    /**
     * Refuses an existing output before a long job starts, rather than after it; the library's own write
     * (DeltaModel.save, BitDelta.merge) checks again, atomically, when it writes.
     */
    static void refuseExisting(Path out, boolean force) {
        if (!force && Files.exists(out, LinkOption.NOFOLLOW_LINKS)) {
            throw new BitDeltaException(out + ": already exists; refusing to overwrite it (use --force)");
        }
        Path parent = out.toAbsolutePath().getParent();
        if (parent != null && !Files.isDirectory(parent)) {
            throw new BitDeltaException(out + ": the folder " + parent + " does not exist");
        }
    }

    /** Removes a folder the command created for itself, with everything in it. */
    static void deleteRecursively(Path folder) throws IOException {
        if (!Files.exists(folder, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        try (Stream<Path> walk = Files.walk(folder)) {
            for (Path each : (Iterable<Path>) walk.sorted(Comparator.reverseOrder())::iterator) {
                Files.delete(each);
            }
        }
    }
}
