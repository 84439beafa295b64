package org.bitdelta.internal.format;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.ProgressListener;
import org.bitdelta.internal.safetensors.ModelWeights;
import org.bitdelta.internal.safetensors.SafetensorsFile;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.spi.TensorBackends;
import org.bitdelta.tensor.Tensor;

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
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Predicate;

/**
 * The compression loop behind {@code BitDelta.compress}: walks the fine-tune's tensors, turns each selected
 * matrix into packed signs and mean |Δ| scales (on the backend's device where it offers
 * {@link TensorBackend#compressMatrix}, else with {@link SignCompressor} on the CPU; both give the same bits) and
 * keeps every other tensor that differs from the base whole.
 */
public final class Compressor {
    /** config.json fields that must agree between base and fine-tune: each changes the shapes or the math. */
    private static final List<String> CONFIG_FIELDS_THAT_MUST_MATCH = List.of(
            "model_type", "architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings",
            "hidden_act", "rms_norm_eps", "rope_theta", "rope_scaling", "sliding_window", "attention_bias",
            "mlp_bias", "partial_rotary_factor");


    /** What a DeltaModel is made of; {@code resources} must be closed with it (signs arena, mapped fine-tune). */
    public record Result(Map<String, BinaryDelta> matrices, Map<String, Tensor> tensors, Map<String, String> metadata,
                         List<AutoCloseable> resources) {
    }

    private Compressor() {
    }

    /**
     * @param backend the backend to compress on, kept open; null: the default backend, closed afterwards
     */
    public static Result compress(Path base, Path finetuned, boolean perRowScales, Predicate<String> selects,
                                  List<String> patterns, TensorBackend backend, ProgressListener progress, String libraryVersion) {
        checkConfigs(base, finetuned);
        TensorBackend device = backend != null ? backend : TensorBackends.createDefault();
        try {
            return run(base, finetuned, perRowScales, selects, patterns, device, progress, libraryVersion);
        } finally {
            if (backend == null) {
                device.close();
            }
        }
    }

    private static Result run(Path base, Path finetuned, boolean perRowScales, Predicate<String> selects,
                              List<String> patterns, TensorBackend backend, ProgressListener progress, String libraryVersion) {
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
                if (selects.test(name)) {
                    if (finetunedTensor.rank() != 2 || !finetunedTensor.dtype().isFloatingPoint()) {
                        throw new BitDeltaException(finetuned + ": tensor '" + name + "' matches the matrix patterns "
                                + patterns + " but is " + finetunedTensor.dtype() + Arrays.toString(finetunedTensor.shape())
                                + ", not a 2-D float matrix");
                    }
                    matrices.put(name, compressMatrix(baseTensor, finetunedTensor, perRowScales, signArena, backend));
                    JsonArray shape = new JsonArray();
                    shape.add(finetunedTensor.dimension(0));
                    shape.add(finetunedTensor.dimension(1));
                    shapes.add(name, shape);
                } else if (finetunedTensor.data().mismatch(baseTensor.data()) != -1) {
                    SignCompressor.requireFinite(finetunedTensor, "fine-tune");
                    tensors.put(name, finetunedTensor);
                }
                progress.onProgress("compress", done.addAndGet(finetunedTensor.byteSize()), totalBytes);
            }
            Map<String, String> metadata = new LinkedHashMap<>();
            metadata.put(BitDeltaFormat.KEY_FORMAT, BitDeltaFormat.FORMAT);
            metadata.put(BitDeltaFormat.KEY_FORMAT_VERSION, String.valueOf(BitDeltaFormat.VERSION));
            metadata.put(BitDeltaFormat.KEY_LIBRARY_VERSION, libraryVersion);
            metadata.put(BitDeltaFormat.KEY_BASE_FINGERPRINT, fingerprint);
            metadata.put(BitDeltaFormat.KEY_FINETUNED_NAME, finetuned.toAbsolutePath().normalize().getFileName().toString());
            metadata.put(BitDeltaFormat.KEY_FINETUNED_WEIGHT_BYTES, String.valueOf(finetunedWeights.totalBytes()));
            metadata.put(BitDeltaFormat.KEY_SCALE_GRANULARITY, perRowScales ? BitDeltaFormat.PER_ROW : BitDeltaFormat.PER_MATRIX);
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
            return new Result(matrices, tensors, metadata, resources);
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

    /** One matrix: on the backend's device when it compresses this pair, else on the CPU. */
    static BinaryDelta compressMatrix(Tensor base, Tensor finetuned, boolean perRow, Arena arena, TensorBackend backend) {
        int rows = Math.toIntExact(base.dimension(0));
        int cols = Math.toIntExact(base.dimension(1));
        MemorySegment signs = arena.allocate((long) rows * BinaryDelta.bytesPerRow(cols), 64);
        float[] scales = backend.compressMatrix(base, finetuned, signs, perRow);
        if (scales == null) {
            scales = cpuScales(SignCompressor.compress(base, finetuned, signs), rows, cols, perRow);
        } else if (scales.length != (perRow ? rows : 1)) {
            throw new BitDeltaException("backend " + backend.name() + " returned " + scales.length + " scales for '"
                    + base.name() + "' [" + rows + ", " + cols + "], expected " + (perRow ? rows : 1));
        }
        return new BinaryDelta(base.name(), rows, cols, signs, scales);
    }

    /** mean |Δ| per row, or over the matrix, from the rows' sums of |Δ| (double, summed in row order). */
    public static float[] cpuScales(double[] rowSums, int rows, int cols, boolean perRow) {
        if (perRow) {
            float[] scales = new float[rows];
            for (int row = 0; row < rows; row++) {
                scales[row] = (float) (rowSums[row] / cols);
            }
            return scales;
        }
        double total = 0;
        for (double rowSum : rowSums) {
            total += rowSum;
        }
        return new float[]{(float) (total / ((double) rows * cols))};
    }

    private static void checkConfigs(Path base, Path finetuned) {
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

    private static Path folderOf(Path model) {
        return Files.isDirectory(model) ? model : model.toAbsolutePath().getParent();
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
}
