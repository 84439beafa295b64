package org.bitdelta.nd4j;

import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.testing.Golden;
import org.bitdelta.testing.Norms;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The SameDiff graphs against PyTorch's golden logits, and the autodiff gradients against finite differences, on
 * the bundled models (the tinyllama pair: {@link GraphCorrectnessAcceptanceTest}).
 */
class GraphCorrectnessTest {
    private static final Path BASE = TestData.bundledModel("stories260K");
    private static final Path SHAKESPEARE = TestData.bundledModel("stories260K-ft-shakespeare");

    @Test
    void teacherAndStudentMatchGoldenLogitsOfStories260K() {
        checkGolden(BASE, SHAKESPEARE, TestData.bundled("golden/stories260K-ft-shakespeare.safetensors"));
    }

    static void checkGolden(Path base, Path finetuned, Path goldenFile) {
        Golden golden = Golden.read(goldenFile);
        int[] ids = golden.inputIds();
        float[] finetunedLogits = golden.logits("logits_finetuned");
        float[] initialLogits = golden.logits("logits_bitdelta_initial");
        try (DeltaModel delta = BitDelta.compress(base, finetuned);
             DistillationModel model = DistillationModel.open(base, finetuned, delta, DataType.FLOAT, 1, ids.length)) {
            double teacherError = relativeError(model.teacherLogits(new int[][]{ids}), finetunedLogits);
            double studentError = relativeError(model.studentLogits(new int[][]{ids}), initialLogits);
            assertTrue(teacherError < 1e-4, goldenFile + ": teacher logits relative error " + teacherError);
            assertTrue(studentError < 1e-4, goldenFile + ": student logits relative error " + studentError);
        }
    }

    @Test
    void mistralSlidingWindowAndGroupedQueryAttentionMatchTransformers() {
        Path mistral = TestData.bundledModel("mistral-tiny");
        Path goldenFile = TestData.bundled("golden/mistral-tiny.safetensors");
        Golden golden = Golden.read(goldenFile);
        int[] ids = golden.inputIds();
        float[] expected = golden.logits("logits");
        // A delta of the model against itself: zero scales, so the student is the model too.
        try (DeltaModel delta = BitDelta.compress(mistral, mistral);
             DistillationModel model = DistillationModel.open(mistral, mistral, delta, DataType.FLOAT, 1, ids.length)) {
            double teacherError = relativeError(model.teacherLogits(new int[][]{ids}), expected);
            double studentError = relativeError(model.studentLogits(new int[][]{ids}), expected);
            assertTrue(teacherError < 1e-4, "mistral-tiny (sliding window 16 < 48 tokens): teacher relative error " + teacherError);
            assertTrue(studentError < 1e-4, "mistral-tiny: student relative error " + studentError);
        }
    }

    @Test
    void lossThroughTheLmHeadGramMatrixEqualsTheMseOverAllLogits() {
        long seed = 99L;
        try (DeltaModel delta = BitDelta.compress(BASE, SHAKESPEARE);
             DistillationModel model = DistillationModel.open(BASE, SHAKESPEARE, delta, DataType.DOUBLE, 2, 32)) {
            assertTrue(model.gramLoss(), "teacher and student share the lm_head, so the Gram-matrix loss should be used");
            int[] tokens = Nd4jScaleDistiller.calibrationTokens(SHAKESPEARE, TestData.bundledText("tinystories-train-head-32k.txt"), 32);
            int[][] windows = Nd4jScaleDistiller.sampleWindows(tokens, 2, 32, new SplittableRandom(seed));
            double[] teacher = model.teacherLogits(windows).data().asDouble();
            double[] student = model.studentLogits(windows).data().asDouble();
            double sum = 0;
            for (int i = 0; i < teacher.length; i++) {
                sum += (student[i] - teacher[i]) * (student[i] - teacher[i]);
            }
            double direct = sum / teacher.length;
            double graph = model.loss(windows, model.teacherTarget(windows));
            assertTrue(Math.abs(graph - direct) <= 1e-9 * direct, "seed " + seed + ": Gram loss " + graph + " vs MSE of logits " + direct);
        }
    }

    @Test
    void gradientOfEveryPerMatrixScaleMatchesCentralDifferences() {
        long seed = 20261122L;
        try (DeltaModel delta = BitDelta.compress(BASE, SHAKESPEARE);
             DistillationModel model = DistillationModel.open(BASE, SHAKESPEARE, delta, DataType.DOUBLE, 2, 24)) {
            List<int[]> checked = new ArrayList<>();
            for (String matrix : model.matrices()) {
                checked.add(new int[]{model.matrices().indexOf(matrix), 0});
            }
            checkGradients(model, checked, seed);
        }
    }

    @Test
    void gradientOfPerRowScalesMatchesCentralDifferences() {
        long seed = 7L;
        try (DeltaModel delta = BitDelta.compress(BASE, SHAKESPEARE, CompressOptions.defaults().perRowScales(true));
             DistillationModel model = DistillationModel.open(BASE, SHAKESPEARE, delta, DataType.DOUBLE, 2, 24)) {
            SplittableRandom random = new SplittableRandom(seed);
            List<int[]> checked = new ArrayList<>();
            for (String matrix : model.matrices()) { // one random row of every matrix
                int index = model.matrices().indexOf(matrix);
                checked.add(new int[]{index, random.nextInt(model.scales(matrix).length)});
            }
            checkGradients(model, checked, seed);
        }
    }

