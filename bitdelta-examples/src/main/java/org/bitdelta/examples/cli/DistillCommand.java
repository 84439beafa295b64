package org.bitdelta.examples.cli;

import org.bitdelta.DeltaModel;
import org.bitdelta.DistillListener;
import org.bitdelta.DistillOptions;
import org.bitdelta.ScaleDistiller;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Locale;

@Command(name = "distill", mixinStandardHelpOptions = true,
        description = {"Refine a .bitdelta's scales by distillation: the compressed model's logits are fitted to the "
                + "fine-tune's on random windows of a calibration text (AdamW on the scales alone, signs frozen).",
                "Tip: on small machines set OMP_WAIT_POLICY=PASSIVE (the bitdelta launcher does unless it is set)."})
final class DistillCommand extends CliCommand {
    /** The fine-tune is the teacher. */
    @Mixin
    ModelPairOptions models;

    @Option(names = "--delta", required = true, paramLabel = "FILE", description = "the .bitdelta to refine (left unchanged)")
    Path delta;

    @Option(names = "--calibration", required = true, paramLabel = "TEXTFILE", description = "UTF-8 text whose token windows are the training data")
    Path calibration;

    @Mixin
    OutputFileOptions output;

    @Option(names = "--steps", paramLabel = "N", defaultValue = "200", description = "optimizer steps (default: ${DEFAULT-VALUE})")
    int steps;

    @Option(names = "--batch", paramLabel = "B", defaultValue = "4", description = "windows per step (default: ${DEFAULT-VALUE})")
    int batch;

    @Option(names = "--seq", paramLabel = "L", defaultValue = "128", description = "tokens per window (default: ${DEFAULT-VALUE})")
    int sequence;

    @Option(names = "--lr", paramLabel = "X", defaultValue = "1e-4", description = "peak learning rate, cosine-decayed to 0 (default: ${DEFAULT-VALUE})")
    double learningRate;

    @Option(names = "--weight-decay", paramLabel = "X", defaultValue = "0.01", description = "AdamW's decoupled weight decay (default: ${DEFAULT-VALUE})")
    double weightDecay;

    @Option(names = "--seed", paramLabel = "S", defaultValue = "0", description = "seed of the window choice (default: ${DEFAULT-VALUE})")
    long seed;

    @Override
    public Integer call() {
        PrintWriter out = out();
        output.refuseExisting();
        DistillOptions options = DistillOptions.defaults().steps(steps).batchSize(batch).sequenceLength(sequence)
                .learningRate(learningRate).weightDecay(weightDecay).seed(seed)
                .listener(new StepBar(err()));
        ScaleDistiller distiller = ScaleDistiller.load();
        long start = System.nanoTime();
        try (DeltaModel input = DeltaModel.load(delta)) {
            DeltaModel distilled = withoutNd4jDebugPrints(() -> distiller.distill(models.base, models.finetuned, input, calibration, options));
            distilled.save(output.file, output.force);
            out.printf(Locale.ROOT, "distilled %d scales of %d matrices (%s) in %d steps, seed %d: %s%n",
                    distilled.matrices().stream().mapToInt(m -> m.scales().length).sum(), distilled.matrices().size(),
                    input.scaleGranularity(), steps, seed, distilled.metadata().get(ScaleDistiller.METADATA_KEY));
            out.printf(Locale.ROOT, "wrote %s in %.1f s%n", output.file, (System.nanoTime() - start) / 1e9);
        }
        return 0;
    }

    /**
     * ND4J 1.0.0-M2.1 prints "Added differentiated op ..." to System.out for every op when it builds a gradient
     * graph, a leftover debug line with no switch. This command (an application, not the library) keeps those
     * lines off its output and lets everything else through.
     */
    private static <T> T withoutNd4jDebugPrints(java.util.function.Supplier<T> work) {
        PrintStream original = System.out;
        PrintStream filtered = new PrintStream(new LineFilter(original), true, StandardCharsets.UTF_8);
        System.setOut(filtered);
        try {
            return work.get();
        } finally {
            filtered.flush();
            System.setOut(original);
        }
    }

    private static final class LineFilter extends OutputStream {
        private final PrintStream target;
        private final ByteArrayOutputStream line = new ByteArrayOutputStream();

        LineFilter(PrintStream target) {
            this.target = target;
        }

        @Override
        public synchronized void write(int b) {
            line.write(b);
            if (b == '\n') {
                String text = line.toString(StandardCharsets.UTF_8);
                if (!text.startsWith("Added differentiated op ")) {
                    target.print(text);
                }
                line.reset();
            }
        }
    }

    /** One line redrawn in place on a terminal (a plain line every 10% otherwise): bar, step, loss, speed, time left. */
    static final class StepBar implements DistillListener {
        private static final int WIDTH = 30;
        private final PrintWriter err;
        private final boolean terminal = System.console() != null;
        private long lastDrawNanos;
        private int lastTenthPrinted = -1;

        StepBar(PrintWriter err) {
            this.err = err;
        }

        @Override
        public void onStep(Step step) {
            boolean finished = step.step() == step.steps();
            String text = String.format(Locale.ROOT, "step %d/%d  loss %.5f  %.0f tok/s  %s left", step.step(), step.steps(),
                    step.loss(), step.tokensPerSecond(), duration(step.secondsLeft()));
            if (terminal) {
                long now = System.nanoTime();
                if (!finished && now - lastDrawNanos < 100_000_000L) {
                    return;
                }
                lastDrawNanos = now;
                int filled = WIDTH * step.step() / step.steps();
                err.printf(Locale.ROOT, "\rdistill [%s%s] %s", "#".repeat(filled), " ".repeat(WIDTH - filled), text);
                if (finished) {
                    err.println();
                }
            } else {
                int tenth = 10 * step.step() / step.steps();
                if (tenth != lastTenthPrinted || step.step() == 1) {
                    lastTenthPrinted = tenth;
                    err.println("distill: " + text);
                }
            }
            err.flush();
        }

        private static String duration(double seconds) {
            long whole = Math.round(seconds);
            return whole >= 60 ? String.format(Locale.ROOT, "%dm%02ds", whole / 60, whole % 60) : whole + " s";
        }
    }
}
