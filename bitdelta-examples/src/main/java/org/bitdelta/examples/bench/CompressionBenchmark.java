package org.bitdelta.examples.bench;

import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryPoolMXBean;
import java.lang.management.MemoryType;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.stream.IntStream;

/**
 * Compression throughput on a synthetic pair of the TinyLlama-1.1B shape (hidden 2048, intermediate 5632, 22
 * layers, 32 heads / 4 KV heads, vocab 32000, BF16), against the time to merely read both files, with a warm page
 * cache, in one run. Run it with a small heap (-Xmx512m) to show that the heap does not grow with the model.
 */
public final class CompressionBenchmark {
    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    record Shape(String name, long rows, long cols) {
    }

    public static void main(String[] args) throws IOException {
        Path folder = args.length > 0 ? Path.of(args[0]) : Path.of(System.getProperty("java.io.tmpdir"), "bitdelta-compression-benchmark");
        int repetitions = args.length > 1 ? Integer.parseInt(args[1]) : 3;
        int layers = args.length > 2 ? Integer.parseInt(args[2]) : 22;
        Files.createDirectories(folder);
        Path base = folder.resolve("base");
        Path tuned = folder.resolve("finetuned");
        List<Shape> shapes = shapes(layers);
        if (!Files.exists(base.resolve("model.safetensors")) || !Files.exists(tuned.resolve("model.safetensors"))) {
            long start = System.nanoTime();
            generate(base, tuned, shapes, layers);
            System.out.printf(Locale.ROOT, "generated the pair in %.1f s%n", (System.nanoTime() - start) / 1e9);
        }
        long baseBytes = Files.size(base.resolve("model.safetensors"));
        long tunedBytes = Files.size(tuned.resolve("model.safetensors"));
        long parameters = shapes.stream().mapToLong(shape -> shape.rows() * shape.cols()).sum();
        System.out.printf(Locale.ROOT, "model: %d layers, %.3f G parameters, BF16; base %.3f GB, fine-tune %.3f GB%n",
                layers, parameters / 1e9, baseBytes / 1e9, tunedBytes / 1e9);
        System.out.printf(Locale.ROOT, "machine: %d cores, %s, Java %s, max heap %d MB%n", Runtime.getRuntime().availableProcessors(),
                cpuModel(), Runtime.version(), Runtime.getRuntime().maxMemory() >> 20);

        readSequentially(base, tuned); // warm the page cache
        double[] channelRead = new double[repetitions];
        double[] mappedRead = new double[repetitions];
        double[] compress = new double[repetitions];
        double[] compressAndSave = new double[repetitions];
        Path out = folder.resolve("finetuned.bitdelta");
        long deltaBytes = 0;
        for (int repetition = 0; repetition < repetitions; repetition++) {
            channelRead[repetition] = readSequentially(base, tuned);
            mappedRead[repetition] = readMapped(base, tuned);
            long start = System.nanoTime();
            try (DeltaModel delta = BitDelta.compress(base, tuned)) {
                compress[repetition] = (System.nanoTime() - start) / 1e9;
                delta.save(out, true);
                compressAndSave[repetition] = (System.nanoTime() - start) / 1e9;
            }
            deltaBytes = Files.size(out);
        }
        double[] writeFloor = new double[repetitions];
        for (int repetition = 0; repetition < repetitions; repetition++) {
            writeFloor[repetition] = writeAndSync(folder.resolve("write-floor.bin"), deltaBytes);
        }
        double read = Math.min(median(channelRead), median(mappedRead));
        double total = median(compressAndSave);
        System.out.println();
        System.out.println("| what | median s | GB/s of fine-tune bytes | vs read |");
        System.out.println("| --- | --- | --- | --- |");
        row("read both files, FileChannel into a 64 MB buffer (1 thread)", median(channelRead), tunedBytes, read);
        row("read both files, mmap and sum every 8 bytes (all cores)", median(mappedRead), tunedBytes, read);
        row("BitDelta.compress (fingerprint + signs + scales)", median(compress), tunedBytes, read);
        row("BitDelta.compress + save (.bitdelta written, fsynced)", total, tunedBytes, read);
        row("floor of the save alone: write + fsync as many bytes as the .bitdelta", median(writeFloor), tunedBytes, read);
        System.out.printf(Locale.ROOT, "compress + save against its floor (read both + write and fsync the output): %.2fx%n",
                total / (read + median(writeFloor)));
        System.out.printf(Locale.ROOT, "%n.bitdelta: %.1f MB (fine-tune %.3f GB, %.1fx smaller)%n", deltaBytes / 1e6, tunedBytes / 1e9,
                (double) tunedBytes / deltaBytes);
        System.out.printf(Locale.ROOT, "peak heap used: %.0f MB (max heap %d MB)%n", peakHeap() / 1e6, Runtime.getRuntime().maxMemory() >> 20);
        System.out.printf(Locale.ROOT, "goal: >= 1 GB/s and <= 1.5x the read time: %.2f GB/s, %.2fx%n", tunedBytes / total / 1e9, total / read);
        Files.deleteIfExists(out);
    }

