package org.bitdelta;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import org.bitdelta.internal.format.BitDeltaFormat;
import org.bitdelta.internal.safetensors.SafetensorsException;
import org.bitdelta.internal.safetensors.SafetensorsFile;
import org.bitdelta.internal.safetensors.SafetensorsWriter;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;

/**
 * A compressed fine-tune: a {@link BinaryDelta} for every compressed matrix, the fine-tune's other tensors that
 * differ from the base (kept whole in their dtype), and metadata naming the base it belongs to.
 *
 * <p>Tensors may be views of memory-mapped files (the loaded .bitdelta, or the fine-tune it was compressed from):
 * they stay valid until {@link #close()}.
 */
public final class DeltaModel implements AutoCloseable {
    private static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Map<String, BinaryDelta> matrices;
    private final Map<String, Tensor> tensors;
    private final Map<String, String> metadata;
    private final List<AutoCloseable> resources;

    DeltaModel(Map<String, BinaryDelta> matrices, Map<String, Tensor> tensors, Map<String, String> metadata,
               List<AutoCloseable> resources) {
        this.matrices = Collections.unmodifiableMap(new LinkedHashMap<>(matrices));
        this.tensors = Collections.unmodifiableMap(new LinkedHashMap<>(tensors));
        this.metadata = Collections.unmodifiableMap(new LinkedHashMap<>(metadata));
        this.resources = List.copyOf(resources);
    }

    /** Reads a .bitdelta file (memory-mapped; the delta keeps it open until closed). */
    public static DeltaModel load(Path file) {
        SafetensorsFile safetensors = SafetensorsFile.open(file);
        try {
            return fromFile(safetensors);
        } catch (RuntimeException e) {
            safetensors.close();
            throw e;
        }
    }

    private static DeltaModel fromFile(SafetensorsFile file) {
        Path path = file.path();
        Map<String, String> metadata = file.metadata();
        if (!BitDeltaFormat.FORMAT.equals(metadata.get(BitDeltaFormat.KEY_FORMAT))) {
            throw new SafetensorsException(path, "is a safetensors file but not a .bitdelta file (metadata format="
                    + metadata.get(BitDeltaFormat.KEY_FORMAT) + ")");
        }
        String version = metadata.get(BitDeltaFormat.KEY_FORMAT_VERSION);
        if (!String.valueOf(BitDeltaFormat.VERSION).equals(version)) {
            throw new SafetensorsException(path, "format_version " + version + " is not supported (this library reads "
                    + BitDeltaFormat.VERSION + ")");
        }
        for (String key : List.of(BitDeltaFormat.KEY_BASE_FINGERPRINT, BitDeltaFormat.KEY_MATRIX_SHAPES, BitDeltaFormat.KEY_SCALE_GRANULARITY)) {
            if (!metadata.containsKey(key)) {
                throw new SafetensorsException(path, "metadata lacks '" + key + "'");
            }
        }
        JsonObject shapes;
        try {
            shapes = JsonParser.parseString(metadata.get(BitDeltaFormat.KEY_MATRIX_SHAPES)).getAsJsonObject();
        } catch (JsonParseException | IllegalStateException e) {
            throw new SafetensorsException(path, "metadata matrix_shapes is not a JSON object: " + e.getMessage(), e);
        }
        Map<String, BinaryDelta> matrices = new LinkedHashMap<>();
        List<String> used = new ArrayList<>();
        for (Map.Entry<String, JsonElement> entry : shapes.entrySet()) {
            String name = entry.getKey();
            int rows;
            int cols;
            try {
                JsonArray shape = entry.getValue().getAsJsonArray();
                rows = shape.get(0).getAsInt();
                cols = shape.get(1).getAsInt();
            } catch (RuntimeException e) {
                throw new SafetensorsException(path, "matrix '" + name + "': matrix_shapes entry is not [rows, cols]");
            }
            String signsName = name + BitDeltaFormat.SIGNS_SUFFIX;
            String scaleName = name + BitDeltaFormat.SCALE_SUFFIX;
            if (!file.contains(signsName) || !file.contains(scaleName)) {
                throw new SafetensorsException(path, "matrix '" + name + "': missing " + (file.contains(signsName) ? scaleName : signsName));
            }
            Tensor signs = file.tensor(signsName);
            Tensor scale = file.tensor(scaleName);
            long[] expectedSigns = {rows, BinaryDelta.bytesPerRow(cols)};
            if (rows <= 0 || cols <= 0 || signs.dtype() != DType.U8 || !java.util.Arrays.equals(signs.shape(), expectedSigns)) {
                throw new SafetensorsException(path, "tensor '" + signsName + "' is " + signs.dtype() + java.util.Arrays.toString(signs.shape())
                        + ", expected u8" + java.util.Arrays.toString(expectedSigns) + " for a " + rows + "x" + cols + " matrix");
            }
            if (scale.dtype() != DType.F32 || scale.rank() != 1 || (scale.dimension(0) != 1 && scale.dimension(0) != rows)) {
                throw new SafetensorsException(path, "tensor '" + scaleName + "' is " + scale.dtype() + java.util.Arrays.toString(scale.shape())
                        + ", expected f32[1] or f32[" + rows + "]");
            }
            float[] scales = new float[Math.toIntExact(scale.dimension(0))];
            MemorySegment.copy(scale.data(), FLOAT_LE, 0, scales, 0, scales.length);
            for (int i = 0; i < scales.length; i++) {
                if (!Float.isFinite(scales[i])) {
                    throw new SafetensorsException(path, "tensor '" + scaleName + "' holds " + scales[i] + " at index " + i);
                }
            }
            checkPadding(path, signsName, signs.data(), rows, cols);
            matrices.put(name, new BinaryDelta(name, rows, cols, signs.data(), scales));
            used.add(signsName);
            used.add(scaleName);
        }
        Map<String, Tensor> tensors = new LinkedHashMap<>();
        for (String name : file.names()) {
            if (!used.contains(name)) {
                if (matrices.containsKey(name)) {
                    throw new SafetensorsException(path, "tensor '" + name + "' is both a 1-bit matrix and a whole tensor");
                }
                tensors.put(name, file.tensor(name));
            }
        }
        return new DeltaModel(matrices, tensors, metadata, List.of(file));
    }

