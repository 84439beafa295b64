package org.bitdelta.internal.safetensors;

import com.google.gson.stream.JsonWriter;
import org.bitdelta.internal.io.AtomicFiles;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

import java.io.IOException;
import java.io.StringWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Writes a safetensors file atomically. Tensors are declared up front (name, dtype, shape) and each fills its
 * own slice of the memory-mapped output, so a model of any size is written without passing through the heap.
 * The header is padded with spaces so that the data section starts 8-byte aligned.
 */
public final class SafetensorsWriter {
    private static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private SafetensorsWriter() {
    }

    /** A tensor to be written: its header entry and the code that fills its bytes. */
    public interface Source {
        String name();

        DType dtype();

        long[] shape();

        /** Fills {@code target}, which has exactly the tensor's byte size. */
        void writeTo(MemorySegment target);

        default long byteSize() {
            return Tensor.elementCount(shape()) * dtype().byteSize();
        }

        /** A source that copies an existing tensor (possibly renamed). */
        static Source of(String name, Tensor tensor) {
            return new Source() {
                public String name() {
                    return name;
                }

                public DType dtype() {
                    return tensor.dtype();
                }

                public long[] shape() {
                    return tensor.shape();
                }

                public void writeTo(MemorySegment target) {
                    MemorySegment.copy(tensor.data(), 0, target, 0, target.byteSize());
                }
            };
        }

        static Source of(Tensor tensor) {
            return of(tensor.name(), tensor);
        }
    }

    /** Writes {@code sources} in order with {@code metadata}; refuses an existing target unless {@code overwrite}. */
    public static void write(Path target, Map<String, String> metadata, List<? extends Source> sources, boolean overwrite) {
        byte[] header = header(target, metadata, sources);
        long dataBytes = sources.stream().mapToLong(Source::byteSize).sum();
        long total = 8 + header.length + dataBytes;
        AtomicFiles.writeFile(target, overwrite, temporary -> {
            try (FileChannel channel = FileChannel.open(temporary, StandardOpenOption.READ, StandardOpenOption.WRITE);
                 Arena arena = Arena.ofShared()) { // shared: sources may fill their slice from several threads
                if (total == 0) {
                    return;
                }
                MemorySegment output = channel.map(FileChannel.MapMode.READ_WRITE, 0, total, arena);
                output.set(LONG_LE, 0, header.length);
                MemorySegment.copy(MemorySegment.ofArray(header), 0, output, 8, header.length);
                long position = 8 + header.length;
                for (Source source : sources) {
                    long size = source.byteSize();
                    source.writeTo(output.asSlice(position, size));
                    position += size;
                }
                output.force();
            }
        });
    }

    static byte[] header(Path target, Map<String, String> metadata, List<? extends Source> sources) {
        StringWriter text = new StringWriter();
        Set<String> seen = new HashSet<>();
        try (JsonWriter json = new JsonWriter(text)) {
            json.setHtmlSafe(false);
            json.beginObject();
            if (metadata != null && !metadata.isEmpty()) {
                json.name("__metadata__").beginObject();
                for (Map.Entry<String, String> entry : metadata.entrySet()) {
                    json.name(entry.getKey()).value(entry.getValue());
                }
                json.endObject();
            }
            long offset = 0;
            for (Source source : sources) {
                if (source.name().equals("__metadata__") || !seen.add(source.name())) {
                    throw new SafetensorsException(target, "tensor name '" + source.name() + "' is reserved or given twice");
                }
                json.name(source.name()).beginObject();
                json.name("dtype").value(source.dtype().safetensorsName());
                json.name("shape").beginArray();
                for (long dimension : source.shape()) {
                    json.value(dimension);
                }
                json.endArray();
                long size = source.byteSize();
                json.name("data_offsets").beginArray().value(offset).value(offset + size).endArray();
                json.endObject();
                offset += size;
            }
            json.endObject();
        } catch (IOException e) {
            throw new IllegalStateException("writing JSON to a string failed", e);
        }
        byte[] utf8 = text.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (int) ((8 + utf8.length + 7) / 8 * 8 - 8);
        byte[] header = new byte[padded];
        System.arraycopy(utf8, 0, header, 0, utf8.length);
        java.util.Arrays.fill(header, utf8.length, padded, (byte) ' ');
        return header;
    }
}
