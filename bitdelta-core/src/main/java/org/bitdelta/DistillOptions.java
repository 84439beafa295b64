package org.bitdelta;

import java.util.Locale;
import java.util.Objects;
import java.util.function.Consumer;

/**
 * Settings of {@link ScaleDistiller#distill}. The defaults are the paper's: 200 steps of AdamW (lr 1e-4, betas
 * 0.9 / 0.999, eps 1e-8, decoupled weight decay 0.01) with the learning rate decayed to 0 on a cosine over the
 * steps, each step a batch of 4 random windows of 128 tokens of the calibration text. Immutable; each wither
 * returns a copy.
 */
public final class DistillOptions {
    /**
     * One copy per options object, never changed once held here (a wither fills in a fresh copy first); the final
     * field publishes it safely, as final fields of its own would.
     */
    private final Settings settings;

    private DistillOptions(Settings settings) {
        this.settings = settings;
    }

    /** 200 steps, batch 4, 128 tokens, lr 1e-4, weight decay 0.01, betas (0.9, 0.999), eps 1e-8, seed 0. */
    public static DistillOptions defaults() {
        return new DistillOptions(new Settings());
    }

    public DistillOptions steps(int value) {
        return with(copy -> copy.steps = positive("steps", value));
    }

    /** Windows per step. */
    public DistillOptions batchSize(int value) {
        return with(copy -> copy.batchSize = positive("batch size", value));
    }

    /** Tokens per window (at most the model's context length). */
    public DistillOptions sequenceLength(int value) {
        return with(copy -> copy.sequenceLength = positive("sequence length", value));
    }

    /** The peak learning rate, at step 1; the cosine schedule takes it to 0 after the last step. */
    public DistillOptions learningRate(double value) {
        return with(copy -> copy.learningRate = finiteNonNegative("learning rate", value));
    }

    /** AdamW's decoupled weight decay: each step multiplies the scales by (1 − lr · weightDecay). */
    public DistillOptions weightDecay(double value) {
        return with(copy -> copy.weightDecay = finiteNonNegative("weight decay", value));
    }

    public DistillOptions betas(double first, double second) {
        if (!(first >= 0 && first < 1) || !(second >= 0 && second < 1)) {
            throw new IllegalArgumentException(String.format(Locale.ROOT, "betas must lie in [0, 1), got (%s, %s)", first, second));
        }
        return with(copy -> {
            copy.beta1 = first;
            copy.beta2 = second;
        });
    }

    /** Adam's epsilon, added to the root of the second moment. */
    public DistillOptions epsilon(double value) {
        if (!(value > 0) || !Double.isFinite(value)) {
            throw new IllegalArgumentException("epsilon must be positive and finite, got " + value);
        }
        return with(copy -> copy.epsilon = value);
    }

    /** Seeds the choice of calibration windows: the same seed and inputs give the same windows. */
    public DistillOptions seed(long value) {
        return with(copy -> copy.seed = value);
    }

    public DistillOptions listener(DistillListener value) {
        return with(copy -> copy.listener = Objects.requireNonNull(value, "listener"));
    }

    public int steps() {
        return settings.steps;
    }

    public int batchSize() {
        return settings.batchSize;
    }

    public int sequenceLength() {
        return settings.sequenceLength;
    }

    public double learningRate() {
        return settings.learningRate;
    }

    public double weightDecay() {
        return settings.weightDecay;
    }

    public double beta1() {
        return settings.beta1;
    }

    public double beta2() {
        return settings.beta2;
    }

    public double epsilon() {
        return settings.epsilon;
    }

    public long seed() {
        return settings.seed;
    }

    public DistillListener listener() {
        return settings.listener;
    }

    /** The learning rate of 1-based step {@code step}: lr · (1 + cos(π · (step − 1) / steps)) / 2, as PyTorch's CosineAnnealingLR. */
    public double learningRateAt(int step) {
        return settings.learningRate * 0.5 * (1 + Math.cos(Math.PI * (step - 1) / settings.steps));
    }

    /** These options with {@code change} applied to a copy of their settings. */
    private DistillOptions with(Consumer<Settings> change) {
        Settings copy = settings.copy();
        change.accept(copy);
        return new DistillOptions(copy);
    }

    private static int positive(String what, int value) {
        if (value < 1) {
            throw new IllegalArgumentException(what + " must be at least 1, got " + value);
        }
        return value;
    }

    private static double finiteNonNegative(String what, double value) {
        if (!(value >= 0) || !Double.isFinite(value)) {
            throw new IllegalArgumentException(what + " must be finite and >= 0, got " + value);
        }
        return value;
    }

    @Override
    public String toString() {
        return String.format(Locale.ROOT, "DistillOptions[steps %d, batch %d, seq %d, lr %s, weight decay %s, betas (%s, %s), eps %s, seed %d]",
                settings.steps, settings.batchSize, settings.sequenceLength, settings.learningRate, settings.weightDecay,
                settings.beta1, settings.beta2, settings.epsilon, settings.seed);
    }

    /** The values of one options object; the initial ones are the defaults. */
    private static final class Settings implements Cloneable {
        int steps = 200;
        int batchSize = 4;
        int sequenceLength = 128;
        double learningRate = 1e-4;
        double weightDecay = 0.01;
        double beta1 = 0.9;
        double beta2 = 0.999;
        double epsilon = 1e-8;
        long seed = 0;
        DistillListener listener = DistillListener.NONE;

        Settings copy() {
            try {
                // Every field is a number or a listener reference the copy shares, as the withers always did.
                return (Settings) clone();
            } catch (CloneNotSupportedException e) {
                throw new AssertionError("Settings implements Cloneable", e);
            }
        }
    }
}
