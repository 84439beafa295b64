package org.bitdelta;

/** Receives the progress of a distillation, once per optimizer step, on the distilling thread. */
@FunctionalInterface
public interface DistillListener {
    DistillListener NONE = step -> {
    };

    void onStep(Step step);

    /**
     * One finished optimizer step.
     *
     * @param step            1-based number of the step just taken
     * @param steps           steps in all
     * @param loss            the MSE between student and teacher logits on this step's batch (before its update)
     * @param learningRate    the learning rate this step used (cosine schedule)
     * @param tokensPerSecond batch tokens per second of wall time, averaged over the steps so far
     * @param secondsElapsed  wall time since the first step began
     * @param secondsLeft     estimated wall time to the last step, from the mean time per step so far
     */
    record Step(int step, int steps, double loss, double learningRate, double tokensPerSecond,
                double secondsElapsed, double secondsLeft) {
    }
}
