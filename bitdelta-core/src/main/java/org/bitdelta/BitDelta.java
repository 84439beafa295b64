package org.bitdelta;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import org.bitdelta.internal.format.BitDeltaFormat;
import org.bitdelta.internal.format.Fingerprint;
import org.bitdelta.internal.format.Merger;
import org.bitdelta.internal.format.ModelFiles;
import org.bitdelta.internal.format.SignCompressor;
import org.bitdelta.internal.safetensors.ModelWeights;
import org.bitdelta.internal.safetensors.SafetensorsFile;
import org.bitdelta.tensor.Tensor;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicLong;

/** Entry points: compress a fine-tune against its base, and merge a delta back into a full model. */
public final class BitDelta {
    /** config.json fields that must agree between base and fine-tune: each changes the shapes or the math. */
    static final List<String> CONFIG_FIELDS_THAT_MUST_MATCH = List.of(
            "model_type", "architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings",
            "hidden_act", "rms_norm_eps", "rope_theta", "rope_scaling", "sliding_window", "attention_bias",
            "mlp_bias", "partial_rotary_factor");

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
     * from the base is kept whole. Base and fine-tune must have the same architecture and tensor set.
     */
    public static DeltaModel compress(Path base, Path finetuned, CompressOptions options) {
        Objects.requireNonNull(options, "options");
        checkConfigs(base, finetuned);
        ModelWeights baseWeights = ModelWeights.open(base);
        ModelWeights finetunedWeights = null;
        Arena signArena = Arena.ofShared();
        boolean success = false;
        try {
            finetunedWeights = ModelWeights.open(finetuned);
            checkTensorSets(baseWeights, finetunedWeights);
            String fingerprint = Fingerprint.of(baseWeights);
            long totalBytes = finetunedWeights.names().stream().mapToLong(name -> baseWeights.entry(name).byteSize()).sum();
            AtomicLong done = new AtomicLong();
            Map<String, BinaryDelta> matrices = new LinkedHashMap<>();
            Map<String, Tensor> tensors = new LinkedHashMap<>();
            JsonObject shapes = new JsonObject();
            for (String name : finetunedWeights.names()) {
                Tensor baseTensor = baseWeights.tensor(name);
                Tensor finetunedTensor = finetunedWeights.tensor(name);
                if (options.selects(name)) {
                    if (finetunedTensor.rank() != 2 || !finetunedTensor.dtype().isFloatingPoint()) {
                        throw new BitDeltaException(finetuned + ": tensor '" + name + "' matches the matrix patterns "
                                + options.matrixPatterns() + " but is " + finetunedTensor.dtype() + Arrays.toString(finetunedTensor.shape())
                                + ", not a 2-D float matrix");
                    }
                    matrices.put(name, compressMatrix(baseTensor, finetunedTensor, options.perRowScales(), signArena));
                    JsonArray shape = new JsonArray();
                    shape.add(finetunedTensor.dimension(0));
                    shape.add(finetunedTensor.dimension(1));
                    shapes.add(name, shape);
                } else if (finetunedTensor.data().mismatch(baseTensor.data()) != -1) {
                    SignCompressor.requireFinite(finetunedTensor, "fine-tune");
                    tensors.put(name, finetunedTensor);
                }
                options.progress().onProgress("compress", done.addAndGet(finetunedTensor.byteSize()), totalBytes);
            }
            Map<String, String> metadata = new LinkedHashMap<>();
            metadata.put(BitDeltaFormat.KEY_FORMAT, BitDeltaFormat.FORMAT);
            metadata.put(BitDeltaFormat.KEY_FORMAT_VERSION, String.valueOf(BitDeltaFormat.VERSION));
            metadata.put(BitDeltaFormat.KEY_LIBRARY_VERSION, version());
            metadata.put(BitDeltaFormat.KEY_BASE_FINGERPRINT, fingerprint);
            metadata.put(BitDeltaFormat.KEY_FINETUNED_NAME, finetuned.toAbsolutePath().normalize().getFileName().toString());
            metadata.put(BitDeltaFormat.KEY_FINETUNED_WEIGHT_BYTES, String.valueOf(finetunedWeights.totalBytes()));
            metadata.put(BitDeltaFormat.KEY_SCALE_GRANULARITY, options.perRowScales() ? BitDeltaFormat.PER_ROW : BitDeltaFormat.PER_MATRIX);
            metadata.put(BitDeltaFormat.KEY_DISTILLED, "false");
            metadata.put(BitDeltaFormat.KEY_MATRIX_SHAPES, shapes.toString());
            metadata.put(BitDeltaFormat.KEY_MODEL_FILES, ModelFiles.describe(folderOf(base), folderOf(finetuned)));
            List<AutoCloseable> resources = new ArrayList<>();
            resources.add(signArena);
            if (tensors.isEmpty()) {
                finetunedWeights.close();
            } else {
                resources.add(finetunedWeights);
            }
            success = true;
            return new DeltaModel(matrices, tensors, metadata, resources);
        } finally {
            baseWeights.close();
            if (!success) {
                signArena.close();
                if (finetunedWeights != null) {
                    finetunedWeights.close();
                }
            }
        }
    }


