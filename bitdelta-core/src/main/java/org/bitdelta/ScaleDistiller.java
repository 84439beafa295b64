package org.bitdelta;

import java.nio.file.Path;
import java.util.Iterator;
import java.util.ServiceConfigurationError;
import java.util.ServiceLoader;

/**
 * Refines the scales of a {@link DeltaModel} by distillation: the compressed model's logits are fitted to the
 * fine-tune's by gradient descent on the scales alone, the sign bits frozen (the paper's second stage).
 *
 * <p>Implementations are found with {@link ServiceLoader}; bitdelta-core has none, add
 * {@code org.bitdelta:bitdelta-nd4j} (ND4J SameDiff) to the class path.
 *
 * <pre>{@code
 * DeltaModel tuned = ScaleDistiller.load().distill(base, finetuned, delta, calibrationText,
 *         DistillOptions.defaults().steps(200).seed(7));
 * tuned.save(out);
 * }</pre>
 */
public interface ScaleDistiller {
    /** Metadata key of the result: a JSON object with the settings and the loss of the first and last step. */
    String METADATA_KEY = "distilled";

    /**
     * The first implementation on the class path.
     *
     * @throws BitDeltaException where there is none
     */
    static ScaleDistiller load() {
        Iterator<ScaleDistiller> implementations = ServiceLoader.load(ScaleDistiller.class).iterator();
        try {
            if (implementations.hasNext()) {
                return implementations.next();
            }
        } catch (ServiceConfigurationError e) {
            throw new BitDeltaException("a ScaleDistiller implementation on the class path cannot be loaded: " + e.getMessage(), e);
        }
        throw new BitDeltaException("no ScaleDistiller implementation on the class path: add the Maven dependency "
                + "org.bitdelta:bitdelta-nd4j (scale distillation on ND4J SameDiff)");
    }

    /** A short name for logs and error messages ("nd4j-cpu", ...). */
    String name();

    /**
     * Distills the scales of {@code delta}: the teacher is {@code finetuned}, the student {@code base} plus the
     * delta's signs times trainable scales (per matrix or per row, as the delta has them); random windows of the
     * calibration text's tokens (the model's own tokenizer) are the training data.
     *
     * @param base            Hugging Face folder of the base model (its fingerprint must be the delta's)
     * @param finetuned       Hugging Face folder of the fine-tune the delta was compressed from
     * @param delta           the delta to refine; left untouched, and it must stay open while the result is used
     * @param calibrationText a UTF-8 text file of at least one window ({@code sequenceLength} tokens)
     * @return a copy of {@code delta} with the distilled scales and metadata {@value #METADATA_KEY}
     * @throws BitDeltaException for bad input (mismatched models, short text) and a loss that is not finite
     */
    DeltaModel distill(Path base, Path finetuned, DeltaModel delta, Path calibrationText, DistillOptions options);
}
