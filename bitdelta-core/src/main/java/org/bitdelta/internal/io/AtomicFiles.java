package org.bitdelta.internal.io;

import org.bitdelta.BitDeltaException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * Writes that never leave a half-written file under the final name: write a temporary sibling, fsync it,
 * rename it over the target, fsync the directory. A failure removes the temporary and keeps what was there.
 */
public final class AtomicFiles {
    private static final Logger LOG = LoggerFactory.getLogger(AtomicFiles.class);

    private AtomicFiles() {
    }

    /** Work that fills a temporary path (a file or a folder). */
    @FunctionalInterface
    public interface Writer {
        void write(Path temporary) throws IOException;
    }

    /** Refuses an existing {@code target} unless {@code overwrite}; the message says how to override. */
    public static void checkTarget(Path target, boolean overwrite) {
        if (!overwrite && Files.exists(target, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            throw new BitDeltaException(target + ": already exists; refusing to overwrite it (use --force / overwrite=true)");
        }
        Path parent = target.toAbsolutePath().getParent();
        if (parent != null && !Files.isDirectory(parent)) {
            throw new BitDeltaException(target + ": the folder " + parent + " does not exist");
        }
    }

    /** Writes one file atomically. */
    public static void writeFile(Path target, boolean overwrite, Writer writer) {
        checkTarget(target, overwrite);
        Path directory = target.toAbsolutePath().getParent();
        Path temporary = null;
        try {
            temporary = Files.createTempFile(directory, "." + target.getFileName() + ".", ".partial");
            makeReadable(temporary, "rw-r--r--");
            writer.write(temporary);
            try (FileChannel channel = FileChannel.open(temporary, StandardOpenOption.WRITE)) {
                channel.force(true);
            }
            move(temporary, target, overwrite);
            temporary = null;
            syncDirectory(directory);
        } catch (IOException e) {
            throw new BitDeltaException(target + ": write failed: " + e, e);
        } finally {
            deleteQuietlyOnFailure(temporary);
        }
    }

    /** Writes a whole folder atomically: it appears complete under {@code target}, or not at all. */
    public static void writeDirectory(Path target, boolean overwrite, Writer writer) {
        checkTarget(target, overwrite);
        Path parent = target.toAbsolutePath().getParent();
        Path temporary = null;
        Path displaced = null;
        try {
            temporary = Files.createTempDirectory(parent, "." + target.getFileName() + ".");
            makeReadable(temporary, "rwxr-xr-x");
            writer.write(temporary);
            try (Stream<Path> files = Files.walk(temporary)) {
                for (Path file : (Iterable<Path>) files.filter(Files::isRegularFile)::iterator) {
                    try (FileChannel channel = FileChannel.open(file, StandardOpenOption.WRITE)) {
                        channel.force(true);
                    }
                }
            }
            if (Files.exists(target)) {
                // A folder cannot be renamed over a non-empty one: move the old one aside, then drop it.
                displaced = Files.createTempDirectory(parent, "." + target.getFileName() + ".old.");
                Files.delete(displaced);
                Files.move(target, displaced, StandardCopyOption.ATOMIC_MOVE);
            }
            Files.move(temporary, target, StandardCopyOption.ATOMIC_MOVE);
            temporary = null;
            syncDirectory(parent);
            if (displaced != null) {
                deleteRecursively(displaced);
                displaced = null;
            }
        } catch (IOException e) {
            throw new BitDeltaException(target + ": write failed: " + e, e);
        } finally {
            deleteQuietlyOnFailure(temporary);
        }
    }

    /** Temporary files are created owner-only; the finished output gets the usual permissions of a model file. */
    private static void makeReadable(Path path, String permissions) throws IOException {
        if (path.getFileSystem().supportedFileAttributeViews().contains("posix")) {
            Files.setPosixFilePermissions(path, java.nio.file.attribute.PosixFilePermissions.fromString(permissions));
        }
    }

    private static void move(Path temporary, Path target, boolean overwrite) throws IOException {
        try {
            if (overwrite) {
                Files.move(temporary, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } else {
                Files.move(temporary, target, StandardCopyOption.ATOMIC_MOVE);
            }
        } catch (AtomicMoveNotSupportedException e) {
            throw new IOException("the file system of " + target + " cannot rename atomically", e);
        } catch (FileAlreadyExistsException e) {
            throw new BitDeltaException(target + ": appeared while it was being written; refusing to overwrite it", e);
        }
    }

    private static void syncDirectory(Path directory) {
        // Linux lets a directory be opened and fsynced; that makes the rename durable. Other systems may refuse.
        try (FileChannel channel = FileChannel.open(directory, StandardOpenOption.READ)) {
            channel.force(true);
        } catch (IOException ignoredBecauseUnsupported) {
            // Not every platform supports fsync on a directory; the rename itself is still atomic there.
        }
    }

    private static void deleteQuietlyOnFailure(Path temporary) {
        if (temporary == null) {
            return;
        }
        try {
            deleteRecursively(temporary);
        } catch (IOException e) {
            // The original failure matters more; say where the leftover is.
            LOG.warn("could not remove the temporary {}: {}", temporary, e.toString());
        }
    }

    public static void deleteRecursively(Path path) throws IOException {
        if (!Files.exists(path, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        try (Stream<Path> walk = Files.walk(path)) {
            for (Path each : (Iterable<Path>) walk.sorted(Comparator.reverseOrder())::iterator) {
                Files.delete(each);
            }
        }
    }
}
