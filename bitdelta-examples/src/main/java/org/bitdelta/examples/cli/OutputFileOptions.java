package org.bitdelta.examples.cli;

import picocli.CommandLine.Option;

import java.nio.file.Path;

/** {@code --out FILE} and {@code --force}, shared by the commands that write a .bitdelta file. */
final class OutputFileOptions {
    @Option(names = "--out", required = true, paramLabel = "FILE", description = "the .bitdelta file to write")
    Path file;

    @Option(names = "--force", description = "overwrite FILE if it exists")
    boolean force;

    /** Refuses an existing FILE (without --force) or a missing folder before the work starts. */
    void refuseExisting() {
        CliFiles.refuseExisting(file, force);
    }
}
