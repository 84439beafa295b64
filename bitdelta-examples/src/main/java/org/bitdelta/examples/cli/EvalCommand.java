package org.bitdelta.examples.cli;

import org.bitdelta.DeltaModel;
import org.bitdelta.inference.DecoderModel;
import org.bitdelta.inference.Perplexity;
import org.bitdelta.spi.TensorBackend;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;

@Command(name = "eval", mixinStandardHelpOptions = true,
        description = {"Perplexity of the base model, or of a BitDelta fine-tune served on it, on a text file.",
                "Protocol: the whole file's token ids (BOS first), non-overlapping windows from the start, loss on "
                        + "tokens 1..window-1 of each window, the first --max-windows windows; ppl = exp(mean loss).",
                "The last line is ppl=<value>."})
final class EvalCommand extends CliCommand {
    @Mixin
    BaseModelOption base;

    @Option(names = "--delta", paramLabel = "FILE", description = "a .bitdelta compressed against the base; without it the base is evaluated")
    Path delta;

    @Option(names = "--text", required = true, paramLabel = "FILE", description = "UTF-8 text to evaluate on")
    Path text;

    @Option(names = "--window", defaultValue = "256", paramLabel = "N", description = "tokens per window (default: ${DEFAULT-VALUE})")
    int window;

    @Option(names = "--max-windows", defaultValue = "64", paramLabel = "N", description = "windows at most (default: ${DEFAULT-VALUE})")
    int maxWindows;

    @Mixin
    BackendOption backend;

    @Mixin
    MemoryReportOption memoryReport;

    @Override
    public Integer call() {
        PrintWriter out = out();
        long start = System.nanoTime();
        try (TensorBackend tensorBackend = backend.open();
             DecoderModel model = DecoderModel.load(base.folder, tensorBackend);
             DeltaModel deltaModel = delta != null ? DeltaModel.load(delta) : null) {
            String tenant = DecoderModel.BASE;
            if (deltaModel != null) {
                tenant = "delta";
                model.addTenant(tenant, deltaModel);
            }
            Perplexity.Result result = Perplexity.evaluate(model, tenant, model.tokenizer().encode(CliFiles.readText(text)),
                    window, maxWindows, new ProgressBar(err()));
            out.printf(Locale.ROOT, "model: %s%s%n", base.folder, delta != null ? " + " + delta : "");
            out.printf(Locale.ROOT, "text: %s, %d windows of %d tokens, %d tokens scored, mean loss %.6f nats, %.1f s%n",
                    text, result.windows(), window, result.scoredTokens(), result.meanLoss(), (System.nanoTime() - start) / 1e9);
            memoryReport.printIfAsked(out, model, tensorBackend.name());
            out.printf(Locale.ROOT, "ppl=%.4f%n", result.perplexity());
        }
        return 0;
    }
}
