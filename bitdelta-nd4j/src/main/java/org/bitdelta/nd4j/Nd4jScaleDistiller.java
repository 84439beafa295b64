package org.bitdelta.nd4j;

import com.google.gson.JsonObject;
import org.bitdelta.BitDeltaException;
import org.bitdelta.DeltaModel;
import org.bitdelta.DistillListener;
import org.bitdelta.DistillOptions;
import org.bitdelta.ScaleDistiller;
import org.bitdelta.inference.Tokenizer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.SplittableRandom;

/**
 * Scale distillation on ND4J SameDiff (nd4j-native on the CPU by default; nd4j-cuda-11.6 with the Maven profile
 * {@code cuda}). Each step takes {@code batch} random windows of the calibration tokens, runs the fine-tune
 * (teacher) and the student (base + signs · scales, the scales the graph's only variables), and updates the
 * scales with AdamW on the gradient of the MSE between their logits; the learning rate follows a cosine from
 * {@code lr} to 0 over the steps.
 *
 * <p>Gradients come from SameDiff's gradient function, run with its array recycling on (see
 * {@code LlamaGraph.lossAndGradients}), and the optimizer step is this class's own: SameDiff's {@code fit()} reports
 * only the regularization part of the loss to listeners and builds a new training session on every call, and
 * {@code calculateGradientsAndOutputs} switches the recycling off, so that their arrays wait for the Java GC.
 *
 * <p>Threads: ND4J sizes its OpenMP pool to the cores; on small machines set the environment variable
 * {@code OMP_WAIT_POLICY=PASSIVE} (OpenMP's spinning threads otherwise compete with OpenBLAS's), or
 * {@code OMP_NUM_THREADS}. This class sets neither: JVM-wide settings belong to the application.
 */
public final class Nd4jScaleDistiller implements ScaleDistiller {
    /** Public no-argument constructor for {@link java.util.ServiceLoader}; cheap: ND4J loads on first use. */
    public Nd4jScaleDistiller() {
    }



    @Override
    public String name() {
        return "nd4j";
    }

    @Override
    public DeltaModel distill(Path base, Path finetuned, DeltaModel delta, Path calibrationText, DistillOptions options) {
        Objects.requireNonNull(base, "base");
        Objects.requireNonNull(finetuned, "finetuned");
        Objects.requireNonNull(delta, "delta");
        Objects.requireNonNull(calibrationText, "calibrationText");
        Objects.requireNonNull(options, "options");
        int[] tokens = calibrationTokens(finetuned, calibrationText, options.sequenceLength());
        try (DistillationModel model = DistillationModel.open(base, finetuned, delta, DataType.FLOAT,
                options.batchSize(), options.sequenceLength())) {
            return train(model, delta, tokens, options);
        }
    }

