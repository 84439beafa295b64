package org.bitdelta.nd4j;

import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.testing.TestData;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.nio.file.Path;
import java.util.SplittableRandom;

/** A probe (a main, not a test): times teacher forward, student forward and loss + gradients per step; args batch seq steps [stories]. */
public final class StepTimingProbe {
    public static void main(String[] args) {
        boolean stories = args.length > 3 && args[3].equals("stories");
        Path base = stories ? TestData.bundledModel("stories260K") : TestData.acceptance("models/tinyllama-shakespeare-base");
        Path finetuned = stories ? TestData.bundledModel("stories260K-ft-shakespeare") : TestData.acceptance("models/tinyllama-shakespeare-finetuned");
        int batch = Integer.parseInt(args.length > 0 ? args[0] : "4");
        int seq = Integer.parseInt(args.length > 1 ? args[1] : "128");
        int steps = Integer.parseInt(args.length > 2 ? args[2] : "5");
        long t0 = System.nanoTime();
        try (DeltaModel delta = BitDelta.compress(base, finetuned);
             DistillationModel model = DistillationModel.open(base, finetuned, delta, DataType.FLOAT, batch, seq)) {
            System.err.printf("build %.2f s%n", (System.nanoTime() - t0) / 1e9);
            int[] tokens = Nd4jScaleDistiller.calibrationTokens(finetuned, stories ? TestData.bundledText("tinystories-train-head-32k.txt") : TestData.acceptance("text/calibration/pretrain.heldout.txt"), seq);
            SplittableRandom random = new SplittableRandom(1);
            for (int i = 0; i < steps; i++) {
                int[][] windows = Nd4jScaleDistiller.sampleWindows(tokens, batch, seq, random);
                var threads = java.lang.management.ManagementFactory.getThreadMXBean();
                long a = System.nanoTime();
                long ca = threads.getCurrentThreadCpuTime();
                INDArray teacher = model.teacherTarget(windows);
                long b = System.nanoTime();
                long cb = threads.getCurrentThreadCpuTime();
                INDArray student = model.studentLogits(windows);
                long c = System.nanoTime();
                long cc = threads.getCurrentThreadCpuTime();
                var result = model.lossAndGradients(windows, teacher);
                long d = System.nanoTime();
                long cd = threads.getCurrentThreadCpuTime();
                System.err.printf("cpu teacher %.3f student %.3f lossgrad %.3f%n", (cb - ca) / 1e9, (cc - cb) / 1e9, (cd - cc) / 1e9);
                System.err.printf("teacher %.3f s, student forward %.3f s, loss+grad %.3f s, loss %.5f, rss %d MB%n",
                        (b - a) / 1e9, (c - b) / 1e9, (d - c) / 1e9, result.loss(), DistillBenchmark.rss("VmRSS"));
            }
        }
    }
}