    private static BinaryDelta compressMatrix(Tensor base, Tensor finetuned, boolean perRow, Arena arena) {
        int rows = Math.toIntExact(base.dimension(0));
        int cols = Math.toIntExact(base.dimension(1));
        MemorySegment signs = arena.allocate((long) rows * BinaryDelta.bytesPerRow(cols), 64);
        double[] rowSums = SignCompressor.compress(base, finetuned, signs);
        float[] scales;
        if (perRow) {
            scales = new float[rows];
            for (int row = 0; row < rows; row++) {
                scales[row] = (float) (rowSums[row] / cols);
            }
        } else {
            double total = 0;
            for (double rowSum : rowSums) {
                total += rowSum;
            }
            scales = new float[]{(float) (total / ((double) rows * cols))};
        }
        return new BinaryDelta(base.name(), rows, cols, signs, scales);
    }

    private static Path folderOf(Path model) {
        return Files.isDirectory(model) ? model : model.toAbsolutePath().getParent();
    }

    static void checkConfigs(Path base, Path finetuned) {
        Path baseConfig = folderOf(base).resolve("config.json");
        Path finetunedConfig = folderOf(finetuned).resolve("config.json");
        if (!Files.isRegularFile(baseConfig) && !Files.isRegularFile(finetunedConfig)) {
            return; // bare safetensors files: nothing to compare beyond the tensors
        }
        JsonObject baseJson = ModelWeights.readConfig(folderOf(base));
        JsonObject finetunedJson = ModelWeights.readConfig(folderOf(finetuned));
        for (String field : CONFIG_FIELDS_THAT_MUST_MATCH) {
            JsonElement baseValue = baseJson.get(field);
            JsonElement finetunedValue = finetunedJson.get(field);
            if (!Objects.equals(normalize(baseValue), normalize(finetunedValue))) {
                throw new BitDeltaException(finetunedConfig + ": field '" + field + "' is " + finetunedValue
                        + " but the base's (" + baseConfig + ") is " + baseValue + ": base and fine-tune must share an architecture");
            }
        }
    }

    private static JsonElement normalize(JsonElement value) {
        return value == null || value.isJsonNull() ? null : value;
    }

    private static void checkTensorSets(ModelWeights base, ModelWeights finetuned) {
        TreeSet<String> missing = new TreeSet<>(base.names());
        missing.removeAll(finetuned.names());
        TreeSet<String> extra = new TreeSet<>(finetuned.names());
        extra.removeAll(base.names());
        if (!missing.isEmpty() || !extra.isEmpty()) {
            throw new BitDeltaException(finetuned.location() + ": its tensors differ from the base's (" + base.location() + "): "
                    + (missing.isEmpty() ? "" : "missing " + first(missing)) + (missing.isEmpty() || extra.isEmpty() ? "" : "; ")
                    + (extra.isEmpty() ? "" : "not in the base " + first(extra)));
        }
        for (String name : finetuned.names()) {
            SafetensorsFile.Entry baseEntry = base.entry(name);
            SafetensorsFile.Entry finetunedEntry = finetuned.entry(name);
            if (baseEntry.dtype() != finetunedEntry.dtype()) {
                throw new BitDeltaException(finetuned.fileOf(name) + ": tensor '" + name + "' is " + finetunedEntry.dtype()
                        + " but the base's is " + baseEntry.dtype());
            }
            if (!Arrays.equals(baseEntry.shape(), finetunedEntry.shape())) {
                throw new BitDeltaException(finetuned.fileOf(name) + ": tensor '" + name + "' has shape " + Arrays.toString(finetunedEntry.shape())
                        + " but the base's is " + Arrays.toString(baseEntry.shape()));
            }
        }
    }

    private static String first(TreeSet<String> names) {
        return names.size() == 1 ? "'" + names.first() + "'" : "'" + names.first() + "' and " + (names.size() - 1) + " more";
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
