package org.bitdelta.nd4j;

/**
 * AdamW as PyTorch's {@code torch.optim.AdamW} computes it, on one flat parameter vector in double precision:
 * decoupled weight decay {@code p ← p − lr·wd·p}, then the bias-corrected Adam step
 * {@code p ← p − lr · m̂ / (sqrt(v̂) + eps)}.
 */
final class AdamW {
    private final double beta1;
    private final double beta2;
    private final double epsilon;
    private final double weightDecay;
    private final double[] firstMoment;
    private final double[] secondMoment;
    private int step;

    AdamW(int parameters, double beta1, double beta2, double epsilon, double weightDecay) {
        this.beta1 = beta1;
        this.beta2 = beta2;
        this.epsilon = epsilon;
        this.weightDecay = weightDecay;
        this.firstMoment = new double[parameters];
        this.secondMoment = new double[parameters];
    }

    /** One step in place on {@code parameters} with {@code gradients} at learning rate {@code learningRate}. */
    void step(double[] parameters, double[] gradients, double learningRate) {
        if (parameters.length != firstMoment.length || gradients.length != firstMoment.length) {
            throw new IllegalArgumentException(parameters.length + " parameters and " + gradients.length
                    + " gradients for an optimizer of " + firstMoment.length);
        }
        step++;
        double firstCorrection = 1 - Math.pow(beta1, step);
        double secondCorrection = 1 - Math.pow(beta2, step);
        for (int i = 0; i < parameters.length; i++) {
            double gradient = gradients[i];
            parameters[i] *= 1 - learningRate * weightDecay;
            firstMoment[i] = beta1 * firstMoment[i] + (1 - beta1) * gradient;
            secondMoment[i] = beta2 * secondMoment[i] + (1 - beta2) * gradient * gradient;
            double denominator = Math.sqrt(secondMoment[i] / secondCorrection) + epsilon;
            parameters[i] -= learningRate * (firstMoment[i] / firstCorrection) / denominator;
        }
    }
}
