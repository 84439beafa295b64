package org.bitdelta.testing;

/** The error measure the tests share: relative error in the L2 norm, accumulated in double. */
public final class Norms {
    private Norms() {
    }

    /** ‖actual − expected‖ / ‖expected‖ (NaN when any value is NaN); the lengths must agree. */
    public static double relativeError(float[] actual, float[] expected) {
        requireSameLength(actual.length, expected.length);
        double difference = 0;
        double norm = 0;
        for (int i = 0; i < expected.length; i++) {
            double delta = (double) actual[i] - expected[i];
            difference += delta * delta;
            norm += (double) expected[i] * expected[i];
        }
        return Math.sqrt(difference / norm);
    }

    /** ‖actual − expected‖ / ‖expected‖ (NaN when any value is NaN); the lengths must agree. */
    public static double relativeError(double[] actual, double[] expected) {
        requireSameLength(actual.length, expected.length);
        double difference = 0;
        double norm = 0;
        for (int i = 0; i < expected.length; i++) {
            double delta = actual[i] - expected[i];
            difference += delta * delta;
            norm += expected[i] * expected[i];
        }
        return Math.sqrt(difference / norm);
    }

    private static void requireSameLength(int actual, int expected) {
        if (actual != expected) {
            throw new AssertionError(actual + " values, expected " + expected);
        }
    }
}
