package org.bitdelta.examples.cli;

import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.LinkedHashMap;

/** {@code --delta NAME=FILE}, shared by the commands that serve fine-tunes as tenants of the engine. */
final class TenantOptions {
    /** In the order given: tenants are added, and listed, in that order. */
    @Option(names = "--delta", paramLabel = "NAME=FILE", description = "a tenant: its name and its .bitdelta file (repeatable)")
    LinkedHashMap<String, Path> deltas = new LinkedHashMap<>();
}