    /** The calibration text's token ids by the fine-tune's tokenizer; at least one window of them. */
    static int[] calibrationTokens(Path finetuned, Path calibrationText, int sequence) {
        String text;
        try {
            text = Files.readString(calibrationText, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new BitDeltaException(calibrationText + ": cannot be read as UTF-8 text: " + e.getMessage(), e);
        }
        int[] tokens;
        try (Tokenizer tokenizer = Tokenizer.load(finetuned)) {
            tokens = tokenizer.encode(text);
        }
        if (tokens.length < sequence) {
            throw new BitDeltaException(calibrationText + ": the calibration text has " + tokens.length
                    + " tokens, fewer than one window of " + sequence + " (use a longer text or a shorter --seq)");
        }
        return tokens;
    }

    /** {@code batch} windows of {@code sequence} tokens starting at uniformly random offsets. */
    static int[][] sampleWindows(int[] tokens, int batch, int sequence, SplittableRandom random) {
        int[][] windows = new int[batch][];
        for (int b = 0; b < batch; b++) {
            int start = random.nextInt(tokens.length - sequence + 1);
            windows[b] = Arrays.copyOfRange(tokens, start, start + sequence);
        }
        return windows;
    }

    private DeltaModel train(DistillationModel model, DeltaModel delta, int[] tokens, DistillOptions options) {
        List<String> matrices = model.matrices();
        // All scales as one parameter vector: matrix i owns [offsets[i], offsets[i + 1]).
        int[] offsets = new int[matrices.size() + 1];
        double[][] initial = new double[matrices.size()][];
        for (int i = 0; i < matrices.size(); i++) {
            initial[i] = model.scales(matrices.get(i));
            offsets[i + 1] = offsets[i] + initial[i].length;
        }
        int parameterCount = offsets[matrices.size()];
        double[] parameters = new double[parameterCount];
        for (int i = 0; i < matrices.size(); i++) {
            System.arraycopy(initial[i], 0, parameters, offsets[i], initial[i].length);
        }
        AdamW optimizer = new AdamW(parameterCount, options.beta1(), options.beta2(), options.epsilon(), options.weightDecay());
        SplittableRandom random = new SplittableRandom(options.seed());
        DistillListener listener = options.listener();
        double[] gradients = new double[parameterCount];
        double firstLoss = Double.NaN;
        double lastLoss = Double.NaN;
        double[] recentLosses = new double[Math.min(10, options.steps())];
        long start = System.nanoTime();
        long tokensPerStep = (long) options.batchSize() * options.sequenceLength();
        for (int step = 1; step <= options.steps(); step++) {
            int[][] windows = sampleWindows(tokens, options.batchSize(), options.sequenceLength(), random);
            INDArray teacherTarget = model.teacherTarget(windows);
            DistillationModel.LossAndGradients result = model.lossAndGradients(windows, teacherTarget);
            double loss = result.loss();
            if (!Double.isFinite(loss)) {
                throw diverged("the loss is " + loss, step, options);
            }
            for (int i = 0; i < matrices.size(); i++) {
                double[] gradient = result.gradients().get(matrices.get(i));
                System.arraycopy(gradient, 0, gradients, offsets[i], gradient.length);
            }
            for (int i = 0; i < gradients.length; i++) {
                if (!Double.isFinite(gradients[i])) {
                    throw diverged("a gradient is " + gradients[i], step, options);
                }
            }
            double learningRate = options.learningRateAt(step);
            optimizer.step(parameters, gradients, learningRate);
            for (int i = 0; i < parameters.length; i++) {
                if (!Double.isFinite(parameters[i])) {
                    throw diverged("a scale became " + parameters[i], step, options);
                }
            }
            for (int i = 0; i < matrices.size(); i++) {
                model.setScales(matrices.get(i), Arrays.copyOfRange(parameters, offsets[i], offsets[i + 1]));
            }
            if (step == 1) {
                firstLoss = loss;
            }
            lastLoss = loss;
            recentLosses[(step - 1) % recentLosses.length] = loss;
            double elapsed = (System.nanoTime() - start) / 1e9;
            listener.onStep(new DistillListener.Step(step, options.steps(), loss, learningRate,
                    tokensPerStep * step / elapsed, elapsed, elapsed / step * (options.steps() - step)));
            teacherTarget.close();
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        Map<String, float[]> newScales = new LinkedHashMap<>();
        for (int i = 0; i < matrices.size(); i++) {
            float[] scales = new float[offsets[i + 1] - offsets[i]];
            for (int j = 0; j < scales.length; j++) {
                scales[j] = (float) parameters[offsets[i] + j];
            }
            newScales.put(matrices.get(i), scales);
        }
        double recentMean = 0;
        for (double value : recentLosses) {
            recentMean += value;
        }
        recentMean /= recentLosses.length;
        JsonObject record = new JsonObject();
        record.addProperty("steps", options.steps());
        record.addProperty("batch", options.batchSize());
        record.addProperty("seq", options.sequenceLength());
        record.addProperty("lr", options.learningRate());
        record.addProperty("weight_decay", options.weightDecay());
        record.addProperty("betas", options.beta1() + "," + options.beta2());
        record.addProperty("schedule", "cosine");
        record.addProperty("seed", options.seed());
        record.addProperty("loss_first", firstLoss);
        record.addProperty("loss_last", lastLoss);
        record.addProperty("loss_last10_mean", recentMean);
        record.addProperty("seconds", Math.round(seconds * 100) / 100.0);
        record.addProperty("calibration_tokens", tokens.length);
        record.addProperty("backend", "nd4j " + Nd4j.getBackend().getClass().getSimpleName());
        return delta.withScales(newScales, Map.of(METADATA_KEY, record.toString()));
    }

    private static BitDeltaException diverged(String what, int step, DistillOptions options) {
        return new BitDeltaException(String.format(java.util.Locale.ROOT,
                "distillation diverged at step %d of %d: %s (lr %s, seed %d); the input delta is unchanged and nothing was written."
                        + " Try a lower learning rate.", step, options.steps(), what, options.learningRate(), options.seed()));
    }
}
