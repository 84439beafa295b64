package org.bitdelta.internal.model;

/**
 * Rotary position embedding frequencies as transformers computes them in float32: inv_freq[i] =
 * 1 / theta^(2i / d), optionally rescaled as Llama 3.x's config asks ({@code rope_type: llama3}: long wavelengths
 * divided by {@code factor}, short ones kept, the band between interpolated). RoPE pairs dimension i with
 * i + d/2 in each head (HF's rotate_half).
 *
 * @param theta   rope_theta
 * @param scaling null for unscaled rotary embeddings
 */
public record RotaryEmbedding(double theta, Llama3Scaling scaling) {

    /** The parameters of {@code rope_type: llama3} scaling. */
    public record Llama3Scaling(float factor, float lowFrequencyFactor, float highFrequencyFactor, int originalContextLength) {
    }

    /** inv_freq, [headDimension / 2]. */
    public float[] inverseFrequencies(int headDimension) {
        int half = headDimension / 2;
        float[] inverse = new float[half];
        for (int i = 0; i < half; i++) {
            float exponent = (float) (2 * i) / headDimension;
            inverse[i] = (float) (1.0 / (float) Math.pow(theta, exponent));
        }
        if (scaling != null) {
            // transformers' _compute_llama3_parameters, in float32.
            float oldContext = scaling.originalContextLength();
            float lowFrequencyWavelength = oldContext / scaling.lowFrequencyFactor();
            float highFrequencyWavelength = oldContext / scaling.highFrequencyFactor();
            for (int i = 0; i < half; i++) {
                float wavelength = (float) (2 * Math.PI) / inverse[i];
                float scaled = wavelength > lowFrequencyWavelength ? inverse[i] / scaling.factor() : inverse[i];
                boolean medium = !(wavelength < highFrequencyWavelength) && !(wavelength > lowFrequencyWavelength);
                if (medium) {
                    float smooth = (oldContext / wavelength - scaling.lowFrequencyFactor())
                            / (scaling.highFrequencyFactor() - scaling.lowFrequencyFactor());
                    scaled = (1 - smooth) * scaled / scaling.factor() + smooth * scaled;
                }
                inverse[i] = scaled;
            }
        }
        return inverse;
    }

    /**
     * cos and sin of position · inv_freq for every position below {@code contextLength}: two arrays
     * [contextLength, headDimension / 2], the angle rounded to float32 as HF does.
     */
    public float[][] tables(int contextLength, int headDimension) {
        float[] inverse = inverseFrequencies(headDimension);
        int half = headDimension / 2;
        float[] cos = new float[contextLength * half];
        float[] sin = new float[contextLength * half];
        for (int position = 0; position < contextLength; position++) {
            for (int i = 0; i < half; i++) {
                float angle = position * inverse[i];
                cos[position * half + i] = (float) Math.cos(angle);
                sin[position * half + i] = (float) Math.sin(angle);
            }
        }
        return new float[][]{cos, sin};
    }
}
