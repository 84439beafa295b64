package org.bitdelta.examples.bench;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDelta;
import org.bitdelta.DeltaModel;
import org.bitdelta.inference.Tokenizer;
import org.bitdelta.serving.Completion;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.EngineOptions;
import org.bitdelta.serving.Request;
import org.bitdelta.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.stream.IntStream;
import java.util.stream.Stream;

/**
 * Multi-tenant decoding on the CPU through the serving engine: N tenants of one base in one batch (each a 1-bit
 * delta) against N separately loaded full fine-tunes (an engine each) decoding one after another, greedy, same
 * prompt, in one run. The floor is the bytes one
 * decode step must read (the base once, plus each tenant's signs and whole tensors) over the memory bandwidth
 * measured in the same run.
 */
public final class DecodeBenchmark {
    public static void main(String[] args) throws IOException {
        Path base = Path.of(args.length > 0 ? args[0] : "../shared/data/models/tinyllama-shakespeare-base");
        Path finetuned = Path.of(args.length > 1 ? args[1] : "../shared/data/models/tinyllama-shakespeare-finetuned");
        int tenants = args.length > 2 ? Integer.parseInt(args[2]) : 8;
        int newTokens = args.length > 3 ? Integer.parseInt(args[3]) : 64;
        int repetitions = args.length > 4 ? Integer.parseInt(args[4]) : 3;
        Path folder = Files.createTempDirectory("bitdelta-decode-benchmark-");
        try {
            Path deltaFile = folder.resolve("finetuned.bitdelta");
            try (DeltaModel delta = BitDelta.compress(base, finetuned)) {
                delta.save(deltaFile);
            }
            run(base, finetuned, deltaFile, tenants, newTokens, repetitions);
        } finally {
            deleteRecursively(folder);
        }
    }

    private static void deleteRecursively(Path folder) throws IOException {
        try (Stream<Path> walk = Files.walk(folder)) {
            for (Path each : (Iterable<Path>) walk.sorted(Comparator.reverseOrder())::iterator) {
                Files.delete(each);
            }
        }
    }

    private static void run(Path base, Path finetuned, Path deltaFile, int tenants, int newTokens, int repetitions) {
        List<DeltaModel> deltas = new ArrayList<>();
        EngineOptions options = EngineOptions.defaults().maxRunning(Math.max(64, tenants)).maxRowsPerStep(Math.max(512, tenants));
        try (Engine served = Engine.open(base, options); Tokenizer tokenizer = Tokenizer.load(base)) {
            int[] prompt = Arrays.copyOf(tokenizer.encode("ROMEO:\nWhat light through yonder window breaks? It is the east,"), 16);
            List<Request> requests = new ArrayList<>();
            for (int tenant = 0; tenant < tenants; tenant++) {
                DeltaModel delta = DeltaModel.load(deltaFile);
                deltas.add(delta);
                served.addTenant("tenant-" + tenant, delta);
                // ignoreEos: every tenant generates exactly newTokens, so the token count below is exact.
                requests.add(Request.tokens("tenant-" + tenant, prompt).maxTokens(newTokens).ignoreEos(true));
            }
            generate(served, requests); // warm-up: JIT, page cache
            double[] batched = new double[repetitions];
            int[] firstTokens = null;
            for (int repetition = 0; repetition < repetitions; repetition++) {
                long start = System.nanoTime();
                List<CompletionResult> results = generate(served, requests);
                batched[repetition] = (System.nanoTime() - start) / 1e9;
                firstTokens = results.getFirst().tokens();
            }

            List<Engine> separate = new ArrayList<>();
            try {
                for (int tenant = 0; tenant < tenants; tenant++) {
                    separate.add(Engine.open(finetuned));
                }
                Request alone = Request.tokens(Engine.BASE, prompt).maxTokens(newTokens).ignoreEos(true);
                double[] sequential = new double[repetitions];
                for (int repetition = -1; repetition < repetitions; repetition++) { // -1: warm-up
                    long start = System.nanoTime();
                    for (Engine engine : separate) {
                        engine.submit(alone).result();
                    }
                    if (repetition >= 0) {
                        sequential[repetition] = (System.nanoTime() - start) / 1e9;
                    }
                }
                long baseBytes = weightBytes(base);
                long perTenantBytes = deltaStepBytes(deltas.getFirst());
                long finetunedBytes = baseBytes; // same architecture and dtype as the base
                long generated = (long) tenants * newTokens;
                double batchedSeconds = median(batched);
                double sequentialSeconds = median(sequential);
                long batchedStepBytes = baseBytes + tenants * perTenantBytes;
                long separateStepBytes = tenants * finetunedBytes;
                double batchedBandwidth = measureBandwidth(batchedStepBytes);
                double separateBandwidth = measureBandwidth(separateStepBytes);
                double batchedFloor = newTokens * batchedStepBytes / batchedBandwidth;
                double separateFloor = newTokens * separateStepBytes / separateBandwidth;
                System.out.printf(Locale.ROOT, "model %s, %d tenants, prompt %d tokens, %d new tokens each (greedy), %d repetitions, median%n",
                        base.getFileName(), tenants, prompt.length, newTokens, repetitions);
                System.out.printf(Locale.ROOT, "machine: %d cores, Java %s; read bandwidth measured now over %.1f MB: %.1f GB/s, over %.1f MB: %.1f GB/s%n",
                        Runtime.getRuntime().availableProcessors(), Runtime.version(), batchedStepBytes / 1e6, batchedBandwidth / 1e9,
                        separateStepBytes / 1e6, separateBandwidth / 1e9);
                System.out.printf(Locale.ROOT, "bytes per decode step: base %.2f MB + per tenant %.2f MB (signs + whole tensors it replaces); a full fine-tune %.2f MB%n",
                        baseBytes / 1e6, perTenantBytes / 1e6, finetunedBytes / 1e6);
                System.out.println();
                System.out.println("| what | seconds | tokens/s | floor tokens/s | x floor |");
                System.out.println("| --- | --- | --- | --- | --- |");
                System.out.printf(Locale.ROOT, "| %d tenants in one batch on one base (1-bit deltas) | %.3f | %.1f | %.1f | %.2f |%n",
                        tenants, batchedSeconds, generated / batchedSeconds, generated / batchedFloor, batchedSeconds / batchedFloor);
                System.out.printf(Locale.ROOT, "| %d separately loaded full fine-tunes, one after another | %.3f | %.1f | %.1f | %.2f |%n",
                        tenants, sequentialSeconds, generated / sequentialSeconds, generated / separateFloor, sequentialSeconds / separateFloor);
                System.out.printf(Locale.ROOT, "%nbatched / separate speed-up: %.2fx; first tenant's tokens: %s%n",
                        sequentialSeconds / batchedSeconds, Arrays.toString(Arrays.copyOf(firstTokens, Math.min(12, firstTokens.length))));
            } finally {
                separate.forEach(Engine::close);
            }
        } finally {
            deltas.forEach(DeltaModel::close);
        }
    }

