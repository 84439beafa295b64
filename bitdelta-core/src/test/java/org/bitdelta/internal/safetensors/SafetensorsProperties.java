package org.bitdelta.internal.safetensors;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.util.passthrough.PassthroughNDManager;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;
import org.bitdelta.BitDeltaException;
import org.bitdelta.internal.io.AtomicFiles;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Round trips of every dtype, DJL as an independent reader and writer, and random corruption of valid files. */
class SafetensorsProperties {
    private static Path folder;
    private static int counter;

    @BeforeContainer
    static void createFolder() throws IOException {
        folder = Files.createTempDirectory("safetensors-properties-");
    }

    @AfterContainer
    static void removeFolder() throws IOException {
        AtomicFiles.deleteRecursively(folder);
    }

    private static synchronized Path freshFile() {
        return folder.resolve("file-" + (counter++) + ".safetensors");
    }

    record Spec(DType dtype, long[] shape, long seed) {
        Tensor materialize(String name) {
            long count = Tensor.elementCount(shape);
            byte[] bytes = new byte[Math.toIntExact(count * dtype.byteSize())];
            new Random(seed).nextBytes(bytes);
            return new Tensor(name, dtype, shape, MemorySegment.ofArray(bytes));
        }
    }

    @Provide
    Arbitrary<List<Spec>> tensorSets() {
        Arbitrary<DType> dtypes = Arbitraries.of(DType.values());
        Arbitrary<long[]> shapes = Arbitraries.longs().between(0, 9).array(long[].class).ofMinSize(0).ofMaxSize(3);
        Arbitrary<Spec> spec = Combinators.combine(dtypes, shapes, Arbitraries.longs()).as(Spec::new);
        return spec.list().ofMinSize(0).ofMaxSize(6);
    }

    @Provide
    Arbitrary<Map<String, String>> metadata() {
        return Arbitraries.maps(Arbitraries.strings().ofMinLength(1).ofMaxLength(12).filter(key -> !key.isBlank()),
                Arbitraries.strings().ofMaxLength(40)).ofMaxSize(4);
    }

    @Property(tries = 200)
    void readingWhatWasWrittenGivesBackEveryByte(@ForAll("tensorSets") List<Spec> specs, @ForAll("metadata") Map<String, String> metadata) throws IOException {
        Path file = freshFile();
        List<Tensor> tensors = new ArrayList<>();
        for (int i = 0; i < specs.size(); i++) {
            tensors.add(specs.get(i).materialize("tensor." + i + ".\u00e9\"quoted\""));
        }
        SafetensorsWriter.write(file, metadata, tensors.stream().map(SafetensorsWriter.Source::of).toList(), false);
        try (SafetensorsFile read = SafetensorsFile.open(file)) {
            assertEquals(metadata, read.metadata());
            assertEquals(tensors.stream().map(Tensor::name).toList(), read.names());
            for (Tensor expected : tensors) {
                Tensor actual = read.tensor(expected.name());
                assertEquals(expected.dtype(), actual.dtype());
                assertArrayEquals(expected.shape(), actual.shape());
                assertEquals(-1, expected.data().mismatch(actual.data()), "bytes of " + expected.name());
            }
        } finally {
            delete(file);
        }
    }