    private static void row(String what, double seconds, long tunedBytes, double read) {
        System.out.printf(Locale.ROOT, "| %s | %.3f | %.2f | %.2fx |%n", what, seconds, tunedBytes / seconds / 1e9, seconds / read);
    }

    static List<Shape> shapes(int layers) {
        int hidden = 2048;
        int intermediate = 5632;
        int keyValue = 256; // 4 KV heads of 64
        int vocab = 32000;
        List<Shape> shapes = new ArrayList<>();
        shapes.add(new Shape("model.embed_tokens.weight", vocab, hidden));
        for (int layer = 0; layer < layers; layer++) {
            String prefix = "model.layers." + layer + ".";
            shapes.add(new Shape(prefix + "self_attn.q_proj.weight", hidden, hidden));
            shapes.add(new Shape(prefix + "self_attn.k_proj.weight", keyValue, hidden));
            shapes.add(new Shape(prefix + "self_attn.v_proj.weight", keyValue, hidden));
            shapes.add(new Shape(prefix + "self_attn.o_proj.weight", hidden, hidden));
            shapes.add(new Shape(prefix + "mlp.gate_proj.weight", intermediate, hidden));
            shapes.add(new Shape(prefix + "mlp.up_proj.weight", intermediate, hidden));
            shapes.add(new Shape(prefix + "mlp.down_proj.weight", hidden, intermediate));
            shapes.add(new Shape(prefix + "input_layernorm.weight", 1, hidden));
            shapes.add(new Shape(prefix + "post_attention_layernorm.weight", 1, hidden));
        }
        shapes.add(new Shape("model.norm.weight", 1, hidden));
        shapes.add(new Shape("lm_head.weight", vocab, hidden));
        return shapes;
    }

    /** Writes both models; every tensor of the fine-tune differs from the base, as in a full fine-tune. */
    private static void generate(Path base, Path tuned, List<Shape> shapes, int layers) throws IOException {
        Files.createDirectories(base);
        Files.createDirectories(tuned);
        String config = """
                {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632,
                 "num_hidden_layers": %d, "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000,
                 "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "max_position_embeddings": 2048, "hidden_act": "silu",
                 "tie_word_embeddings": false, "torch_dtype": "bfloat16"}
                """.formatted(layers);
        Files.writeString(base.resolve("config.json"), config);
        Files.writeString(tuned.resolve("config.json"), config);
        for (boolean finetuned : new boolean[]{false, true}) {
            writeSafetensors((finetuned ? tuned : base).resolve("model.safetensors"), shapes, finetuned);
        }
    }

