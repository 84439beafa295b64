package org.bitdelta;

import org.bitdelta.internal.format.Compressor;
import org.bitdelta.internal.format.Merger;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.util.Objects;
import java.util.Properties;

/** Entry points: compress a fine-tune against its base, and merge a delta back into a full model. */
public final class BitDelta {
    private BitDelta() {
    }

    /** The library version (from the build). */
    public static String version() {
        try (InputStream in = BitDelta.class.getResourceAsStream("version.properties")) {
            Properties properties = new Properties();
            if (in != null) {
                properties.load(in);
            }
            return properties.getProperty("version", "unknown");
        } catch (IOException e) {
            return "unknown";
        }
    }

    /** Compresses {@code finetuned} against {@code base} (Hugging Face folders) with the default options. */
    public static DeltaModel compress(Path base, Path finetuned) {
        return compress(base, finetuned, CompressOptions.defaults());
    }

    /**
     * Compresses {@code finetuned} against {@code base}: for every selected matrix the packed signs of
     * W_ft − W_base and the scale mean|W_ft − W_base| (per matrix or per row); every other tensor that differs
     * from the base is kept whole. Base and fine-tune must have the same architecture and tensor set. Runs on the
     * options' backend where it compresses on its device (the CUDA backend), else on the CPU; both give the same
     * bits.
     */
    public static DeltaModel compress(Path base, Path finetuned, CompressOptions options) {
        Objects.requireNonNull(options, "options");
        Compressor.Result result = Compressor.compress(base, finetuned, options.perRowScales(), options::selects,
                options.matrixPatterns(), options.backend(), options.progress(), version());
        return new DeltaModel(result.matrices(), result.tensors(), result.metadata(), result.resources());
    }

    /** Writes the full fine-tune reconstructed from {@code base} and {@code delta} as a Hugging Face folder. */
    public static void merge(Path base, DeltaModel delta, Path out) {
        merge(base, delta, out, false, ProgressListener.NONE);
    }

    /**
     * Writes {@code base + scale ⊙ S} for every 1-bit matrix (rounded to the base's dtype), the delta's whole
     * tensors, the base's other tensors, and the fine-tune's config and tokenizer files, into the folder
     * {@code out}, atomically. Refuses a delta made from another base, and an existing {@code out} unless
     * {@code overwrite}.
     */
    public static void merge(Path base, DeltaModel delta, Path out, boolean overwrite, ProgressListener progress) {
        Merger.merge(base, delta, out, overwrite, progress);
    }
}
