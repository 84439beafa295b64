package org.bitdelta.benchmarks;

import jdk.incubator.vector.LongVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;
import jdk.incubator.vector.FloatVector;
import org.bitdelta.BinaryDelta;
import org.bitdelta.internal.cpu.VectorCpuBackend;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.spi.TensorBackends;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ForkJoinTask;
import java.util.concurrent.TimeUnit;
import java.util.function.BinaryOperator;

/**
 * Decode-time products of the CPU backend against their floor, all in one run:
 * <ul>
 *   <li>{@code binaryProduct}: one BF16 base [M, K] plus N tenants' packed 1-bit deltas, one token per tenant
 *       (the BitDelta way to serve N fine-tunes);</li>
 *   <li>{@code binaryProductMaskedAdd}: the same product on a backend whose sign product stays on the masked-add
 *       kernels (the path before the table-lookup kernel), so one run gives both;</li>
 *   <li>{@code binaryProductBatchInvariant}: the same product on the batch-invariant kernels the decoder runs on
 *       (one summation order for every row count);</li>
 *   <li>{@code baseProduct}: the N tokens times the BF16 base alone (F32 multiply-adds, no deltas): the compute
 *       that no sign kernel removes;</li>
 *   <li>{@code fmaPeak}: 512-bit (or preferred-width) F32 FMAs from registers on every thread, the machine's FMA
 *       ceiling, from which the base product's compute floor = N·M·K / FMA rate;</li>
 *   <li>{@code denseBf16PerTenant}: the same N tokens, each against its tenant's own full BF16 weight (the naive
 *       way: N separately loaded fine-tunes);</li>
 *   <li>{@code memoryRead} / {@code memoryCopy}: the machine's bandwidth on buffers far larger than the caches,
 *       using as many threads as the backend, from which floor = bytes that must move / bandwidth.</li>
 * </ul>
 * Weights live in native memory, as they do when memory-mapped from safetensors, and every benchmark cycles
 * through enough copies of them (256 MiB or more) that each call reads its weights from DRAM, not the L3. Shapes are HF [out, in]:
 * "4096x4096" is q_proj of a 7B Llama, "11008x4096" its gate/up projection.
 */
