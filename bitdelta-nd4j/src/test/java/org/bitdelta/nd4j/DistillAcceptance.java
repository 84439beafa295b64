package org.bitdelta.nd4j;

import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.DistillOptions;
import org.bitdelta.ScaleDistiller;
import org.bitdelta.testing.TestData;

import java.nio.file.Path;
import java.util.Locale;

/**
 * The acceptance runs of docs/quality.md (not a unit test: minutes each). Arguments: pair name
 * (tinyllama-shakespeare or stories260K-ft-shakespeare), per-matrix|per-row, steps, seed, output file.
 */
public final class DistillAcceptance {
    public static void main(String[] args) {
        String pair = args[0];
        boolean perRow = args[1].equals("per-row");
        int steps = Integer.parseInt(args[2]);
        long seed = Long.parseLong(args[3]);
        Path out = Path.of(args[4]);
        Path base;
        Path finetuned;
        Path calibration;
        if (pair.equals("tinyllama-shakespeare")) {
            base = TestData.shared("models/tinyllama-shakespeare-base");
            finetuned = TestData.shared("models/tinyllama-shakespeare-finetuned");
            calibration = TestData.shared("text/calibration/pretrain.heldout.txt");
        } else {
            base = TestData.bundledModel("stories260K");
            finetuned = TestData.bundledModel(pair);
            calibration = TestData.shared("text/calibration/tinystories-train-head-197k.txt");
        }
        Path eval = TestData.shared("text/eval/shakespeare.heldout.txt");
        try (DeltaModel delta = BitDelta.compress(base, finetuned, CompressOptions.defaults().perRowScales(perRow))) {
            double before = PerplexityOnNd4j.evaluate(base, finetuned, delta, eval, 256, 64);
            System.out.printf(Locale.ROOT, "%s %s: perplexity before distillation %.4f%n", pair, args[1], before);
            long start = System.nanoTime();
            long[] peakRss = {0};
            DistillOptions options = DistillOptions.defaults().steps(steps).seed(seed).listener(step -> {
                peakRss[0] = Math.max(peakRss[0], StepTimingProbe.rssMegabytes());
                if (step.step() % 20 == 0 || step.step() == 1) {
                    System.out.printf(Locale.ROOT, "step %d/%d loss %.5f lr %.2e %.0f tok/s %.1f s left, rss %d MB%n", step.step(), step.steps(),
                            step.loss(), step.learningRate(), step.tokensPerSecond(), step.secondsLeft(), StepTimingProbe.rssMegabytes());
                }
            });
            DeltaModel distilled = ScaleDistiller.load().distill(base, finetuned, delta, calibration, options);
            double seconds = (System.nanoTime() - start) / 1e9;
            distilled.save(out, true);
            double after = PerplexityOnNd4j.evaluate(base, finetuned, distilled, eval, 256, 64);
            System.out.printf(Locale.ROOT, "%s %s: perplexity after %d steps %.4f (before %.4f); distill %.1f s (%.3f s/step), peak RSS during distillation %d MB%n",
                    pair, args[1], steps, after, before, seconds, seconds / steps, peakRss[0]);
            System.out.println("metadata distilled = " + distilled.metadata().get("distilled"));
        }
    }
}