    private static void checkPadding(Path path, String name, MemorySegment signs, int rows, int cols) {
        if (cols % 8 == 0) {
            return;
        }
        int bytesPerRow = BinaryDelta.bytesPerRow(cols);
        int paddingMask = 0xFF & ~((1 << (cols % 8)) - 1);
        for (int row = 0; row < rows; row++) {
            byte last = signs.get(ValueLayout.JAVA_BYTE, (long) row * bytesPerRow + bytesPerRow - 1);
            if ((last & paddingMask) != 0) {
                throw new SafetensorsException(path, "tensor '" + name + "': padding bits of row " + row + " are not zero");
            }
        }
    }

    /** Writes this delta as a .bitdelta file, atomically; refuses an existing file. */
    public void save(Path file) {
        save(file, false);
    }

    /** Writes this delta as a .bitdelta file, atomically; replaces an existing file only if {@code overwrite}. */
    public void save(Path file, boolean overwrite) {
        List<SafetensorsWriter.Source> sources = new ArrayList<>();
        for (BinaryDelta delta : matrices.values()) {
            sources.add(SafetensorsWriter.Source.of(new Tensor(delta.name() + BitDeltaFormat.SIGNS_SUFFIX, DType.U8,
                    new long[]{delta.rows(), delta.bytesPerRow()}, delta.signs())));
            float[] scales = delta.scales();
            sources.add(SafetensorsWriter.Source.of(Tensor.ofFloats(delta.name() + BitDeltaFormat.SCALE_SUFFIX, scales, scales.length)));
        }
        tensors.values().forEach(tensor -> sources.add(SafetensorsWriter.Source.of(tensor)));
        SafetensorsWriter.write(file, metadata, sources, overwrite);
    }

    /** The delta of matrix {@code name} (e.g. "model.layers.0.self_attn.q_proj.weight"). */
    public BinaryDelta matrix(String name) {
        BinaryDelta delta = matrices.get(name);
        if (delta == null) {
            throw new BitDeltaException("the delta has no 1-bit matrix named '" + name + "'");
        }
        return delta;
    }

    public boolean hasMatrix(String name) {
        return matrices.containsKey(name);
    }

    /** All 1-bit matrices, in file order. */
    public Collection<BinaryDelta> matrices() {
        return matrices.values();
    }

    /** The fine-tune's other tensors that differ from the base, whole, by name. */
    public Map<String, Tensor> tensors() {
        return tensors;
    }

    /** Metadata as stored in the file. */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** The fingerprint of the base model this delta applies to. */
    public String baseFingerprint() {
        return metadata.get(BitDeltaFormat.KEY_BASE_FINGERPRINT);
    }

    /** "per_matrix" or "per_row". */
    public String scaleGranularity() {
        return metadata.get(BitDeltaFormat.KEY_SCALE_GRANULARITY);
    }

    /** The .bitdelta format version of the file (loading accepts only the one this library writes). */
    public int formatVersion() {
        return Integer.parseInt(metadata.get(BitDeltaFormat.KEY_FORMAT_VERSION));
    }

