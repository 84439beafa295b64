package org.bitdelta.cuda;

import org.bitdelta.cuda.DecoderTestSupport.Cache;
import org.bitdelta.cuda.DecoderTestSupport.Shape;
import org.bitdelta.cuda.DecoderTestSupport.TenantKind;
import org.bitdelta.cuda.DecoderTestSupport.Twin;
import org.bitdelta.internal.cpu.CpuDecoderDevice;
import org.bitdelta.internal.cpu.ScalarCpuBackend;
import org.bitdelta.internal.model.Sampler;
import org.bitdelta.spi.Activations;
import org.bitdelta.spi.DecoderDevice;
import org.bitdelta.spi.DecoderDevice.Norm;
import org.bitdelta.spi.DecoderSpec;
import org.bitdelta.spi.Projection.Group;
import org.bitdelta.spi.Sampling;
import org.bitdelta.spi.StepInputs;
import org.bitdelta.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.function.BiConsumer;
import java.util.function.Function;
import java.util.stream.Stream;

import static org.bitdelta.cuda.DecoderTestSupport.relativeError;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every operation of {@link CudaDecoderDevice} against the scalar oracle ({@code CpuDecoderDevice} with plain loops) on
 * fresh random synthetic models: shapes at lane and tile edges, GQA ratios 1, 4 and 8, sliding windows shorter and
 * longer than the context, KV blocks partly filled, tenants with and without each replaced tensor, base and tenant
 * rows mixed in one step. Operations are checked one at a time (each from identical inputs: after every comparison
 * the oracle's output is written into both devices), then whole decode steps (captured as CUDA graphs) end to end.
 * F32 models (and 16-bit ones whose widths the tensor cores do not take) run the exact path, F16 and BF16 models the
 * tensor-core path; each path has its tolerances ({@link Tolerances}).
 */
class CudaDecoderDeviceConformanceTest {
    /**
     * Tolerances: max |device - oracle| over max |oracle| of an operation's whole output.
     *
     * @param elementwise RMSNorm and SwiGLU: the oracle's operation order on both paths, only exp's last bit may differ
     * @param product     the projections and lm_head. Exact path: F32 products summed in another order. Tensor-core
     *                    path: x split into 16-bit parts to 2^-22 (F16) or 2^-25 (BF16) relative per element and
     *                    quantized to 2^-23 max|x| for the delta, products exact, summed 32 at a time in the tensor cores
     *                    (truncating) then in F32: at K <= 256 about sqrt(K) 2^-22 = 4e-6 of the largest output, so the
     *                    same 2e-5 holds; dropping the low part (2^-12) or the delta (1e-2) fails it by 10x and more
     * @param attention   attention. Exact path: the oracle's order (exp in double); tensor-core path with an F32 cache:
     *                    exp in F32 and tree sums; with a 16-bit cache the keys and values are rounded (2^-11 relative
     *                    for F16, 2^-8 for BF16) and the output, a convex combination of values with perturbed weights,
     *                    moves by up to about twice that of the largest value: 2e-3 (F16), 1.6e-2 (BF16)
     * @param step        logits after whole steps through every layer (F32 caches only)
     */
    record Tolerances(double elementwise, double product, double attention, double step) {
        static final Tolerances EXACT = new Tolerances(1e-6, 2e-5, 1e-5, 2e-4);
        static final Tolerances TENSOR_CORES = new Tolerances(1e-6, 2e-5, 2e-5, 2e-4);

        static Tolerances of(CudaDecoderDevice device) {
            if (!device.tensorCores()) {
                return EXACT;
            }
            return switch (device.kvCacheDtype()) {
                case "F16" -> new Tolerances(1e-6, 2e-5, 2e-3, Double.NaN);
                case "BF16" -> new Tolerances(1e-6, 2e-5, 1.6e-2, Double.NaN);
                default -> TENSOR_CORES;
            };
        }
    }

    @RegisterExtension
    static final GpuResources cuda = new GpuResources();
    /** The device under test over a spec (graphs on or off) with F32 KV caches. */
    static java.util.function.BiFunction<DecoderSpec, Boolean, DecoderDevice> openDevice =
            (spec, graphs) -> new CudaDecoderDevice(cuda.backend(), spec, graphs, CudaBackend.KvCachePrecision.F32);

    static Stream<Shape> shapes() {
        return Stream.of(
                // stories260K-like: F32, GQA 2, tied
                new Shape(DType.F32, 64, 172, 8, 4, 8, 512, 2, 64, 0, true, 16, 16, 24, 4),
                // F16, hidden 72 (not a multiple of 32), GQA 4, window shorter than the context, tiny blocks
                new Shape(DType.F16, 72, 136, 4, 1, 18, 33, 2, 48, 5, false, 12, 3, 80, 4),
                // BF16, hidden 136, GQA 8, window longer than the context, vocab 4097
                new Shape(DType.BF16, 136, 200, 8, 1, 16, 4097, 1, 40, 100, false, 12, 7, 40, 4),
                // F32, one head of dimension 128, blocks of one token, vocab 7
                new Shape(DType.F32, 64, 64, 1, 1, 128, 7, 1, 40, 0, true, 10, 1, 240, 4),
                // F16, vocab 1, head dimension 8, no GQA (ratio 1)
                new Shape(DType.F16, 64, 96, 2, 2, 8, 1, 2, 32, 0, false, 9, 5, 40, 3),
                // BF16, head dimension 64, GQA 4, window 8 at blocks of 4
                new Shape(DType.BF16, 96, 160, 4, 1, 64, 300, 1, 48, 8, true, 16, 4, 80, 4),
                // F16, hidden 60 (not a multiple of 8: the exact path with 16-bit weights), GQA 2
                new Shape(DType.F16, 60, 84, 4, 2, 10, 50, 2, 40, 0, false, 12, 4, 60, 4));
    }

    /** The 16-bit shapes of {@link #shapes} that take the tensor-core path. */
    static Stream<Shape> tensorCoreShapes() {
        return shapes().filter(shape -> shape.dtype() != DType.F32 && shape.hidden() % 8 == 0);
    }

    static Twin twin(DecoderSpec spec, boolean graphs) {
        return twin(spec, () -> openDevice.apply(spec, graphs));
    }

    static Twin twin(DecoderSpec spec, java.util.function.Supplier<DecoderDevice> device) {
        CpuDecoderDevice oracle = new CpuDecoderDevice(spec, new ScalarCpuBackend(), false);
        try {
            return new Twin(oracle, device.get());
        } catch (RuntimeException e) {
            oracle.close();
            throw e;
        }
    }

    /** Tenants 1 .. 3: all deltas (per-row scales) and every replaced tensor; half the deltas (per matrix); norms only. */
    private static void loadTenants(Twin twin, DecoderSpec spec, long seed) {
        DType other = spec.embedding().dtype() == DType.F32 ? DType.BF16 : DType.F32;  // a tenant's tensors in another dtype
        twin.load(1, DecoderTestSupport.tenant(spec, "full", new TenantKind(1.0, true, true, true, true, other), seed + 1));
        twin.load(2, DecoderTestSupport.tenant(spec, "half", new TenantKind(0.5, false, false, false, false, other), seed + 2));
        if (spec.tenantSlots() > 3) {
            twin.load(3, DecoderTestSupport.tenant(spec, "norms", new TenantKind(0.0, true, false, false, true, spec.embedding().dtype()),
                    seed + 3));
        }
    }

    @ParameterizedTest
    @MethodSource("shapes")
    void everyOperationMatchesTheScalarOracle(Shape shape) {
        checkEveryOperation(shape);
    }

    /** The same with the caches of the model's dtype: operations one at a time, attention within the rounding of the keys. */
    @ParameterizedTest
    @MethodSource("tensorCoreShapes")
    void sixteenBitKvCachesStayWithinTheirRounding(Shape shape) {
        checkEveryOperation(shape, CudaBackend.KvCachePrecision.MODEL);
    }

    static void checkEveryOperation(Shape shape) {
        checkEveryOperation(shape, CudaBackend.KvCachePrecision.F32);
    }

    static void checkEveryOperation(Shape shape, CudaBackend.KvCachePrecision kvCache) {
        long seed = DecoderTestSupport.seed("conformance " + shape + ", KV cache " + kvCache);
        DecoderSpec spec = DecoderTestSupport.spec(shape, seed);
        SplittableRandom random = new SplittableRandom(seed ^ 0x1234);
        try (Twin twin = twin(spec, () -> new CudaDecoderDevice(cuda.backend(), spec, true, kvCache))) {
            CudaDecoderDevice device = (CudaDecoderDevice) twin.device;
            Tolerances tolerances = Tolerances.of(device);
            assertEquals(shape.dtype() != DType.F32 && shape.hidden() % 8 == 0, device.tensorCores(), "the path of " + shape);
            System.out.println("  " + (device.tensorCores() ? "tensor-core" : "exact") + " path, KV cache " + device.kvCacheDtype()
                    + ", tolerances " + tolerances);
            loadTenants(twin, spec, seed);
            DecoderTestSupport.allocateStepBuffers(twin, spec);
            Cache cache = new Cache(spec, seed);
            int slots = spec.tenantSlots();

            // A prefill step: chunks of several sequences (base and tenant rows mixed), every row an output row.
            List<Cache.Sequence> sequences = new ArrayList<>();
            List<int[]> chunks = new ArrayList<>();
            int rows = 0;
            for (int s = 0; rows < spec.maxRows() - 1 && s < 4; s++) {
                int length = Math.min(1 + random.nextInt(Math.max(1, spec.maxRows() / 2)), spec.maxRows() - 1 - rows);
                sequences.add(new Cache.Sequence(s % slots));
                chunks.add(DecoderTestSupport.randomTokens(random, length, spec.vocabularySize()));
                rows += length;
            }
            StepInputs prefill = cache.step(sequences, chunks, true);
            checkOperations(twin, spec, prefill, tolerances, "prefill of " + prefill.rows() + " rows, seed " + seed);

            // Decode steps over the same sequences and new ones, captured as graphs, then whole steps compared.
            for (int s = 0; s < 3; s++) {
                sequences.add(new Cache.Sequence((s + 1) % slots));
            }
            int decodeSteps = Math.min(spec.contextLength() - 1 - sequences.stream().mapToInt(q -> q.length).max().orElse(0), 12);
            for (int step = 0; step < decodeSteps; step++) {
                List<Cache.Sequence> batch = new ArrayList<>();
                List<int[]> tokens = new ArrayList<>();
                for (Cache.Sequence sequence : sequences) {
                    if (step == 0 || random.nextInt(5) > 0) {  // sequences drop in and out: the batch size varies
                        batch.add(sequence);
                        tokens.add(DecoderTestSupport.randomTokens(random, 1, spec.vocabularySize()));
                    }
                }
                if (batch.isEmpty()) {
                    continue;
                }
                StepInputs decode = cache.step(batch, tokens, false);
                if (step == 1 || Double.isNaN(tolerances.step())) {
                    checkOperations(twin, spec, decode, tolerances, "decode step " + step + " of " + decode.rows() + " rows, seed " + seed);
                    continue;
                }
                twin.run(decode, DecoderTestSupport::decoderStep);
                float[][] logits = twin.read("logits", decode.outputRows());
                double error = relativeError(logits[0], logits[1], logits[0].length);
                assertTrue(error < tolerances.step(), "decode step " + step + " (" + decode.rows() + " rows) logits: relative error " + error
                        + " (seed " + seed + ")");
                checkSampling(twin, spec, decode.outputRows(), seed + step);
            }
        }
    }

    /**
     * Each operation of one step alone, layer by layer, from identical inputs: after each comparison the oracle's
     * output goes into both devices. The KV cache is written once per layer, as in a real step.
     */
    private static void checkOperations(Twin twin, DecoderSpec spec, StepInputs inputs, Tolerances tolerances, String what) {
        int rows = inputs.rows();
        int outputs = inputs.outputRows();
        check(twin, inputs, (d, b) -> d.embed(b.apply("residual")), "residual", rows, 0, what + ": embed");
        for (int layer = 0; layer < spec.layerCount(); layer++) {
            int l = layer;
            String at = what + ": layer " + layer + " ";
            check(twin, inputs, (d, b) -> d.rmsNorm(b.apply("residual"), Norm.INPUT, l, b.apply("normed")), "normed", rows, tolerances.elementwise(),
                    at + "input RMSNorm");
            check(twin, inputs, (d, b) -> d.project(l, Group.QKV, b.apply("normed"), b.apply("qkv"), false), "qkv", rows, tolerances.product(),
                    at + "q|k|v product");
            check(twin, inputs, (d, b) -> d.rotaryAndCache(l, b.apply("qkv")), "qkv", rows, 0, at + "RoPE");
            check(twin, inputs, (d, b) -> d.attention(l, b.apply("qkv"), b.apply("attended")), "attended", rows, tolerances.attention(),
                    at + "attention");
            check(twin, inputs, (d, b) -> d.project(l, Group.ATTENTION_OUTPUT, b.apply("attended"), b.apply("residual"), true),
                    "residual", rows, tolerances.product(), at + "o product added to the residual");
            check(twin, inputs, (d, b) -> d.rmsNorm(b.apply("residual"), Norm.POST_ATTENTION, l, b.apply("normed")), "normed", rows,
                    tolerances.elementwise(), at + "post-attention RMSNorm");
            check(twin, inputs, (d, b) -> d.project(l, Group.GATE_UP, b.apply("normed"), b.apply("gateUp"), false), "gateUp", rows,
                    tolerances.product(), at + "gate|up product");
            check(twin, inputs, (d, b) -> d.swiGlu(b.apply("gateUp"), b.apply("feedForward")), "feedForward", rows, tolerances.elementwise(),
                    at + "SwiGLU");
            check(twin, inputs, (d, b) -> d.project(l, Group.FEED_FORWARD_OUTPUT, b.apply("feedForward"), b.apply("residual"), true),
                    "residual", rows, tolerances.product(), at + "down product added to the residual");
        }
        check(twin, inputs, (d, b) -> d.gatherOutputRows(b.apply("residual"), b.apply("outputRows")), "outputRows", outputs, 0,
                what + ": output rows");
        check(twin, inputs, (d, b) -> d.rmsNorm(b.apply("outputRows"), Norm.FINAL, 0, b.apply("outputNormed")), "outputNormed", outputs,
                tolerances.elementwise(), what + ": final RMSNorm");
        check(twin, inputs, (d, b) -> d.lmHead(b.apply("outputNormed"), b.apply("logits")), "logits", outputs, tolerances.product(),
                what + ": lm_head");
    }

    /** Runs one operation on both devices, compares {@code result} (tolerance 0: bit-exact), then syncs it. */
    private static void check(Twin twin, StepInputs inputs, BiConsumer<DecoderDevice, Function<String, Activations>> operation,
                              String result, int rows, double tolerance, String what) {
        twin.run(inputs, operation);
        float[][] values = twin.read(result, rows);
        if (tolerance == 0) {
            assertArrayEquals(values[0], values[1], what);
        } else {
            double error = relativeError(values[0], values[1], values[0].length);
            assertTrue(error <= tolerance, what + ": relative error " + error + " > " + tolerance);
        }
        twin.write(result, rows, values[0]);
    }

    /** The device's sampling equals Sampler.sample on the same logits (greedy, and temperature/top-k/top-p draws). */
    private static void checkSampling(Twin twin, DecoderSpec spec, int rows, long seed) {
        int vocabulary = spec.vocabularySize();
        float[] logits = new float[rows * vocabulary];
        twin.device.read(twin.of(twin.device, "logits"), rows, logits);
        SplittableRandom random = new SplittableRandom(seed);
        float[] temperature = new float[rows];
        int[] topK = new int[rows];
        float[] topP = new float[rows];
        long[] seeds = new long[rows];
        int[] draw = new int[rows];
        for (int pass = 0; pass < 2; pass++) {
            for (int row = 0; row < rows; row++) {
                temperature[row] = pass == 0 ? 0 : (float) (0.3 + random.nextDouble());
                topK[row] = random.nextInt(3) == 0 ? 0 : 1 + random.nextInt(Math.max(1, vocabulary));
                topP[row] = random.nextBoolean() ? 1f : (float) (0.5 + 0.5 * random.nextDouble());
                seeds[row] = random.nextLong();
                draw[row] = random.nextInt(1000);
            }
            int[] tokens = new int[rows];
            Arrays.fill(tokens, -1);
            twin.device.sample(twin.of(twin.device, "logits"), new Sampling(temperature, topK, topP, seeds, draw), rows, tokens);
            for (int row = 0; row < rows; row++) {
                int expected = Sampler.sample(logits, row * vocabulary, vocabulary, temperature[row], topK[row], topP[row],
                        Sampling.uniform(seeds[row], draw[row]));
                assertEquals(expected, tokens[row], "row " + row + " sampled with T " + temperature[row] + ", top-k " + topK[row]
                        + ", top-p " + topP[row] + ", seed " + seeds[row] + ", draw " + draw[row] + " (test seed " + seed + ")");
            }
        }
    }

    @Test
    void graphReplaysEqualEagerStepsBitForBitAndOneGraphServesEachBucket() {
        long seed = DecoderTestSupport.seed("graphs vs eager");
        Shape shape = new Shape(DType.F16, 64, 128, 4, 2, 16, 97, 2, 64, 0, false, 16, 4, 128, 4);
        DecoderSpec spec = DecoderTestSupport.spec(shape, seed);
        SplittableRandom random = new SplittableRandom(seed);
        try (Twin twin = new Twin(new CudaDecoderDevice(cuda.backend(), spec, false), new CudaDecoderDevice(cuda.backend(), spec, true))) {
            loadTenants(twin, spec, seed);
            DecoderTestSupport.allocateStepBuffers(twin, spec);
            Cache cache = new Cache(spec, seed);
            List<Cache.Sequence> sequences = new ArrayList<>();
            for (int s = 0; s < 11; s++) {
                sequences.add(new Cache.Sequence(s % spec.tenantSlots()));
            }
            int[] batchSizes = {1, 2, 3, 4, 5, 8, 11, 7, 3, 1, 11, 6};  // buckets 1, 2, 4, 8, 16
            for (int step = 0; step < batchSizes.length; step++) {
                List<Cache.Sequence> batch = sequences.subList(0, batchSizes[step]);
                List<int[]> tokens = new ArrayList<>();
                for (int i = 0; i < batch.size(); i++) {
                    tokens.add(DecoderTestSupport.randomTokens(random, 1, spec.vocabularySize()));
                }
                StepInputs inputs = cache.step(batch, tokens, false);
                twin.run(inputs, DecoderTestSupport::decoderStep);
                float[][] logits = twin.read("logits", inputs.outputRows());
                assertArrayEquals(logits[0], logits[1], "step " + step + " of " + batch.size() + " rows: graph vs eager (seed " + seed + ")");
            }
            assertEquals(0, ((CudaDecoderDevice) twin.oracle).graphCount(), "the eager device captures nothing");
            assertEquals(5, ((CudaDecoderDevice) twin.device).graphCount(), "one graph per bucket 1, 2, 4, 8, 16");
        }
    }

    @Test
    void samplingEdgeCasesMatchTheSampler() {
        long seed = DecoderTestSupport.seed("sampling edge cases");
        SplittableRandom random = new SplittableRandom(seed);
        for (int vocabulary : new int[]{1, 2, 7, 1000, 32000}) {
            Shape shape = new Shape(DType.F32, 32, 32, 2, 1, 8, vocabulary, 1, 8, 0, true, 70, 4, 4, 2);
            DecoderSpec spec = DecoderTestSupport.spec(shape, seed);
            try (CudaDecoderDevice device = new CudaDecoderDevice(cuda.backend(), spec, true)) {
                int rows = 70;  // several sampling launches of 16 rows, the last one partial
                Activations buffer = device.allocate("logits", rows, vocabulary);
                float[] logits = new float[rows * vocabulary];
                for (int row = 0; row < rows; row++) {
                    for (int v = 0; v < vocabulary; v++) {
                        int kind = random.nextInt(20);
                        // ties (few distinct values), -0.0 beside 0.0, -inf, and ordinary spreads
                        logits[row * vocabulary + v] = switch (row % 4) {
                            case 0 -> (float) random.nextInt(3);
                            case 1 -> kind == 0 ? Float.NEGATIVE_INFINITY : kind == 1 ? -0.0f : kind == 2 ? 0.0f : (float) random.nextGaussian();
                            default -> (float) (random.nextGaussian() * 3);
                        };
                    }
                    logits[row * vocabulary] = row % 4 == 1 ? Math.max(logits[row * vocabulary], -1f) : logits[row * vocabulary];
                }
                device.write(logits, rows, buffer);
                float[] temperature = new float[rows];
                int[] topK = new int[rows];
                float[] topP = new float[rows];
                long[] seeds = new long[rows];
                int[] draw = new int[rows];
                for (int row = 0; row < rows; row++) {
                    temperature[row] = row % 5 == 0 ? 0f : (float) (0.1 + 2 * random.nextDouble());
                    topK[row] = row % 3 == 0 ? 0 : 1 + random.nextInt(vocabulary + 2);
                    topP[row] = row % 2 == 0 ? 1f : (float) random.nextDouble();
                    seeds[row] = random.nextLong();
                    draw[row] = random.nextInt(100000);
                }
                int[] tokens = new int[rows];
                device.sample(buffer, new Sampling(temperature, topK, topP, seeds, draw), rows, tokens);
                for (int row = 0; row < rows; row++) {
                    int expected = Sampler.sample(logits, row * vocabulary, vocabulary, temperature[row], topK[row], topP[row],
                            Sampling.uniform(seeds[row], draw[row]));
                    assertEquals(expected, tokens[row], "vocab " + vocabulary + " row " + row + " (T " + temperature[row] + ", top-k "
                            + topK[row] + ", top-p " + topP[row] + "; seed " + seed + ")");
                }
            }
        }
    }

    /**
     * The tensor-core products on both of their paths, for every product of a layer: a prefill chunk of one tenant
     * (bd_prefill over the 16-bit parts), three tenants' chunks in one step (the decode kernel, chunks of 16 rows), and
     * a decode step of 40 sequences captured for its bucket of 64 rows (four chunks of 16 rows per m16 tile). Inputs of 64, 200 and 328
     * columns: shorter than one k256 stage, and with a partial last stage.
     */
    @ParameterizedTest
    @MethodSource("sixteenBitTypes")
    void tensorCoreProductsMatchTheOracleOnBothPaths(DType dtype) {
        long seed = DecoderTestSupport.seed("tensor-core products " + dtype);
        Shape shape = new Shape(dtype, 200, 328, 4, 2, 16, 100, 1, 128, 0, false, 64, 16, 64, 4);
        DecoderSpec spec = DecoderTestSupport.spec(shape, seed);
        SplittableRandom random = new SplittableRandom(seed);
        try (Twin twin = twin(spec, true)) {
            assertTrue(((CudaDecoderDevice) twin.device).tensorCores(), shape + " takes the tensor-core path");
            loadTenants(twin, spec, seed);
            DecoderTestSupport.allocateStepBuffers(twin, spec);
            Cache cache = new Cache(spec, seed);
            List<Cache.Sequence> sequences = new ArrayList<>();
            List<int[]> chunks = new ArrayList<>();
            sequences.add(new Cache.Sequence(1));
            chunks.add(DecoderTestSupport.randomTokens(random, 40, spec.vocabularySize()));
            checkProducts(twin, spec, cache.step(sequences, chunks, false), random, "one tenant's prefill chunk of 40 rows, seed " + seed);

            sequences.clear();
            chunks.clear();
            for (int slot = 0; slot < 3; slot++) {
                sequences.add(new Cache.Sequence(slot));
                chunks.add(DecoderTestSupport.randomTokens(random, 14, spec.vocabularySize()));
            }
            checkProducts(twin, spec, cache.step(sequences, chunks, false), random, "three tenants' chunks of 14 rows, seed " + seed);

            sequences.clear();
            chunks.clear();
            for (int s = 0; s < 40; s++) {
                sequences.add(new Cache.Sequence(s % spec.tenantSlots()));
                chunks.add(DecoderTestSupport.randomTokens(random, 1, spec.vocabularySize()));
            }
            checkProducts(twin, spec, cache.step(sequences, chunks, false), random, "a decode step of 40 rows, seed " + seed);
        }
    }

    static Stream<DType> sixteenBitTypes() {
        return Stream.of(DType.F16, DType.BF16);
    }

    /** Every product of layer 0 from random inputs (and a random residual for the accumulating ones). */
    private static void checkProducts(Twin twin, DecoderSpec spec, StepInputs inputs, SplittableRandom random, String what) {
        Tolerances tolerances = Tolerances.of((CudaDecoderDevice) twin.device);
        int rows = inputs.rows();
        for (Group group : Group.values()) {
            String in = switch (group) {
                case QKV, GATE_UP -> "normed";
                case ATTENTION_OUTPUT -> "attended";
                case FEED_FORWARD_OUTPUT -> "feedForward";
            };
            String out = switch (group) {
                case QKV -> "qkv";
                case GATE_UP -> "gateUp";
                case ATTENTION_OUTPUT, FEED_FORWARD_OUTPUT -> "residual";
            };
            boolean accumulate = out.equals("residual");
            twin.write(in, rows, DecoderTestSupport.uniform(random, rows * columnsOf(spec, in), -2, 2));
            twin.write(out, rows, DecoderTestSupport.uniform(random, rows * columnsOf(spec, out), -2, 2));
            check(twin, inputs, (d, b) -> d.project(0, group, b.apply(in), b.apply(out), accumulate), out, rows, tolerances.product(),
                    what + ": " + group + (accumulate ? " added to the residual" : ""));
        }
    }

    private static int columnsOf(DecoderSpec spec, String buffer) {
        return switch (buffer) {
            case "normed", "residual" -> spec.hiddenSize();
            case "attended" -> spec.queryWidth();
            case "feedForward" -> spec.intermediateSize();
            case "qkv" -> spec.width(Group.QKV);
            case "gateUp" -> spec.width(Group.GATE_UP);
            default -> throw new IllegalArgumentException(buffer);
        };
    }

    /**
     * Attention of the tensor-core path over long sequences: sequences of 280 and 140 positions filled in steps of 40 + 20
     * rows (each step's attention through the flash prefill kernel: tiles of 32 + 8 and 20 rows), then decode steps of
     * three rows attending to up to 283 positions (the split decode kernel: up to 9 chunks of 32 positions over its
     * splits), GQA 4, without and with a sliding window of 100.
     */
    @ParameterizedTest
    @MethodSource("attentionWindows")
    void tensorCoreAttentionOverLongSequencesMatchesTheOracle(int window) {
        long seed = DecoderTestSupport.seed("long attention, window " + window);
        Shape shape = new Shape(DType.F16, 128, 256, 8, 2, 64, 50, 1, 320, window, false, 64, 16, 80, 2);
        DecoderSpec spec = DecoderTestSupport.spec(shape, seed);
        SplittableRandom random = new SplittableRandom(seed);
        try (Twin twin = twin(spec, true)) {
            assertTrue(((CudaDecoderDevice) twin.device).tensorCores(), shape + " takes the tensor-core path");
            Tolerances tolerances = Tolerances.of((CudaDecoderDevice) twin.device);
            DecoderTestSupport.allocateStepBuffers(twin, spec);
            Cache cache = new Cache(spec, seed);
            Cache.Sequence longer = new Cache.Sequence(0);
            Cache.Sequence shorter = new Cache.Sequence(0);
            int width = spec.width(Group.QKV);
            for (int step = 0; step < 7; step++) {
                StepInputs prefill = cache.step(List.of(longer, shorter), List.of(DecoderTestSupport.randomTokens(random, 40,
                        spec.vocabularySize()), DecoderTestSupport.randomTokens(random, 20, spec.vocabularySize())), false);
                twin.write("qkv", prefill.rows(), DecoderTestSupport.uniform(random, prefill.rows() * width, -2, 2));
                twin.run(prefill, (d, b) -> d.rotaryAndCache(0, b.apply("qkv")));
                check(twin, prefill, (d, b) -> d.attention(0, b.apply("qkv"), b.apply("attended")), "attended", prefill.rows(),
                        tolerances.attention(), "prefill step " + step + " (positions up to " + (longer.length - 1) + "), seed " + seed);
            }
            List<Cache.Sequence> batch = List.of(longer, shorter, new Cache.Sequence(0));
            for (int step = 0; step < 3; step++) {
                List<int[]> tokens = new ArrayList<>();
                for (int i = 0; i < batch.size(); i++) {
                    tokens.add(DecoderTestSupport.randomTokens(random, 1, spec.vocabularySize()));
                }
                StepInputs decode = cache.step(batch, tokens, false);
                twin.write("qkv", decode.rows(), DecoderTestSupport.uniform(random, decode.rows() * width, -2, 2));
                twin.run(decode, (d, b) -> d.rotaryAndCache(0, b.apply("qkv")));
                check(twin, decode, (d, b) -> d.attention(0, b.apply("qkv"), b.apply("attended")), "attended", decode.rows(),
                        tolerances.attention(), "decode step " + step + " at positions " + (longer.length - 1) + ", " + (shorter.length - 1)
                                + ", seed " + seed);
            }
        }
    }

    static Stream<Integer> attentionWindows() {
        return Stream.of(0, 100);
    }
}