    /**
     * The distiller runs the gradient function with the session's array recycling on (SameDiff's own
     * calculateGradientsAndOutputs switches it off): a recycled array handed out while still in use would corrupt
     * a later value. Several steps in a row, with new windows and new scales each time, must give the reference's
     * loss and gradients. On the bundled Shakespeare pair here; on the larger tinyllama pair in
     * {@link GraphCorrectnessAcceptanceTest}.
     */
    @Test
    void recycledArraysGiveTheSameLossAndGradientsAsSameDiffsOwnPath() {
        checkRecycledArrays(BASE, SHAKESPEARE, TestData.bundledText("tinystories-train-head-32k.txt"), 42L);
    }

    static void checkRecycledArrays(Path base, Path finetuned, Path calibration, long seed) {
        System.err.printf(Locale.ROOT, "recycled arrays: %s, seed %d%n", finetuned.getFileName(), seed);
        try (DeltaModel delta = BitDelta.compress(base, finetuned, CompressOptions.defaults().perRowScales(true));
             DistillationModel model = DistillationModel.open(base, finetuned, delta, DataType.FLOAT, 2, 64)) {
            int[] tokens = Nd4jScaleDistiller.calibrationTokens(finetuned, calibration, 64);
            SplittableRandom random = new SplittableRandom(seed);
            for (int step = 0; step < 4; step++) {
                int[][] windows = Nd4jScaleDistiller.sampleWindows(tokens, 2, 64, random);
                for (String matrix : model.matrices()) {
                    double[] scales = model.scales(matrix);
                    for (int i = 0; i < scales.length; i++) {
                        scales[i] *= 0.8 + 0.4 * random.nextDouble();
                    }
                    model.setScales(matrix, scales);
                }
                INDArray teacher = model.teacherTarget(windows);
                DistillationModel.LossAndGradients recycled = model.lossAndGradients(windows, teacher);
                DistillationModel.LossAndGradients again = model.lossAndGradients(windows, teacher);
                DistillationModel.LossAndGradients reference = model.lossAndGradientsBySameDiff(windows, teacher);
                for (DistillationModel.LossAndGradients fast : List.of(recycled, again)) {
                    assertTrue(Math.abs(fast.loss() - reference.loss()) <= 1e-6 * Math.abs(reference.loss()),
                            "seed " + seed + ", step " + step + ": loss " + fast.loss() + " vs SameDiff's " + reference.loss());
                    for (String matrix : model.matrices()) {
                        double error = Norms.relativeError(fast.gradients().get(matrix), reference.gradients().get(matrix));
                        assertTrue(error <= 1e-5, "seed " + seed + ", step " + step + ", " + matrix
                                + ": gradient differs from SameDiff's by " + error + " (relative)");
                    }
                }
                teacher.close();
            }
        }
    }

    /** Each (matrix index, scale index) of {@code checked}: autodiff gradient vs (L(a+h) − L(a−h)) / 2h in double. */
    private static void checkGradients(DistillationModel model, List<int[]> checked, long seed) {
        int[] tokens = Nd4jScaleDistiller.calibrationTokens(SHAKESPEARE, TestData.bundledText("tinystories-train-head-32k.txt"), 24);
        int[][] windows = Nd4jScaleDistiller.sampleWindows(tokens, 2, 24, new SplittableRandom(seed));
        // Perturb the initial scales so that no gradient is accidentally near zero at the compression optimum.
        SplittableRandom random = new SplittableRandom(seed + 1);
        for (String matrix : model.matrices()) {
            double[] scales = model.scales(matrix);
            for (int i = 0; i < scales.length; i++) {
                scales[i] *= 0.5 + random.nextDouble();
            }
            model.setScales(matrix, scales);
        }
        INDArray teacher = model.teacherTarget(windows);
        DistillationModel.LossAndGradients autodiff = model.lossAndGradients(windows, teacher);
        double worst = 0;
        StringBuilder report = new StringBuilder();
        for (int[] place : checked) {
            String matrix = model.matrices().get(place[0]);
            double[] scales = model.scales(matrix);
            double original = scales[place[1]];
            double step = 1e-5 * Math.abs(original);
            scales[place[1]] = original + step;
            model.setScales(matrix, scales);
            double plus = model.loss(windows, teacher);
            scales[place[1]] = original - step;
            model.setScales(matrix, scales);
            double minus = model.loss(windows, teacher);
            scales[place[1]] = original;
            model.setScales(matrix, scales);
            double finite = (plus - minus) / (2 * step);
            double gradient = autodiff.gradients().get(matrix)[place[1]];
            double error = Math.abs(gradient - finite) / Math.max(Math.abs(finite), 1e-12);
            worst = Math.max(worst, error);
            report.append(String.format(Locale.ROOT, "%n  %s[%d]: autodiff %.9e, central difference %.9e, relative error %.2e",
                    matrix, place[1], gradient, finite, error));
        }
        System.err.printf(Locale.ROOT, "gradient check, seed %d: %d scales, worst relative error %.2e%n", seed, checked.size(), worst);
        assertTrue(worst < 1e-3, "seed " + seed + ": worst relative error " + worst + report);
    }

    static double relativeError(INDArray actual, float[] expected) {
        return Norms.relativeError(actual.castTo(DataType.FLOAT).data().asFloat(), expected);
    }
}
