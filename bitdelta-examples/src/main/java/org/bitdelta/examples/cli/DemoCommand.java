package org.bitdelta.examples.cli;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.BitDeltaException;
import org.bitdelta.internal.io.AtomicFiles;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Run the whole pipeline on the bundled stories260K family (no arguments needed).")
final class DemoCommand implements Callable<Integer> {
    static final String BASE = "stories260K";
    static final List<String> FINETUNES = List.of("stories260K-ft-alice", "stories260K-ft-shakespeare");

    @Spec
    CommandSpec spec;

    @Option(names = "--models", paramLabel = "DIR",
            description = "folder holding stories260K and its fine-tunes (default: the ones bundled with bitdelta)")
    Path models;

    @Option(names = "--out", paramLabel = "DIR",
            description = "keep the .bitdelta files in DIR (default: a temporary folder, removed at the end)")
    Path out;

    @Override
    public Integer call() throws IOException {
        PrintWriter out = spec.commandLine().getOut();
        Path modelFolder = models != null ? models : bundledModels();
        Path workFolder = this.out != null ? Files.createDirectories(this.out) : Files.createTempDirectory("bitdelta-demo-");
        try {
            out.printf("bitdelta demo: base %s, fine-tunes %s (from %s)%n%n", BASE, String.join(", ", FINETUNES), modelFolder);
            Path base = modelFolder.resolve(BASE);
            for (String name : FINETUNES) {
                Path finetuned = modelFolder.resolve(name);
                Path file = workFolder.resolve(name + ".bitdelta");
                long start = System.nanoTime();
                try (DeltaModel delta = BitDelta.compress(base, finetuned, CompressOptions.defaults())) {
                    delta.save(file, true);
                    double milliseconds = (System.nanoTime() - start) / 1e6;
                    long fileBytes = CompressCommand.sizeOf(file);
                    long finetunedBytes = Long.parseLong(delta.metadata().get("finetuned_weight_bytes"));
                    double meanScale = delta.matrices().stream().mapToDouble(matrix -> matrix.scale(0)).average().orElse(0);
                    out.printf(Locale.ROOT, "%s: %d matrices -> 1 bit (mean scale %.3g), %d tensors kept whole%n",
                            name, delta.matrices().size(), meanScale, delta.tensors().size());
                    out.printf(Locale.ROOT, "  %s -> %s (%.1fx smaller) in %.0f ms: %s%n", Sizes.bytes(finetunedBytes),
                            Sizes.bytes(fileBytes), (double) finetunedBytes / fileBytes, milliseconds, file);
                    BinaryDelta first = delta.matrices().iterator().next();
                    out.printf(Locale.ROOT, "  e.g. %s: %dx%d signs in %d bytes, scale %.4g%n", first.name(), first.rows(),
                            first.cols(), first.signs().byteSize(), first.scale(0));
                }
            }
            out.println();
            out.println(this.out != null ? "the .bitdelta files are in " + workFolder
                    : "done (inspect one with: ./bitdelta compress ... --out FILE, then ./bitdelta inspect FILE)");
        } finally {
            if (this.out == null) {
                AtomicFiles.deleteRecursively(workFolder);
            }
        }
        return 0;
    }

    /** The launcher passes -Dbitdelta.home=<repository>; the bundled models live in core's test resources. */
    static Path bundledModels() {
        String home = System.getProperty("bitdelta.home");
        if (home == null) {
            throw new BitDeltaException("no --models given and -Dbitdelta.home is unset: run the demo through the ./bitdelta launcher");
        }
        Path folder = Path.of(home, "bitdelta-core", "src", "test", "resources", "models");
        if (!Files.isDirectory(folder.resolve(BASE))) {
            throw new BitDeltaException(folder + ": the bundled models are missing (expected " + BASE + " there)");
        }
        return folder;
    }
}