    /** The version of the library that compressed the fine-tune, where the file records it. */
    public Optional<String> libraryVersion() {
        return Optional.ofNullable(metadata.get(BitDeltaFormat.KEY_LIBRARY_VERSION));
    }

    /** The fine-tune's folder name at compression time, where the file records it. */
    public Optional<String> finetunedName() {
        return Optional.ofNullable(metadata.get(BitDeltaFormat.KEY_FINETUNED_NAME));
    }

    /** The bytes of the fine-tune's weight files the delta was compressed from, where the file records them. */
    public OptionalLong finetunedWeightBytes() {
        String value = metadata.get(BitDeltaFormat.KEY_FINETUNED_WEIGHT_BYTES);
        if (value == null) {
            return OptionalLong.empty();
        }
        try {
            return OptionalLong.of(Long.parseLong(value));
        } catch (NumberFormatException e) {
            throw new BitDeltaException("metadata " + BitDeltaFormat.KEY_FINETUNED_WEIGHT_BYTES + " is not a byte count: '" + value + "'", e);
        }
    }

    /**
     * How the scales were distilled ({@link ScaleDistiller}), or empty where they are the compression's own
     * mean |W_ft − W_base|.
     *
     * @throws BitDeltaException where the metadata {@value ScaleDistiller#METADATA_KEY} is neither "false" nor a
     *                           record with the fields of {@link Distillation}
     */
    public Optional<Distillation> distillation() {
        String value = metadata.get(ScaleDistiller.METADATA_KEY);
        if (value == null || value.equals("false")) {
            return Optional.empty();
        }
        try {
            JsonObject record = JsonParser.parseString(value).getAsJsonObject();
            return Optional.of(new Distillation(record.get("steps").getAsInt(), record.get("batch").getAsInt(),
                    record.get("seq").getAsInt(), record.get("lr").getAsDouble(), record.get("weight_decay").getAsDouble(),
                    record.get("seed").getAsLong(), record.get("loss_first").getAsDouble(), record.get("loss_last").getAsDouble()));
        } catch (RuntimeException e) {
            // Gson reports a missing field as a NullPointerException and a wrong one as an exception of its own.
            throw new BitDeltaException("metadata " + ScaleDistiller.METADATA_KEY + " is not a distillation record "
                    + "(steps, batch, seq, lr, weight_decay, seed, loss_first, loss_last): " + value, e);
        }
    }

    /**
     * The settings and the loss of a scale distillation, as the {@link ScaleDistiller} recorded them in the
     * metadata {@value ScaleDistiller#METADATA_KEY} (a JSON object with the fields steps, batch, seq, lr,
     * weight_decay, seed, loss_first and loss_last; implementations may add more).
     *
     * @param steps          optimizer steps
     * @param batchSize      windows per step
     * @param sequenceLength tokens per window
     * @param learningRate   the peak learning rate
     * @param weightDecay    AdamW's decoupled weight decay
     * @param seed           the seed of the window choice
     * @param firstLoss      the loss of the first step
     * @param lastLoss       the loss of the last step
     */
    public record Distillation(int steps, int batchSize, int sequenceLength, double learningRate, double weightDecay,
                               long seed, double firstLoss, double lastLoss) {
    }

    /** Bytes the .bitdelta file's tensors take (signs, scales, whole tensors), without the header. */
    public long tensorBytes() {
        long total = 0;
        for (BinaryDelta delta : matrices.values()) {
            total += delta.signs().byteSize() + 4L * delta.scales().length;
        }
        for (Tensor tensor : tensors.values()) {
            total += tensor.byteSize();
        }
        return total;
    }

    /**
     * A copy with new scales for some matrices and extra metadata (e.g. distillation results); signs and other
     * tensors are shared with this delta, which must stay open while the copy is used.
     */
    public DeltaModel withScales(Map<String, float[]> newScales, Map<String, String> extraMetadata) {
        Map<String, BinaryDelta> updated = new LinkedHashMap<>(matrices);
        newScales.forEach((name, scales) -> updated.put(name, matrix(name).withScales(scales)));
        Map<String, String> merged = new LinkedHashMap<>(metadata);
        merged.putAll(extraMetadata);
        return new DeltaModel(updated, tensors, merged, List.of());
    }

    @Override
    public void close() {
        RuntimeException failure = null;
        for (AutoCloseable resource : resources) {
            try {
                resource.close();
            } catch (Exception e) {
                if (failure == null) {
                    failure = new BitDeltaException("closing the delta failed: " + e, e);
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    @Override
    public String toString() {
        return "DeltaModel[" + matrices.size() + " 1-bit matrices, " + tensors.size() + " whole tensors, "
                + metadata.getOrDefault(BitDeltaFormat.KEY_FINETUNED_NAME, "?") + "]";
    }
}
