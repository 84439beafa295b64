package org.bitdelta.examples.cli;

import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.spi.TensorBackend;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "compress", mixinStandardHelpOptions = true,
        description = "Compress a fine-tune against its base into a .bitdelta file (1-bit signs + scales).")
final class CompressCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--base", required = true, paramLabel = "DIR", description = "Hugging Face folder of the base model")
    Path base;

    @Option(names = "--finetuned", required = true, paramLabel = "DIR", description = "Hugging Face folder of the fine-tune")
    Path finetuned;

    @Option(names = "--out", required = true, paramLabel = "FILE", description = "the .bitdelta file to write")
    Path out;

    @Option(names = "--per-row-scales", description = "one scale per output row instead of one per matrix")
    boolean perRowScales;

    @Option(names = "--matrix-pattern", paramLabel = "REGEX",
            description = "tensor names to compress (full match; repeatable); default: the q/k/v/o/gate/up/down projections")
    List<String> matrixPatterns;

    @Option(names = "--force", description = "overwrite FILE if it exists")
    boolean force;

    @Mixin
    BackendOption backend;

    @Override
    public Integer call() {
        var out = spec.commandLine().getOut();
        CliFiles.refuseExisting(this.out, force);
        CompressOptions options = CompressOptions.defaults().perRowScales(perRowScales)
                .progress(new ProgressBar(spec.commandLine().getErr()));
        if (matrixPatterns != null && !matrixPatterns.isEmpty()) {
            options = options.matrixPatterns(matrixPatterns);
        }
        long start = System.nanoTime();
        try (TensorBackend tensorBackend = backend.open();
             DeltaModel delta = BitDelta.compress(base, finetuned, options.backend(tensorBackend))) {
            delta.save(this.out, force);
            double seconds = (System.nanoTime() - start) / 1e9;
            long fileBytes = Sizes.fileBytes(this.out);
            out.printf(Locale.ROOT, "compressed %d matrices to 1 bit (%s scales), kept %d other tensors whole%n",
                    delta.matrices().size(), perRowScales ? "per-row" : "per-matrix", delta.tensors().size());
            out.printf(Locale.ROOT, "wrote %s: %s", this.out, Sizes.bytes(fileBytes));
            if (delta.finetunedWeightBytes().isPresent()) {
                long finetunedBytes = delta.finetunedWeightBytes().getAsLong();
                out.printf(Locale.ROOT, " (fine-tune weights %s, %.1fx smaller)", Sizes.bytes(finetunedBytes), (double) finetunedBytes / fileBytes);
            }
            out.printf(Locale.ROOT, " in %.2f s%n", seconds);
        }
        return 0;
    }
}