    /** Submits every request at once (one batch on the engine) and waits for all. */
    private static List<CompletionResult> generate(Engine engine, List<Request> requests) {
        List<Completion> completions = requests.stream().map(engine::submit).toList();
        return completions.stream().map(Completion::result).toList();
    }

    private static long weightBytes(Path folder) {
        try {
            return Files.size(folder.resolve("model.safetensors"));
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    /** What one decode step reads for a tenant: its signs and scales, and its own lm_head and norms (embeddings: one row). */
    private static long deltaStepBytes(DeltaModel delta) {
        long bytes = 0;
        for (BinaryDelta matrix : delta.matrices()) {
            bytes += matrix.signs().byteSize() + 4L * matrix.scales().length;
        }
        for (Tensor tensor : delta.tensors().values()) {
            if (!tensor.name().contains("embed_tokens")) {
                bytes += tensor.byteSize();
            }
        }
        return bytes;
    }

    /**
     * Read bandwidth, on all cores, over a buffer of {@code size} bytes read again and again (best of 20 passes):
     * the working set of a decode step decides whether it streams from DRAM or from the last-level cache, so the
     * floor of each case uses a buffer of that case's size.
     */
    static double measureBandwidth(long size) {
        try (Arena arena = Arena.ofShared()) {
            MemorySegment buffer = arena.allocate(size, 64);
            buffer.fill((byte) 1);
            int chunks = 64;
            long words = size / 8;
            double best = 0;
            for (int trial = 0; trial < 20; trial++) {
                long start = System.nanoTime();
                long sum = IntStream.range(0, chunks).parallel()
                        .mapToLong(chunk -> sumWords(buffer, words * chunk / chunks, words * (chunk + 1) / chunks)).sum();
                double seconds = (System.nanoTime() - start) / 1e9;
                if (sum == 0) {
                    throw new IllegalStateException("bandwidth probe read nothing");
                }
                best = Math.max(best, size / seconds);
            }
            return best;
        }
    }

    private static long sumWords(MemorySegment buffer, long from, long to) {
        long total = 0;
        for (long i = from; i < to; i++) {
            total += buffer.getAtIndex(ValueLayout.JAVA_LONG, i);
        }
        return total;
    }

    private static double median(double[] values) {
        double[] sorted = values.clone();
        Arrays.sort(sorted);
        return sorted[sorted.length / 2];
    }
}
