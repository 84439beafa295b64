package org.bitdelta.examples.cli;

import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.spi.TensorBackend;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.util.List;
import java.util.Locale;

@Command(name = "compress", mixinStandardHelpOptions = true,
        description = "Compress a fine-tune against its base into a .bitdelta file (1-bit signs + scales).")
final class CompressCommand extends CliCommand {
    @Mixin
    ModelPairOptions models;

    @Mixin
    OutputFileOptions output;

    @Option(names = "--per-row-scales", description = "one scale per output row instead of one per matrix")
    boolean perRowScales;

    @Option(names = "--matrix-pattern", paramLabel = "REGEX",
            description = "tensor names to compress (full match; repeatable); default: the q/k/v/o/gate/up/down projections")
    List<String> matrixPatterns;

    @Mixin
    BackendOption backend;

    @Override
    public Integer call() {
        var out = out();
        output.refuseExisting();
        CompressOptions options = CompressOptions.defaults().perRowScales(perRowScales).progress(new ProgressBar(err()));
        if (matrixPatterns != null && !matrixPatterns.isEmpty()) {
            options = options.matrixPatterns(matrixPatterns);
        }
        long start = System.nanoTime();
        try (TensorBackend tensorBackend = backend.open();
             DeltaModel delta = BitDelta.compress(models.base, models.finetuned, options.backend(tensorBackend))) {
            delta.save(output.file, output.force);
            double seconds = (System.nanoTime() - start) / 1e9;
            long fileBytes = Sizes.fileBytes(output.file);
            out.printf(Locale.ROOT, "compressed %d matrices to 1 bit (%s scales), kept %d other tensors whole%n",
                    delta.matrices().size(), perRowScales ? "per-row" : "per-matrix", delta.tensors().size());
            out.printf(Locale.ROOT, "wrote %s: %s", output.file, Sizes.bytes(fileBytes));
            if (delta.finetunedWeightBytes().isPresent()) {
                long finetunedBytes = delta.finetunedWeightBytes().getAsLong();
                out.printf(Locale.ROOT, " (fine-tune weights %s, %.1fx smaller)", Sizes.bytes(finetunedBytes), (double) finetunedBytes / fileBytes);
            }
            out.printf(Locale.ROOT, " in %.2f s%n", seconds);
        }
        return 0;
    }
}
