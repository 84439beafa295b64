package org.bitdelta.internal.safetensors;

import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import com.google.gson.stream.MalformedJsonException;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

import java.io.EOFException;
import java.io.IOException;
import java.io.StringReader;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A safetensors file mapped into memory once; every tensor is a zero-copy slice of the mapping.
 *
 * <p>No library on Maven Central reads safetensors by memory mapping (DJL's reader copies onto the heap), and a
 * 13 GB model must not sit on the heap, so this reader is written on {@code java.lang.foreign}. The header is
 * validated completely before any tensor is handed out: every offset lies inside the file, the tensors tile the
 * data section without gaps or overlaps, and each byte length matches its dtype and shape. A corrupt file
 * therefore raises {@link SafetensorsException} and never leads to a read outside the mapping.
 */
public final class SafetensorsFile implements AutoCloseable {
    /** Same cap as the reference implementation: a header over 100 MB is treated as corrupt. */
    static final long MAX_HEADER_BYTES = 100L * 1024 * 1024;
    private static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** One header entry: where a tensor's bytes lie relative to the start of the data section. */
    public record Entry(String name, DType dtype, long[] shape, long begin, long end) {
        public long byteSize() {
            return end - begin;
        }
    }

    private final Path path;
    private final Arena arena;
    private final MemorySegment mapping;
    private final long dataStart;
    private final Map<String, Entry> entries;
    private final Map<String, String> metadata;

    private SafetensorsFile(Path path, Arena arena, MemorySegment mapping, long dataStart,
                            Map<String, Entry> entries, Map<String, String> metadata) {
        this.path = path;
        this.arena = arena;
        this.mapping = mapping;
        this.dataStart = dataStart;
        this.entries = entries;
        this.metadata = metadata;
    }

    /** Maps and validates {@code path}. */
    public static SafetensorsFile open(Path path) {
        Arena arena = Arena.ofShared();
        try {
            MemorySegment mapping;
            try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ)) {
                mapping = channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size(), arena);
            } catch (IOException e) {
                throw new SafetensorsException(path, "cannot read: " + e, e);
            }
            long fileSize = mapping.byteSize();
            if (fileSize < 8) {
                throw new SafetensorsException(path, "truncated: " + fileSize
                        + " bytes, but a safetensors file starts with an 8-byte header length");
            }
            long headerLength = mapping.get(LONG_LE, 0);
            if (headerLength < 2 || headerLength > MAX_HEADER_BYTES) {
                throw new SafetensorsException(path, "header length " + Long.toUnsignedString(headerLength)
                        + " is not plausible (2.." + MAX_HEADER_BYTES + " bytes)");
            }
            if (headerLength > fileSize - 8) {
                throw new SafetensorsException(path, "header length " + headerLength + " runs past the end of the file ("
                        + fileSize + " bytes): the file is truncated or not safetensors");
            }
            byte[] headerBytes = mapping.asSlice(8, headerLength).toArray(ValueLayout.JAVA_BYTE);
            String header = decodeUtf8(path, headerBytes);
            long dataStart = 8 + headerLength;
            Map<String, String> metadata = new LinkedHashMap<>();
            Map<String, Entry> entries = parseHeader(path, header, metadata);
            validateLayout(path, entries, fileSize - dataStart);
            return new SafetensorsFile(path, arena, mapping, dataStart,
                    Collections.unmodifiableMap(entries), Collections.unmodifiableMap(metadata));
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    private static String decodeUtf8(Path path, byte[] bytes) {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(java.nio.ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            throw new SafetensorsException(path, "header is not valid UTF-8");
        }
    }

    private static Map<String, Entry> parseHeader(Path path, String header, Map<String, String> metadata) {
        Map<String, Entry> entries = new LinkedHashMap<>();
        try (JsonReader reader = new JsonReader(new StringReader(header))) {
            reader.setStrictness(Strictness.STRICT);
            if (reader.peek() != JsonToken.BEGIN_OBJECT) {
                throw new SafetensorsException(path, "header is not a JSON object");
            }
            reader.beginObject();
            boolean sawMetadata = false;
            while (reader.hasNext()) {
                String name = reader.nextName();
                if (name.equals("__metadata__")) {
                    if (sawMetadata) {
                        throw new SafetensorsException(path, "header has __metadata__ twice");
                    }
                    sawMetadata = true;
                    readMetadata(path, reader, metadata);
                    continue;
                }
                if (entries.containsKey(name)) {
                    throw new SafetensorsException(path, "header names tensor '" + name + "' twice");
                }
                entries.put(name, readEntry(path, name, reader));
            }
            reader.endObject();
            if (reader.peek() != JsonToken.END_DOCUMENT) {
                throw new SafetensorsException(path, "header has data after its JSON object");
            }
        } catch (MalformedJsonException | EOFException | IllegalStateException | NumberFormatException e) {
            throw new SafetensorsException(path, "header is not valid JSON: " + e.getMessage(), e);
        } catch (IOException e) {
            throw new SafetensorsException(path, "header is not valid JSON: " + e.getMessage(), e);
        }
        return entries;
    }

    private static void readMetadata(Path path, JsonReader reader, Map<String, String> metadata) throws IOException {
        if (reader.peek() != JsonToken.BEGIN_OBJECT) {
            throw new SafetensorsException(path, "__metadata__ is not a JSON object of strings");
        }
        reader.beginObject();
        while (reader.hasNext()) {
            String key = reader.nextName();
            if (reader.peek() != JsonToken.STRING) {
                throw new SafetensorsException(path, "__metadata__ value of '" + key + "' is not a string");
            }
            if (metadata.put(key, reader.nextString()) != null) {
                throw new SafetensorsException(path, "__metadata__ has key '" + key + "' twice");
            }
        }
        reader.endObject();
    }

    private static Entry readEntry(Path path, String name, JsonReader reader) throws IOException {
        if (reader.peek() != JsonToken.BEGIN_OBJECT) {
            throw new SafetensorsException(path, "tensor '" + name + "': header entry is not a JSON object");
        }
        DType dtype = null;
        long[] shape = null;
        long[] offsets = null;
        reader.beginObject();
        while (reader.hasNext()) {
            String field = reader.nextName();
            switch (field) {
                case "dtype" -> {
                    if (reader.peek() != JsonToken.STRING) {
                        throw new SafetensorsException(path, "tensor '" + name + "': dtype is not a string");
                    }
                    String value = reader.nextString();
                    try {
                        dtype = DType.fromSafetensorsName(value);
                    } catch (IllegalArgumentException e) {
                        throw new SafetensorsException(path, "tensor '" + name + "': " + e.getMessage());
                    }
                }
                case "shape" -> shape = readLongs(path, name, "shape", reader);
                case "data_offsets" -> offsets = readLongs(path, name, "data_offsets", reader);
                default -> throw new SafetensorsException(path, "tensor '" + name + "': unknown header field '" + field + "'");
            }
        }
        reader.endObject();
        if (dtype == null || shape == null || offsets == null) {
            throw new SafetensorsException(path, "tensor '" + name + "': header entry lacks "
                    + (dtype == null ? "dtype" : shape == null ? "shape" : "data_offsets"));
        }
        if (offsets.length != 2) {
            throw new SafetensorsException(path, "tensor '" + name + "': data_offsets has " + offsets.length + " values, not 2");
        }
        long elements;
        try {
            elements = Tensor.elementCount(shape);
            Math.multiplyExact(elements, dtype.byteSize());
        } catch (ArithmeticException e) {
            throw new SafetensorsException(path, "tensor '" + name + "': shape " + Arrays.toString(shape) + " overflows");
        }
        if (offsets[0] > offsets[1]) {
            throw new SafetensorsException(path, "tensor '" + name + "': data_offsets " + Arrays.toString(offsets) + " end before they begin");
        }
        if (offsets[1] - offsets[0] != elements * dtype.byteSize()) {
            throw new SafetensorsException(path, "tensor '" + name + "': data_offsets " + Arrays.toString(offsets) + " span "
                    + (offsets[1] - offsets[0]) + " bytes, but " + dtype.safetensorsName() + Arrays.toString(shape)
                    + " needs " + elements * dtype.byteSize());
        }
        return new Entry(name, dtype, shape, offsets[0], offsets[1]);
    }

    private static long[] readLongs(Path path, String tensor, String field, JsonReader reader) throws IOException {
        if (reader.peek() != JsonToken.BEGIN_ARRAY) {
            throw new SafetensorsException(path, "tensor '" + tensor + "': " + field + " is not an array");
        }
        List<Long> values = new ArrayList<>();
        reader.beginArray();
        while (reader.hasNext()) {
            if (reader.peek() != JsonToken.NUMBER) {
                throw new SafetensorsException(path, "tensor '" + tensor + "': " + field + " holds a non-number");
            }
            String text = reader.nextString();
            long value;
            try {
                value = Long.parseLong(text);
            } catch (NumberFormatException e) {
                throw new SafetensorsException(path, "tensor '" + tensor + "': " + field + " holds '" + text + "', not a non-negative integer");
            }
            if (value < 0) {
                throw new SafetensorsException(path, "tensor '" + tensor + "': " + field + " holds negative " + value);
            }
            values.add(value);
        }
        reader.endArray();
        return values.stream().mapToLong(Long::longValue).toArray();
    }

    /** The tensors must tile [0, dataSize) exactly: in range, no overlap, no gap (as the reference format requires). */
    private static void validateLayout(Path path, Map<String, Entry> entries, long dataSize) {
        List<Entry> sorted = new ArrayList<>(entries.values());
        sorted.sort(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end));
        long position = 0;
        Entry previous = null;
        for (Entry entry : sorted) {
            if (entry.end() > dataSize) {
                throw new SafetensorsException(path, "tensor '" + entry.name() + "': data_offsets [" + entry.begin() + ", "
                        + entry.end() + "] run past the end of the data (" + dataSize + " bytes): the file is truncated");
            }
            if (entry.begin() < position) {
                throw new SafetensorsException(path, "tensor '" + entry.name() + "': data_offsets [" + entry.begin() + ", "
                        + entry.end() + "] overlap tensor '" + previous.name() + "'");
            }
            if (entry.begin() > position) {
                throw new SafetensorsException(path, "tensor '" + entry.name() + "': data_offsets begin at " + entry.begin()
                        + ", leaving a gap after byte " + position + " of the data");
            }
            position = entry.end();
            previous = entry;
        }
        if (position != dataSize) {
            throw new SafetensorsException(path, "the data section has " + dataSize + " bytes but the tensors cover "
                    + position + (position < dataSize ? ": trailing bytes" : ""));
        }
    }

    public Path path() {
        return path;
    }

    /** Tensor names in header order. */
    public List<String> names() {
        return List.copyOf(entries.keySet());
    }

    public Map<String, Entry> entries() {
        return entries;
    }

    public boolean contains(String name) {
        return entries.containsKey(name);
    }

    public Map<String, String> metadata() {
        return metadata;
    }

    /** The tensor named {@code name}, a zero-copy slice valid until {@link #close()}. */
    public Tensor tensor(String name) {
        Entry entry = entries.get(name);
        if (entry == null) {
            throw new SafetensorsException(path, "no tensor named '" + name + "'");
        }
        return new Tensor(name, entry.dtype(), entry.shape(), mapping.asSlice(dataStart + entry.begin(), entry.byteSize()));
    }

    /** Size of the whole file in bytes. */
    public long fileSize() {
        return mapping.byteSize();
    }

    @Override
    public void close() {
        arena.close();
    }

    @Override
    public String toString() {
        return "SafetensorsFile[" + path + ", " + entries.size() + " tensors]";
    }
}
