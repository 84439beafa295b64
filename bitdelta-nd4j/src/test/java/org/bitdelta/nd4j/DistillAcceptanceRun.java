package org.bitdelta.nd4j;

import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.DistillOptions;
import org.bitdelta.ScaleDistiller;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.Locale;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The acceptance runs of docs/quality.md: the reference protocol (200 steps, batch 4, 128 tokens, lr 1e-4) on a
 * model pair, perplexity on text/eval/shakespeare.heldout.txt (64 windows of 256) before and after, against the
 * bound. Minutes each, so part of neither `mvn test` nor the acceptance suite `mvn test -Pacceptance` (the class name
 * does not end in Test); it reads the acceptance data folder (-Dbitdelta.acceptance.data, default ../shared/data).
 * Run one with
 * <pre>
 * mvn -q -pl bitdelta-nd4j -am test -Dsurefire.failIfNoSpecifiedTests=false -Dtest=DistillAcceptanceRun \
 *     -Dacceptance.pair=tinyllama-shakespeare -Dacceptance.scales=per-row -Dacceptance.seed=1
 * </pre>
 * (pairs: tinyllama-shakespeare, stories260K-ft-shakespeare; scales: per-matrix, per-row).
 */
class DistillAcceptanceRun {
    @Test
    void distillationRecoversThePerplexity() {
        String pair = System.getProperty("acceptance.pair", "tinyllama-shakespeare");
        String scales = System.getProperty("acceptance.scales", "per-matrix");
        int steps = Integer.getInteger("acceptance.steps", 200);
        long seed = Long.getLong("acceptance.seed", 1L);
        boolean tinyllama = pair.equals("tinyllama-shakespeare");
        double bound = tinyllama ? (scales.equals("per-row") ? 36.5 : 37.0) : 16.5;
        Path base = tinyllama ? TestData.acceptance("models/tinyllama-shakespeare-base") : TestData.bundledModel("stories260K");
        Path finetuned = tinyllama ? TestData.acceptance("models/tinyllama-shakespeare-finetuned") : TestData.bundledModel(pair);
        Path calibration = TestData.acceptance(tinyllama ? "text/calibration/pretrain.heldout.txt" : "text/calibration/tinystories-train-head-197k.txt");
        Path eval = TestData.acceptance("text/eval/shakespeare.heldout.txt");
        try (DeltaModel delta = BitDelta.compress(base, finetuned, CompressOptions.defaults().perRowScales(scales.equals("per-row")))) {
            double before = PerplexityOnNd4j.evaluate(base, finetuned, delta, eval, 256, 64);
            long[] peakRss = {0};
            long start = System.nanoTime();
            DistillOptions options = DistillOptions.defaults().steps(steps).seed(seed).listener(step -> {
                peakRss[0] = Math.max(peakRss[0], DistillBenchmark.rss("VmRSS"));
                if (step.step() % 25 == 0 || step.step() == 1) {
                    System.err.printf(Locale.ROOT, "step %d/%d loss %.5f %.0f tok/s %.0f s left, rss %d MB%n", step.step(), step.steps(),
                            step.loss(), step.tokensPerSecond(), step.secondsLeft(), DistillBenchmark.rss("VmRSS"));
                }
            });
            DeltaModel distilled = ScaleDistiller.load().distill(base, finetuned, delta, calibration, options);
            double seconds = (System.nanoTime() - start) / 1e9;
            double after = PerplexityOnNd4j.evaluate(base, finetuned, distilled, eval, 256, 64);
            String summary = String.format(Locale.ROOT, "%s %s seed %d: perplexity %.4f -> %.4f after %d steps (bound %.1f); %.1f s, %.3f s/step, peak RSS %d MB; %s",
                    pair, scales, seed, before, after, steps, bound, seconds, seconds / steps, peakRss[0], distilled.metadata().get(ScaleDistiller.METADATA_KEY));
            System.err.println("ACCEPTANCE " + summary);
            assertTrue(after <= bound, summary);
        }
    }
}
