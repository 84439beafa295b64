package org.bitdelta;

import java.util.Locale;
import java.util.Objects;

/**
 * Settings of {@link ScaleDistiller#distill}. The defaults are the paper's: 200 steps of AdamW (lr 1e-4, betas
 * 0.9 / 0.999, eps 1e-8, decoupled weight decay 0.01) with the learning rate decayed to 0 on a cosine over the
 * steps, each step a batch of 4 random windows of 128 tokens of the calibration text. Immutable; each wither
 * returns a copy.
 */
public final class DistillOptions {
    private final int steps;
    private final int batchSize;
    private final int sequenceLength;
    private final double learningRate;
    private final double weightDecay;
    private final double beta1;
    private final double beta2;
    private final double epsilon;
    private final long seed;
    private final DistillListener listener;

    private DistillOptions(int steps, int batchSize, int sequenceLength, double learningRate, double weightDecay,
                           double beta1, double beta2, double epsilon, long seed, DistillListener listener) {
        this.steps = steps;
        this.batchSize = batchSize;
        this.sequenceLength = sequenceLength;
        this.learningRate = learningRate;
        this.weightDecay = weightDecay;
        this.beta1 = beta1;
        this.beta2 = beta2;
        this.epsilon = epsilon;
        this.seed = seed;
        this.listener = listener;
    }

    /** 200 steps, batch 4, 128 tokens, lr 1e-4, weight decay 0.01, betas (0.9, 0.999), eps 1e-8, seed 0. */
    public static DistillOptions defaults() {
        return new DistillOptions(200, 4, 128, 1e-4, 0.01, 0.9, 0.999, 1e-8, 0, DistillListener.NONE);
    }

    public DistillOptions steps(int value) {
        requirePositive("steps", value);
        return new DistillOptions(value, batchSize, sequenceLength, learningRate, weightDecay, beta1, beta2, epsilon, seed, listener);
    }

    /** Windows per step. */
    public DistillOptions batchSize(int value) {
        requirePositive("batch size", value);
        return new DistillOptions(steps, value, sequenceLength, learningRate, weightDecay, beta1, beta2, epsilon, seed, listener);
    }

    /** Tokens per window (at most the model's context length). */
    public DistillOptions sequenceLength(int value) {
        requirePositive("sequence length", value);
        return new DistillOptions(steps, batchSize, value, learningRate, weightDecay, beta1, beta2, epsilon, seed, listener);
    }

    /** The peak learning rate, at step 1; the cosine schedule takes it to 0 after the last step. */
    public DistillOptions learningRate(double value) {
        requireFiniteNonNegative("learning rate", value);
        return new DistillOptions(steps, batchSize, sequenceLength, value, weightDecay, beta1, beta2, epsilon, seed, listener);
    }

    /** AdamW's decoupled weight decay: each step multiplies the scales by (1 − lr · weightDecay). */
    public DistillOptions weightDecay(double value) {
        requireFiniteNonNegative("weight decay", value);
        return new DistillOptions(steps, batchSize, sequenceLength, learningRate, value, beta1, beta2, epsilon, seed, listener);
    }

    public DistillOptions betas(double first, double second) {
        if (!(first >= 0 && first < 1) || !(second >= 0 && second < 1)) {
            throw new IllegalArgumentException(String.format(Locale.ROOT, "betas must lie in [0, 1), got (%s, %s)", first, second));
        }
        return new DistillOptions(steps, batchSize, sequenceLength, learningRate, weightDecay, first, second, epsilon, seed, listener);
    }

    /** Adam's epsilon, added to the root of the second moment. */
    public DistillOptions epsilon(double value) {
        if (!(value > 0) || !Double.isFinite(value)) {
            throw new IllegalArgumentException("epsilon must be positive and finite, got " + value);
        }
        return new DistillOptions(steps, batchSize, sequenceLength, learningRate, weightDecay, beta1, beta2, value, seed, listener);
    }

    /** Seeds the choice of calibration windows: the same seed and inputs give the same windows. */
    public DistillOptions seed(long value) {
        return new DistillOptions(steps, batchSize, sequenceLength, learningRate, weightDecay, beta1, beta2, epsilon, value, listener);
    }

    public DistillOptions listener(DistillListener value) {
        return new DistillOptions(steps, batchSize, sequenceLength, learningRate, weightDecay, beta1, beta2, epsilon, seed,
                Objects.requireNonNull(value, "listener"));
    }

    public int steps() {
        return steps;
    }

    public int batchSize() {
        return batchSize;
    }

    public int sequenceLength() {
        return sequenceLength;
    }

    public double learningRate() {
        return learningRate;
    }

    public double weightDecay() {
        return weightDecay;
    }

    public double beta1() {
        return beta1;
    }

    public double beta2() {
        return beta2;
    }

    public double epsilon() {
        return epsilon;
    }

    public long seed() {
        return seed;
    }

    public DistillListener listener() {
        return listener;
    }

    /** The learning rate of 1-based step {@code step}: lr · (1 + cos(π · (step − 1) / steps)) / 2, as PyTorch's CosineAnnealingLR. */
    public double learningRateAt(int step) {
        return learningRate * 0.5 * (1 + Math.cos(Math.PI * (step - 1) / steps));
    }

    private static void requirePositive(String what, int value) {
        if (value < 1) {
            throw new IllegalArgumentException(what + " must be at least 1, got " + value);
        }
    }

    private static void requireFiniteNonNegative(String what, double value) {
        if (!(value >= 0) || !Double.isFinite(value)) {
            throw new IllegalArgumentException(what + " must be finite and >= 0, got " + value);
        }
    }

    @Override
    public String toString() {
        return String.format(Locale.ROOT, "DistillOptions[steps %d, batch %d, seq %d, lr %s, weight decay %s, betas (%s, %s), eps %s, seed %d]",
                steps, batchSize, sequenceLength, learningRate, weightDecay, beta1, beta2, epsilon, seed);
    }
}