// Every call is timed (SampleTime), so the report can give the minimum and the median next to the mean: on a
// shared machine the minimum is the figure least disturbed by other processes.
@BenchmarkMode(Mode.SampleTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx4g"})
public class CpuBackendBenchmark {
    static final long SEED = 20261122L;
    /** Far beyond the L3 (32 MiB here), so the bandwidth benchmarks measure DRAM. */
    static final long BANDWIDTH_BYTES = 1L << 30;
    /**
     * Weight sets are cycled through at least this much: 8x the last-level cache (as Linux reports it; 32 MiB
     * assumed elsewhere), at least 256 MiB, so every call reads its weights from DRAM (a 16-core Xeon host
     * measured here has a 300 MiB L3).
     */
    static final long WORKING_SET_BYTES = Math.max(256L << 20, 8 * lastLevelCacheBytes());

    /** The registered "cpu" backend (one thread per available processor), shared by every benchmark. */
    @State(Scope.Benchmark)
    public static class Backend {
        TensorBackend backend;

        @Setup(Level.Trial)
        public void create() {
            backend = TensorBackends.create("cpu");
        }

        @TearDown(Level.Trial)
        public void close() {
            backend.close();
        }
    }

    /** The same backend with the sign product on the masked-add kernels (the path before table lookup). */
    @State(Scope.Benchmark)
    public static class MaskedAddBackend {
        TensorBackend backend;

        @Setup(Level.Trial)
        public void create() {
            backend = new VectorCpuBackend(Runtime.getRuntime().availableProcessors(), false);
        }

        @TearDown(Level.Trial)
        public void close() {
            backend.close();
        }
    }

    /** The batch-invariant form of the "cpu" backend, which the decoder runs on: one summation order for every row count. */
    @State(Scope.Benchmark)
    public static class BatchInvariantBackend {
        VectorCpuBackend owner;
        TensorBackend backend;

        @Setup(Level.Trial)
        public void create() {
            owner = new VectorCpuBackend();
            backend = owner.batchInvariant();
        }

        @TearDown(Level.Trial)
        public void close() {
            owner.close();
        }
    }

    /** N tenants, one decode token each, as rows 0..N-1 of the batch. */
    @State(Scope.Benchmark)
    public static class Tokens {
        /** outputs x inputs (M x K). */
        @Param({"4096x4096", "11008x4096", "4096x11008"})
        public String shape;
        @Param({"1", "4", "16"})
        public int tenants;

        int outputs;
        int inputs;
        float[] x;
        float[] y;
        int[] tenantOfRow;
        Arena arena;

        @Setup(Level.Trial)
        public void createTokens() {
            String[] parts = shape.split("x");
            outputs = Integer.parseInt(parts[0]);
            inputs = Integer.parseInt(parts[1]);
            SplittableRandom random = new SplittableRandom(SEED);
            x = new float[tenants * inputs];
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) random.nextDouble(-1, 1);
            }
            y = new float[tenants * outputs];
            tenantOfRow = new int[tenants];
            for (int t = 0; t < tenants; t++) {
                tenantOfRow[t] = t;
            }
            arena = Arena.ofShared();
        }

        @TearDown(Level.Trial)
        public void release() {
            arena.close();
        }
    }

    /** The largest cache of cpu0 in /sys (Linux), or 32 MiB where that cannot be read. */
    static long lastLevelCacheBytes() {
        long largest = 0;
        for (int index = 0; index < 8; index++) {
            Path size = Path.of("/sys/devices/system/cpu/cpu0/cache/index" + index + "/size");
            try {
                String text = Files.readString(size).trim();
                long unit = text.endsWith("K") ? 1L << 10 : text.endsWith("M") ? 1L << 20 : 1;
                largest = Math.max(largest, unit * Long.parseLong(text.replaceAll("[KM]$", "")));
            } catch (IOException | NumberFormatException e) {
                break; // no such level (or not Linux): keep what was found
            }
        }
        return largest > 0 ? largest : 32L << 20;
    }

    /**
     * How many copies ("layers") of a weight set the benchmark cycles through, so that each call finds its weights
     * in DRAM as it would in a real decoder (one layer's weights are gone from the caches when its turn comes
     * again): at least {@link #WORKING_SET_BYTES} in all.
     */
    static int layersFor(long bytesPerLayer) {
        return (int) Math.max(1, (WORKING_SET_BYTES + bytesPerLayer - 1) / bytesPerLayer);
    }

    /** The shared base in BF16 and the tenants' deltas (signs + one scale), per layer. */
    @State(Scope.Benchmark)
    public static class BitDeltaWeights {
        Tensor[] bases;
        List<List<BinaryDelta>> deltas;
        int next;

        @Setup(Level.Trial)
        public void create(Tokens tokens) {
            long signBytes = (long) tokens.outputs * BinaryDelta.bytesPerRow(tokens.inputs);
            int layers = layersFor((long) tokens.outputs * tokens.inputs * 2 + tokens.tenants * signBytes);
            bases = new Tensor[layers];
            deltas = new ArrayList<>();
            for (int layer = 0; layer < layers; layer++) {
                bases[layer] = randomBf16(tokens.arena, "base" + layer, tokens.outputs, tokens.inputs, layer);
                List<BinaryDelta> layerDeltas = new ArrayList<>();
                for (int t = 0; t < tokens.tenants; t++) {
                    MemorySegment signs = tokens.arena.allocate(signBytes, 64);
                    fillRandom(signs, 1000L * layer + t + 1);
                    layerDeltas.add(new BinaryDelta("layer" + layer + ".tenant" + t, tokens.outputs, tokens.inputs, signs,
                            new float[]{0.01f + 0.001f * t}));
                }
                deltas.add(layerDeltas);
            }
        }

        int nextLayer() {
            int layer = next;
            next = (next + 1) % bases.length;
            return layer;
        }

        /** The N tokens, each through its tenant's delta, on the next layer's weights; into {@code tokens.y}. */
        float[] productOfNextLayer(TensorBackend backend, Tokens tokens) {
            int layer = nextLayer();
            backend.deltaMatmul(tokens.x, tokens.tenants, bases[layer], deltas.get(layer), tokens.tenantOfRow, tokens.y);
            return tokens.y;
        }
    }

    /** Each tenant's own full BF16 weight, per layer: what serving N fine-tunes without BitDelta reads per token. */
    @State(Scope.Benchmark)
    public static class DenseWeights {
        Tensor[][] weights;
        float[][] tokenOf;
        float[][] outputOf;
        int next;

        @Setup(Level.Trial)
        public void create(Tokens tokens) {
            int layers = layersFor((long) tokens.tenants * tokens.outputs * tokens.inputs * 2);
            weights = new Tensor[layers][tokens.tenants];
            for (int layer = 0; layer < layers; layer++) {
                for (int t = 0; t < tokens.tenants; t++) {
                    weights[layer][t] = randomBf16(tokens.arena, "layer" + layer + ".tenant" + t, tokens.outputs, tokens.inputs,
                            10_000L + 100L * layer + t);
                }
            }
            tokenOf = new float[tokens.tenants][];
            outputOf = new float[tokens.tenants][];
            for (int t = 0; t < tokens.tenants; t++) {
                tokenOf[t] = Arrays.copyOfRange(tokens.x, t * tokens.inputs, (t + 1) * tokens.inputs);
                outputOf[t] = new float[tokens.outputs];
            }
        }

        int nextLayer() {
            int layer = next;
            next = (next + 1) % weights.length;
            return layer;
        }
    }

    @Benchmark
    public float[] binaryProduct(Backend backend, Tokens tokens, BitDeltaWeights weights) {
        return weights.productOfNextLayer(backend.backend, tokens);
    }

    @Benchmark
    public float[] binaryProductMaskedAdd(MaskedAddBackend backend, Tokens tokens, BitDeltaWeights weights) {
        return weights.productOfNextLayer(backend.backend, tokens);
    }

    /** {@code binaryProduct} on the batch-invariant kernels (what the decoder's device runs). */
    @Benchmark
    public float[] binaryProductBatchInvariant(BatchInvariantBackend backend, Tokens tokens, BitDeltaWeights weights) {
        return weights.productOfNextLayer(backend.backend, tokens);
    }

    /** The N tokens times the shared base alone: the multiply-adds every path does, with no delta. */
    @Benchmark
    public float[] baseProduct(Backend backend, Tokens tokens, BitDeltaWeights weights) {
        int layer = weights.nextLayer();
        backend.backend.matmul(tokens.x, tokens.tenants, weights.bases[layer], tokens.y);
        return tokens.y;
    }

    @Benchmark
    public float[][] denseBf16PerTenant(Backend backend, Tokens tokens, DenseWeights weights) {
        Tensor[] layerWeights = weights.weights[weights.nextLayer()];
        for (int t = 0; t < tokens.tenants; t++) {
            backend.backend.matmul(weights.tokenOf[t], 1, layerWeights[t], weights.outputOf[t]);
        }
        return weights.outputOf;
    }

    // -------------------------------------------------------------------------------------------------------------
    // Bandwidth, with the backend's thread count

    @State(Scope.Benchmark)
    public static class Buffers {
        Arena arena;
        MemorySegment source;
        MemorySegment target;
        ForkJoinPool pool;
        int threads;

        @Setup(Level.Trial)
        public void create() {
            arena = Arena.ofShared();
            source = arena.allocate(BANDWIDTH_BYTES, 4096);
            target = arena.allocate(BANDWIDTH_BYTES, 4096);
            fillRandom(source, 7);
            fillRandom(target, 8); // touch every page now, not during the measurement
            threads = Runtime.getRuntime().availableProcessors();
            pool = new ForkJoinPool(threads);
        }

        @TearDown(Level.Trial)
        public void release() {
            pool.shutdown();
            arena.close();
        }
    }

    private static final VectorSpecies<Long> LONGS = LongVector.SPECIES_PREFERRED;

    /** Reads all of a 1 GiB buffer (integer sum, 4 accumulators), split over the threads: bytes/op = 1 GiB. */
    @Benchmark
    public long memoryRead(Buffers buffers) {
        long part = BANDWIDTH_BYTES / buffers.threads;
        List<ForkJoinTask<Long>> tasks = new ArrayList<>();
        for (int i = 0; i < buffers.threads; i++) {
            long start = i * part;
            tasks.add(ForkJoinTask.adapt(() -> sumLongs(buffers.source, start, part)));
        }
        return joinAll(buffers.pool, tasks, 0L, Long::sum);
    }

    /** Copies a 1 GiB buffer, split over the threads: 1 GiB read + 1 GiB written per op. */
    @Benchmark
    public MemorySegment memoryCopy(Buffers buffers) {
        long part = BANDWIDTH_BYTES / buffers.threads;
        List<ForkJoinTask<?>> tasks = new ArrayList<>();
        for (int i = 0; i < buffers.threads; i++) {
            long start = i * part;
            tasks.add(ForkJoinTask.adapt(() -> MemorySegment.copy(buffers.source, start, buffers.target, start, part)));
        }
        buffers.pool.invoke(ForkJoinTask.adapt(() -> ForkJoinTask.invokeAll(tasks)));
        return buffers.target;
    }

    /** FMAs per thread per {@link #fmaPeak} call (8 independent accumulators x FMA_ITERATIONS). */
    static final int FMA_ITERATIONS = 1 << 20;

    /**
     * The FMA ceiling: every thread (one per processor, as the backend) runs 8 x {@link #FMA_ITERATIONS} vector
     * FMAs on registers (8 independent chains, enough to cover the FMA latency). F32 multiply-adds per op =
     * threads x 8 x FMA_ITERATIONS x {@link #FMA_LANES} (16 on AVX-512; {@code cpu_table.py} takes threads and
     * lanes as arguments, default 2 and 16).
     */
    @Benchmark
    public float fmaPeak(Buffers buffers) {
        List<ForkJoinTask<Float>> tasks = new ArrayList<>();
        for (int i = 0; i < buffers.threads; i++) {
            float seed = i + 1;
            tasks.add(ForkJoinTask.adapt(() -> fmaChains(seed)));
        }
        return joinAll(buffers.pool, tasks, 0f, Float::sum);
    }

    /** Runs the threads' tasks on the pool and adds up their results, in task order: what a benchmark returns. */
    private static <T> T joinAll(ForkJoinPool pool, List<ForkJoinTask<T>> tasks, T zero, BinaryOperator<T> add) {
        return pool.invoke(ForkJoinTask.adapt(() -> {
            ForkJoinTask.invokeAll(tasks);
            T total = zero;
            for (ForkJoinTask<T> task : tasks) {
                total = add.apply(total, task.join());
            }
            return total;
        }));
    }

    static final int FMA_LANES = FloatVector.SPECIES_PREFERRED.length();

    static float fmaChains(float seed) {
        FloatVector a = FloatVector.broadcast(FloatVector.SPECIES_PREFERRED, 0.999f);
        FloatVector b = FloatVector.broadcast(FloatVector.SPECIES_PREFERRED, 1e-3f);
        FloatVector c0 = FloatVector.broadcast(FloatVector.SPECIES_PREFERRED, seed), c1 = c0.add(1), c2 = c0.add(2), c3 = c0.add(3);
        FloatVector c4 = c0.add(4), c5 = c0.add(5), c6 = c0.add(6), c7 = c0.add(7);
        for (int i = 0; i < FMA_ITERATIONS; i++) {
            c0 = c0.fma(a, b);
            c1 = c1.fma(a, b);
            c2 = c2.fma(a, b);
            c3 = c3.fma(a, b);
            c4 = c4.fma(a, b);
            c5 = c5.fma(a, b);
            c6 = c6.fma(a, b);
            c7 = c7.fma(a, b);
        }
        return c0.add(c1).add(c2).add(c3).add(c4).add(c5).add(c6).add(c7).reduceLanes(VectorOperators.ADD);
    }

    static long sumLongs(MemorySegment segment, long start, long bytes) {
        int step = LONGS.vectorByteSize();
        LongVector a0 = LongVector.zero(LONGS), a1 = a0, a2 = a0, a3 = a0;
        long end = start + bytes;
        for (long offset = start; offset < end; offset += 4L * step) {
            a0 = a0.add(LongVector.fromMemorySegment(LONGS, segment, offset, ByteOrder.LITTLE_ENDIAN));
            a1 = a1.add(LongVector.fromMemorySegment(LONGS, segment, offset + step, ByteOrder.LITTLE_ENDIAN));
            a2 = a2.add(LongVector.fromMemorySegment(LONGS, segment, offset + 2L * step, ByteOrder.LITTLE_ENDIAN));
            a3 = a3.add(LongVector.fromMemorySegment(LONGS, segment, offset + 3L * step, ByteOrder.LITTLE_ENDIAN));
        }
        return a0.add(a1).add(a2).add(a3).reduceLanes(VectorOperators.ADD);
    }

    // -------------------------------------------------------------------------------------------------------------
    // Data: never zeros; filled by copying a 1 MiB random pattern, which is fast for gigabytes

    static final int PATTERN_BYTES = 1 << 20;

    /** A [rows, cols] BF16 weight of values uniform in [-1, 1). */
    static Tensor randomBf16(Arena arena, String name, int rows, int cols, long stream) {
        SplittableRandom random = new SplittableRandom(SEED + stream);
        MemorySegment pattern = MemorySegment.ofArray(new byte[PATTERN_BYTES]);
        ValueLayout.OfShort bf16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        for (long i = 0; i < PATTERN_BYTES / 2; i++) {
            float value = (float) random.nextDouble(-1, 1);
            pattern.set(bf16, i * 2, (short) (Float.floatToRawIntBits(value) >>> 16));
        }
        MemorySegment data = arena.allocate((long) rows * cols * DType.BF16.byteSize(), 64);
        tile(pattern, data);
        return new Tensor(name, DType.BF16, new long[]{rows, cols}, data);
    }

    static void fillRandom(MemorySegment target, long stream) {
        SplittableRandom random = new SplittableRandom(SEED + stream);
        byte[] pattern = new byte[PATTERN_BYTES];
        random.nextBytes(pattern);
        tile(MemorySegment.ofArray(pattern), target);
    }

    private static void tile(MemorySegment pattern, MemorySegment target) {
        for (long offset = 0; offset < target.byteSize(); offset += PATTERN_BYTES) {
            long length = Math.min(PATTERN_BYTES, target.byteSize() - offset);
            MemorySegment.copy(pattern, 0, target, offset, length);
        }
    }
}
