package org.bitdelta.nd4j;

import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.DistillOptions;
import org.bitdelta.testing.TestData;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * The distillation benchmark of docs/benchmarks-distill.md (a main, not a test): the 200-step tinyllama run of the
 * reference protocol, timed per step, with resident memory sampled every step, against the forward passes alone
 * (teacher + student, the same batches, no gradients). Arguments: [steps, default 200].
 */
public final class DistillBenchmark {
    public static void main(String[] args) {
        int steps = args.length > 0 ? Integer.parseInt(args[0]) : 200;
        Path base = TestData.acceptance("models/tinyllama-shakespeare-base");
        Path finetuned = TestData.acceptance("models/tinyllama-shakespeare-finetuned");
        Path calibration = TestData.acceptance("text/calibration/pretrain.heldout.txt");
        System.out.printf(Locale.ROOT, "machine: %d cores, Java %s, max heap %d MB, OMP_WAIT_POLICY=%s, load average at start %.2f%n",
                Runtime.getRuntime().availableProcessors(), Runtime.version(), Runtime.getRuntime().maxMemory() >> 20,
                System.getenv("OMP_WAIT_POLICY"), ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage());
        try (DeltaModel delta = BitDelta.compress(base, finetuned)) {
            DistillOptions options = DistillOptions.defaults().steps(steps).seed(1);
            int[] tokens = Nd4jScaleDistiller.calibrationTokens(finetuned, calibration, options.sequenceLength());

            long buildStart = System.nanoTime();
            double forwardSeconds;
            try (DistillationModel model = DistillationModel.open(base, finetuned, delta, DataType.FLOAT, options.batchSize(), options.sequenceLength())) {
                System.out.printf(Locale.ROOT, "graphs built in %.2f s%n", (System.nanoTime() - buildStart) / 1e9);
                SplittableRandom random = new SplittableRandom(options.seed());
                long start = System.nanoTime();
                for (int step = 0; step < steps; step++) {
                    int[][] windows = Nd4jScaleDistiller.sampleWindows(tokens, options.batchSize(), options.sequenceLength(), random);
                    INDArray target = model.teacherTarget(windows);
                    model.loss(windows, target);
                    target.close();
                }
                forwardSeconds = (System.nanoTime() - start) / 1e9;
            }
            System.out.printf(Locale.ROOT, "forward passes alone (teacher + student loss, %d batches): %.1f s, %.3f s/step; rss %d MB%n",
                    steps, forwardSeconds, forwardSeconds / steps, rss("VmRSS"));

            List<Double> stepSeconds = new ArrayList<>();
            List<Long> rssMegabytes = new ArrayList<>();
            long[] previous = {System.nanoTime()};
            long start = System.nanoTime();
            new Nd4jScaleDistiller().distill(base, finetuned, delta, calibration, options.listener(step -> {
                long now = System.nanoTime();
                stepSeconds.add((now - previous[0]) / 1e9);
                previous[0] = now;
                rssMegabytes.add(rss("VmRSS"));
            }));
            double total = (System.nanoTime() - start) / 1e9;
            List<Double> sorted = new ArrayList<>(stepSeconds.subList(Math.min(10, stepSeconds.size() - 1), stepSeconds.size()));
            sorted.sort(null);
            long rssAt10 = rssMegabytes.get(Math.min(9, rssMegabytes.size() - 1));
            long rssMax = rssMegabytes.stream().mapToLong(Long::longValue).max().orElseThrow();
            System.out.printf(Locale.ROOT, "distill %d steps: %.1f s in all (graphs, tokenization and the first steps' warm-up included)%n", steps, total);
            System.out.printf(Locale.ROOT, "seconds per step after step 10: median %.3f, p90 %.3f; first step %.3f%n",
                    sorted.get(sorted.size() / 2), sorted.get(sorted.size() * 9 / 10), stepSeconds.getFirst());
            System.out.printf(Locale.ROOT, "resident memory: %d MB at step 10, %d MB at the last step, max %d MB; peak of the process (VmHWM) %d MB%n",
                    rssAt10, rssMegabytes.getLast(), rssMax, rss("VmHWM"));
            StringBuilder trajectory = new StringBuilder();
            for (int step = 0; step < rssMegabytes.size(); step += 25) {
                trajectory.append(step == 0 ? "" : ", ").append(step + 1).append(": ").append(rssMegabytes.get(step));
            }
            System.out.printf(Locale.ROOT, "resident memory (MB) by step: %s, %d: %d%n", trajectory, rssMegabytes.size(), rssMegabytes.getLast());
            System.out.printf(Locale.ROOT, "distill / forward-only time: %.2fx; load average at end %.2f%n", total / forwardSeconds,
                    ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage());
        }
    }

    /** A /proc/self/status field in MB (Linux). */
    static long rss(String field) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith(field + ":")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) / 1024;
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        throw new IllegalStateException("/proc/self/status has no " + field);
    }
}