    /**
     * Writes one synthetic model as a safetensors file (an 8-byte little-endian header length, the JSON header,
     * then every tensor's bytes), filling the tensors in place through a mapping of the file, so that the heap
     * stays small. The benchmark writes its input itself: that is no part of what it measures.
     */
    private static void writeSafetensors(Path file, List<Shape> shapes, boolean finetuned) throws IOException {
        StringBuilder header = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\"}");
        long[] offsets = new long[shapes.size() + 1];
        for (int index = 0; index < shapes.size(); index++) {
            Shape shape = shapes.get(index);
            offsets[index + 1] = offsets[index] + shape.rows() * shape.cols() * 2;
            String dimensions = shape.rows() == 1 ? "[" + shape.cols() + "]" : "[" + shape.rows() + "," + shape.cols() + "]";
            header.append(",\"").append(shape.name()).append("\":{\"dtype\":\"BF16\",\"shape\":").append(dimensions)
                    .append(",\"data_offsets\":[").append(offsets[index]).append(',').append(offsets[index + 1]).append("]}");
        }
        header.append('}');
        // Spaces pad the header so that the data starts 8-byte aligned, as the format allows.
        while ((8 + header.length()) % 8 != 0) {
            header.append(' ');
        }
        byte[] headerBytes = header.toString().getBytes(StandardCharsets.UTF_8);
        long dataStart = 8 + headerBytes.length;
        // Written under another name first: an interrupted run must not leave a file that a later run takes as done.
        Path partial = file.resolveSibling(file.getFileName() + ".partial");
        try (FileChannel channel = FileChannel.open(partial, StandardOpenOption.CREATE, StandardOpenOption.READ,
                StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING);
             Arena arena = Arena.ofShared()) {
            MemorySegment mapped = channel.map(FileChannel.MapMode.READ_WRITE, 0, dataStart + offsets[shapes.size()], arena);
            mapped.set(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0, headerBytes.length);
            MemorySegment.copy(headerBytes, 0, mapped, ValueLayout.JAVA_BYTE, 8, headerBytes.length);
            for (int index = 0; index < shapes.size(); index++) {
                long seed = index * 0x9E3779B97F4A7C15L + 1;
                fill(mapped.asSlice(dataStart + offsets[index], offsets[index + 1] - offsets[index]), seed, finetuned);
            }
            mapped.force();
        }
        Files.move(partial, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    /** Base ~ U(−0.05, 0.05); fine-tune = base + U(−0.004, 0.004); same seed, so the pair is consistent. */
    private static void fill(MemorySegment target, long seed, boolean finetuned) {
        long count = target.byteSize() / 2;
        int chunks = (int) Math.min(1024, Math.max(1, count / 65536));
        IntStream.range(0, chunks).parallel().forEach(chunk -> {
            long begin = count * chunk / chunks;
            long end = count * (chunk + 1) / chunks;
            long state = seed ^ (chunk * 0xD1B54A32D192ED03L) | 1;
            for (long i = begin; i < end; i++) {
                state ^= state << 13;
                state ^= state >>> 7;
                state ^= state << 17;
                float value = ((state >>> 40) / (float) (1 << 24) - 0.5f) * 0.1f;
                if (finetuned) {
                    value += (((state >>> 8) & 0xFFFF) / 65536f - 0.5f) * 0.008f;
                }
                target.set(SHORT_LE, i * 2, toBfloat16(value));
            }
        });
    }

    /** Round to nearest even, as PyTorch's {@code tensor.to(torch.bfloat16)}; the values here are never NaN. */
    private static short toBfloat16(float value) {
        int bits = Float.floatToRawIntBits(value);
        return (short) ((bits + 0x7FFF + ((bits >>> 16) & 1)) >>> 16);
    }

    /** Writes {@code bytes} bytes of non-zero data and fsyncs them: what saving a file of that size must cost. */
    private static double writeAndSync(Path file, long bytes) throws IOException {
        ByteBuffer chunk = ByteBuffer.allocateDirect(16 << 20);
        while (chunk.hasRemaining()) {
            chunk.put((byte) 0x5A);
        }
        long start = System.nanoTime();
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            for (long written = 0; written < bytes; ) {
                chunk.clear().limit((int) Math.min(chunk.capacity(), bytes - written));
                written += channel.write(chunk);
            }
            channel.force(true);
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        Files.delete(file);
        return seconds;
    }

    private static double readSequentially(Path... files) throws IOException {
        long start = System.nanoTime();
        ByteBuffer buffer = ByteBuffer.allocateDirect(64 << 20);
        long total = 0;
        for (Path file : files) {
            try (FileChannel channel = FileChannel.open(file.resolve("model.safetensors"), StandardOpenOption.READ)) {
                int read;
                while ((read = channel.read(buffer.clear())) > 0) {
                    total += read;
                }
            }
        }
        if (total == 0) {
            throw new IllegalStateException("read nothing");
        }
        return (System.nanoTime() - start) / 1e9;
    }

    private static double readMapped(Path... files) throws IOException {
        long start = System.nanoTime();
        long checksum = 0;
        for (Path file : files) {
            try (FileChannel channel = FileChannel.open(file.resolve("model.safetensors"), StandardOpenOption.READ);
                 Arena arena = Arena.ofShared()) {
                MemorySegment mapped = channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size(), arena);
                long words = mapped.byteSize() / 8;
                int chunks = 256;
                checksum += IntStream.range(0, chunks).parallel().mapToLong(chunk -> {
                    long sum = 0;
                    for (long i = words * chunk / chunks; i < words * (chunk + 1) / chunks; i++) {
                        sum += mapped.get(ValueLayout.JAVA_LONG_UNALIGNED, i * 8);
                    }
                    return sum;
                }).sum();
            }
        }
        if (checksum == 42) {
            System.out.print(""); // keeps the sum alive
        }
        return (System.nanoTime() - start) / 1e9;
    }

    private static double median(double[] values) {
        double[] sorted = values.clone();
        Arrays.sort(sorted);
        return sorted[sorted.length / 2];
    }

    private static long peakHeap() {
        long total = 0;
        for (MemoryPoolMXBean pool : ManagementFactory.getMemoryPoolMXBeans()) {
            if (pool.getType() == MemoryType.HEAP && pool.getPeakUsage() != null) {
                total += pool.getPeakUsage().getUsed();
            }
        }
        return total;
    }

    private static String cpuModel() {
        try {
            return Files.readAllLines(Path.of("/proc/cpuinfo")).stream().filter(line -> line.startsWith("model name"))
                    .findFirst().map(line -> line.substring(line.indexOf(':') + 1).trim()).orElse("unknown CPU");
        } catch (IOException e) {
            return "unknown CPU";
        }
    }
}