    /** DJL reads our files: an independent implementation agrees on names, dtypes, shapes and bytes. */
    @Property(tries = 60)
    void djlReadsWhatWeWrite(@ForAll("tensorSets") List<Spec> specs) throws IOException {
        Path file = freshFile();
        List<Tensor> tensors = new ArrayList<>();
        for (int i = 0; i < specs.size(); i++) {
            Spec spec = specs.get(i);
            if (djlType(spec.dtype()) != null && spec.shape().length > 0 && Tensor.elementCount(spec.shape()) > 0) {
                tensors.add(spec.materialize("t" + i));
            }
        }
        SafetensorsWriter.write(file, Map.of(), tensors.stream().map(SafetensorsWriter.Source::of).toList(), false);
        try {
            NDList list = NDList.decode(PassthroughNDManager.INSTANCE, Files.readAllBytes(file));
            assertEquals(tensors.size(), list.size());
            for (Tensor expected : tensors) {
                NDArray actual = list.get(expected.name());
                assertEquals(djlType(expected.dtype()), actual.getDataType(), expected.name());
                assertArrayEquals(expected.shape(), actual.getShape().getShape(), expected.name());
                ByteBuffer bytes = actual.toByteBuffer();
                byte[] copy = new byte[bytes.remaining()];
                bytes.get(copy);
                assertArrayEquals(expected.data().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE), copy, expected.name());
            }
        } finally {
            delete(file);
        }
    }

    /** We read DJL's files. */
    @Property(tries = 60)
    void weReadWhatDjlWrites(@ForAll("tensorSets") List<Spec> specs) throws IOException {
        NDList list = new NDList();
        List<Tensor> tensors = new ArrayList<>();
        for (int i = 0; i < specs.size(); i++) {
            Spec spec = specs.get(i);
            if (djlType(spec.dtype()) != null && spec.shape().length > 0 && Tensor.elementCount(spec.shape()) > 0) {
                Tensor tensor = spec.materialize("t" + i);
                tensors.add(tensor);
                ByteBuffer buffer = ByteBuffer.allocate((int) tensor.byteSize()).order(ByteOrder.LITTLE_ENDIAN);
                buffer.put(tensor.data().asByteBuffer()).flip();
                NDArray array = PassthroughNDManager.INSTANCE.create(buffer, new Shape(tensor.shape()), djlType(tensor.dtype()));
                array.setName(tensor.name());
                list.add(array);
            }
        }
        Path file = freshFile();
        Files.write(file, list.encode(NDList.Encoding.SAFETENSORS));
        try (SafetensorsFile read = SafetensorsFile.open(file)) {
            for (Tensor expected : tensors) {
                Tensor actual = read.tensor(expected.name());
                assertEquals(expected.dtype(), actual.dtype());
                assertArrayEquals(expected.shape(), actual.shape());
                assertEquals(-1, expected.data().mismatch(actual.data()), expected.name());
            }
        } finally {
            delete(file);
        }
    }

    private static DataType djlType(DType dtype) {
        return switch (dtype) {
            case F32 -> DataType.FLOAT32;
            case F16 -> DataType.FLOAT16;
            case BF16 -> DataType.BFLOAT16;
            case F64 -> DataType.FLOAT64;
            case U8 -> DataType.UINT8;
            case I8 -> DataType.INT8;
            case I32 -> DataType.INT32;
            case I64 -> DataType.INT64;
            case BOOL -> DataType.BOOLEAN;
            default -> null;
        };
    }

    /** What a corruption does to a valid file's bytes. */
    record Corruption(String kind, long seed) {
        byte[] apply(byte[] valid) {
            Random random = new Random(seed);
            byte[] bytes = valid.clone();
            long headerLength = ByteBuffer.wrap(valid).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
            switch (kind) {
                case "truncate" -> {
                    return Arrays.copyOf(bytes, random.nextInt(bytes.length));
                }
                case "flip-header-byte" -> {
                    int index = 8 + random.nextInt((int) headerLength);
                    bytes[index] = (byte) random.nextInt(256);
                }
                case "header-length" -> {
                    long value = switch (random.nextInt(4)) {
                        case 0 -> random.nextLong();
                        case 1 -> bytes.length - 8 + 1 + random.nextInt(1000);
                        case 2 -> random.nextInt((int) headerLength + 1);
                        default -> headerLength + 1 + random.nextInt(16);
                    };
                    ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).putLong(0, value);
                }
                case "offsets" -> {
                    String header = new String(bytes, 8, (int) headerLength, java.nio.charset.StandardCharsets.UTF_8);
                    String changed = header.replaceFirst("\"data_offsets\":\\[(\\d+),(\\d+)\\]",
                            "\"data_offsets\":[" + random.nextInt(5000) + "," + random.nextInt(5000) + "]");
                    return withHeader(bytes, headerLength, changed);
                }
                case "garbage-header" -> {
                    byte[] garbage = new byte[(int) headerLength];
                    random.nextBytes(garbage);
                    System.arraycopy(garbage, 0, bytes, 8, garbage.length);
                }
                default -> throw new IllegalArgumentException(kind);
            }
            return bytes;
        }

        private static byte[] withHeader(byte[] bytes, long headerLength, String header) {
            byte[] utf8 = header.getBytes(java.nio.charset.StandardCharsets.UTF_8);
            byte[] result = new byte[8 + utf8.length + bytes.length - 8 - (int) headerLength];
            ByteBuffer.wrap(result).order(ByteOrder.LITTLE_ENDIAN).putLong(0, utf8.length);
            System.arraycopy(utf8, 0, result, 8, utf8.length);
            System.arraycopy(bytes, 8 + (int) headerLength, result, 8 + utf8.length, bytes.length - 8 - (int) headerLength);
            return result;
        }
    }

    @Provide
    Arbitrary<Corruption> corruptions() {
        return Combinators.combine(Arbitraries.of("truncate", "flip-header-byte", "header-length", "offsets", "garbage-header"),
                Arbitraries.longs()).as(Corruption::new);
    }

    /**
     * A corrupted file either still reads as a consistent safetensors file (a flipped byte inside a name, say), or
     * raises SafetensorsException; never another exception, never a read outside the mapping, never a JVM crash.
     */
    @Property(tries = 500)
    void corruptFilesOnlyRaiseTheLibrarysException(@ForAll("corruptions") Corruption corruption) throws IOException {
        Path valid = freshFile();
        Random random = new Random(corruption.seed());
        List<SafetensorsWriter.Source> sources = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            sources.add(SafetensorsWriter.Source.of(new Spec(DType.values()[random.nextInt(DType.values().length)],
                    new long[]{1 + random.nextInt(5), 1 + random.nextInt(7)}, random.nextLong()).materialize("w" + i)));
        }
        SafetensorsWriter.write(valid, Map.of("format", "pt"), sources, false);
        byte[] corrupted = corruption.apply(Files.readAllBytes(valid));
        Path file = freshFile();
        Files.write(file, corrupted);
        try {
            try (SafetensorsFile read = SafetensorsFile.open(file)) {
                long total = 0;
                for (String name : read.names()) {
                    Tensor tensor = read.tensor(name);
                    // Touch every byte: a slice outside the mapping would throw IndexOutOfBounds here.
                    total += tensor.data().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE).length;
                }
                assertTrue(total <= corrupted.length, "tensors claim more bytes than the file has");
            } catch (SafetensorsException expected) {
                assertTrue(expected.getMessage().startsWith(file.toString()), "the message names the file: " + expected.getMessage());
            }
        } finally {
            delete(file);
            delete(valid);
        }
    }

    @Property(tries = 1)
    void specificCorruptionsNameTheProblem() throws IOException {
        Path file = freshFile();
        SafetensorsWriter.write(file, Map.of(), List.of(SafetensorsWriter.Source.of(
                Tensor.ofFloats("weight", new float[]{1, 2, 3, 4}, 2, 2))), false);
        byte[] valid = Files.readAllBytes(file);
        assertProblem(Arrays.copyOf(valid, 5), "truncated");
        assertProblem(Arrays.copyOf(valid, valid.length - 1), "truncated");
        byte[] longHeader = valid.clone();
        ByteBuffer.wrap(longHeader).order(ByteOrder.LITTLE_ENDIAN).putLong(0, valid.length);
        assertProblem(longHeader, "runs past the end");
        assertProblem(header(valid, "[1, 2, 3]"), "not a JSON object");
        assertProblem(header(valid, "{\"weight\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]"), "not valid JSON");
        assertProblem(header(valid, "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
                + "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}"), "overlap");
        assertProblem(header(valid, "{\"a\": {\"dtype\": \"F32\", \"shape\": [8], \"data_offsets\": [0, 32]}}"), "past the end of the data");
        assertProblem(header(valid, "{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 12]}}"), "needs 16");
        assertProblem(header(valid, "{\"a\": {\"dtype\": \"Q4\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}"), "unknown dtype 'Q4'");
        assertProblem(header(valid, "{\"a\": {\"dtype\": \"F32\", \"shape\": [-2, 2], \"data_offsets\": [0, 16]}}"), "negative");
        delete(file);
    }

    private static byte[] header(byte[] valid, String json) {
        long headerLength = ByteBuffer.wrap(valid).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
        return Corruption.withHeader(valid, headerLength, json);
    }

    private static void assertProblem(byte[] bytes, String expectedFragment) throws IOException {
        Path file = freshFile();
        Files.write(file, bytes);
        try {
            SafetensorsException error = assertThrows(SafetensorsException.class, () -> SafetensorsFile.open(file).close());
            assertTrue(error.getMessage().contains(expectedFragment) && error.getMessage().contains(file.toString()),
                    "expected '" + expectedFragment + "' and the file name in: " + error.getMessage());
        } finally {
            delete(file);
        }
    }

    @Property(tries = 1)
    void writerRefusesAnExistingFileAndLeavesItUntouched() throws IOException {
        Path file = freshFile();
        Files.writeString(file, "precious");
        BitDeltaException error = assertThrows(BitDeltaException.class, () -> SafetensorsWriter.write(file, Map.of(),
                List.of(SafetensorsWriter.Source.of(Tensor.ofFloats("x", new float[]{1}, 1))), false));
        assertTrue(error.getMessage().contains("already exists"), error.getMessage());
        assertEquals("precious", Files.readString(file));
        try (var listing = Files.list(folder)) {
            assertTrue(listing.noneMatch(path -> path.getFileName().toString().endsWith(".partial")), "no temporary left behind");
        }
        delete(file);
    }

    private static void delete(Path file) throws IOException {
        Files.deleteIfExists(file);
    }
}
