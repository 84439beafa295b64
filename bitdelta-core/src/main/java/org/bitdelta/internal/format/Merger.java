package org.bitdelta.internal.format;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.DeltaModel;
import org.bitdelta.ProgressListener;
import org.bitdelta.internal.io.AtomicFiles;
import org.bitdelta.internal.safetensors.ModelWeights;
import org.bitdelta.internal.safetensors.SafetensorsFile;
import org.bitdelta.internal.safetensors.SafetensorsWriter;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.IntStream;

/** Rebuilds the full fine-tune from a base folder and a delta (like the reference's --save_full_model). */
public final class Merger {
    private static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private Merger() {
    }

    public static void merge(Path base, DeltaModel delta, Path out, boolean overwrite, ProgressListener progress) {
        AtomicFiles.checkTarget(out, overwrite);
        try (ModelWeights baseWeights = ModelWeights.open(base)) {
            Fingerprint.requireMadeFrom(Fingerprint.of(baseWeights), base, delta, "the delta (" + delta + ")");
            for (BinaryDelta matrix : delta.matrices()) {
                Tensor weight = baseWeights.tensorOrNull(matrix.name());
                if (weight == null || weight.rank() != 2 || weight.dimension(0) != matrix.rows() || weight.dimension(1) != matrix.cols()) {
                    throw new BitDeltaException(base + ": tensor '" + matrix.name() + "' is " + weight + ", but the delta is "
                            + matrix.rows() + "x" + matrix.cols());
                }
            }
            for (Tensor tensor : delta.tensors().values()) {
                if (!baseWeights.contains(tensor.name())) {
                    throw new BitDeltaException(base + ": has no tensor '" + tensor.name() + "' that the delta replaces");
                }
            }
            long total = baseWeights.names().stream().mapToLong(name -> baseWeights.entry(name).byteSize()).sum();
            AtomicLong done = new AtomicLong();
            Path baseFolder = Files.isDirectory(base) ? base : base.toAbsolutePath().getParent();
            AtomicFiles.writeDirectory(out, overwrite, folder -> {
                // Mirror the base's sharding: same file names, same tensor order, same index.
                for (SafetensorsFile shard : baseWeights.files()) {
                    List<SafetensorsWriter.Source> sources = new ArrayList<>();
                    for (String name : shard.names()) {
                        sources.add(source(shard.tensor(name), delta, progress, done, total));
                    }
                    SafetensorsWriter.write(folder.resolve(shard.path().getFileName()), Map.of("format", "pt"), sources, false);
                }
                Path index = baseFolder.resolve(ModelWeights.INDEX_FILE);
                if (baseWeights.files().size() > 1 || !Files.isRegularFile(baseFolder.resolve(ModelWeights.SINGLE_FILE))) {
                    if (Files.isRegularFile(index)) {
                        Files.copy(index, folder.resolve(ModelWeights.INDEX_FILE));
                    }
                }
                ModelFiles.restore(delta.metadata().get(BitDeltaFormat.KEY_MODEL_FILES), baseFolder, folder);
            });
        }
    }

    private static SafetensorsWriter.Source source(Tensor baseTensor, DeltaModel delta, ProgressListener progress,
                                                   AtomicLong done, long total) {
        String name = baseTensor.name();
        Tensor replacement = delta.tensors().get(name);
        BinaryDelta matrix = delta.hasMatrix(name) ? delta.matrix(name) : null;
        Tensor shapeSource = replacement != null ? replacement : baseTensor;
        return SafetensorsWriter.Source.computed(name, shapeSource.dtype(), shapeSource.shape(), target -> {
            if (matrix != null) {
                applyDelta(baseTensor, matrix, target);
            } else {
                MemorySegment.copy(shapeSource.data(), 0, target, 0, target.byteSize());
            }
            progress.onProgress("merge", done.addAndGet(baseTensor.byteSize()), total);
        });
    }

    /** target = round_to_dtype(float(base) + (sign ? +scale : −scale)), row by row in parallel. */
    static void applyDelta(Tensor base, BinaryDelta delta, MemorySegment target) {
        int rows = delta.rows();
        int cols = delta.cols();
        DType dtype = base.dtype();
        MemorySegment source = base.data();
        MemorySegment signs = delta.signs();
        int bytesPerRow = delta.bytesPerRow();
        IntStream.range(0, rows).parallel().forEach(row -> {
            float scale = delta.scale(row);
            long first = (long) row * cols;
            long signRow = (long) row * bytesPerRow;
            for (int col = 0; col < cols; col++) {
                long index = first + col;
                boolean positive = ((signs.get(ValueLayout.JAVA_BYTE, signRow + (col >>> 3)) >>> (col & 7)) & 1) != 0;
                switch (dtype) {
                    case F32 -> target.set(FLOAT_LE, index * 4, source.get(FLOAT_LE, index * 4) + (positive ? scale : -scale));
                    case BF16 -> {
                        float value = Float.intBitsToFloat((source.get(SHORT_LE, index * 2) & 0xFFFF) << 16);
                        target.set(SHORT_LE, index * 2, FloatRounding.toBfloat16(value + (positive ? scale : -scale)));
                    }
                    case F16 -> {
                        float value = Float.float16ToFloat(source.get(SHORT_LE, index * 2));
                        target.set(SHORT_LE, index * 2, Float.floatToFloat16(value + (positive ? scale : -scale)));
                    }
                    default -> throw new BitDeltaException("tensor '" + base.name() + "' is " + dtype + ": cannot apply a delta");
                }
            }
        });
    }
}
