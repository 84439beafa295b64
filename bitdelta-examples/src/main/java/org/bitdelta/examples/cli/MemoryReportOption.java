package org.bitdelta.examples.cli;

import org.bitdelta.inference.DecoderModel;
import org.bitdelta.serving.Engine;
import picocli.CommandLine.Option;

import java.io.PrintWriter;

/** {@code --verbose}, shared by the commands that run a model: the memory report after the results. */
final class MemoryReportOption {
    @Option(names = "--verbose", description = "also print the memory the backend holds: base, each tenant, KV cache, workspace")
    boolean verbose;

    void printIfAsked(PrintWriter out, DecoderModel model, String backendName) {
        if (verbose) {
            MemoryReport.print(out, model, backendName);
        }
    }

    void printIfAsked(PrintWriter out, Engine engine, String backendName) {
        if (verbose) {
            MemoryReport.print(out, engine.stats(), backendName);
        }
    }
}
