package org.bitdelta.examples.cli;

import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.Locale;

@Command(name = "merge", mixinStandardHelpOptions = true,
        description = "Rebuild the full fine-tune (base + scale * signs) as a Hugging Face folder.")
final class MergeCommand extends CliCommand {
    @Option(names = "--base", required = true, paramLabel = "DIR", description = "the base model the delta was made from")
    Path base;

    @Option(names = "--delta", required = true, paramLabel = "FILE", description = "a .bitdelta file")
    Path delta;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "the folder to write")
    Path out;

    @Option(names = "--force", description = "replace DIR if it exists")
    boolean force;

    @Override
    public Integer call() {
        CliFiles.refuseExisting(out, force);
        long start = System.nanoTime();
        try (DeltaModel model = DeltaModel.load(delta)) {
            BitDelta.merge(base, model, out, force, new ProgressBar(err()));
        }
        out().printf(Locale.ROOT, "wrote %s in %.2f s%n", out, (System.nanoTime() - start) / 1e9);
        return 0;
    }
}
