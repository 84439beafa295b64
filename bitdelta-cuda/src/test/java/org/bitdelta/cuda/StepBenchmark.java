package org.bitdelta.cuda;

import org.bitdelta.BinaryDelta;
import org.bitdelta.cuda.internal.StepLibrary;
import org.bitdelta.internal.model.RotaryEmbedding;
import org.bitdelta.spi.Activations;
import org.bitdelta.spi.DecoderSpec;
import org.bitdelta.spi.MemoryUse;
import org.bitdelta.spi.Projection;
import org.bitdelta.spi.StepInputs;
import org.bitdelta.spi.TenantWeights;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.Function;
import java.util.stream.IntStream;

/**
 * The whole decoder step at the Llama-2-7B shape on one GPU (hidden 4096, intermediate 11008, 32 layers, 32 heads and
 * KV heads of 128, vocabulary 32000), synthetic F16 weights and tenants made in memory here (seeded, on all cores),
 * contexts of 256 prompt tokens prefilled first, one token per sequence per step, decode steps captured as CUDA graphs
 * and timed back to back with CUDA events (medians after a warm-up). In one run, with the device-to-device copy
 * bandwidth measured first:
 * <ol type="a">
 * <li>16 tenants, one sequence each (each tenant with its own deltas on every projection, lm_head, embeddings and
 * norms): the median step against its floor (base weights once + 16 tenants' packed deltas and scales + 16 lm_heads +
 * the KV cache read, over the copy bandwidth), and the tokens/s against 16 x the base-alone step (16 separate F16
 * models decoded one after another);</li>
 * <li>the base alone at batch 1 against its floor;</li>
 * <li>GPU memory with the base and 16 tenants: {@code memory()} and cudaMemGetInfo;</li>
 * <li>1, 4, 16, 32 tenants (full tenants as in (a)) and 64 tenants (deltas and norms only: 64 full tenants do not fit
 * 80 GB beside the base), on a second device sized for 64 sequences: step, floor, tokens/s, memory;</li>
 * <li>prefill of 16 prompts of 256 tokens (one prompt per step, each its tenant's) in prompt tokens/s, against the
 * cuBLAS GEMMs of the same tokens through the base alone (bench/cublas_prefill.cu, passed in with
 * {@code --cublas-prefill-ms});</li>
 * <li>(a) and (b) again without programmatic dependent launch (every kernel waits for the one before it to finish;
 * fresh sequences at the same positions, graphs captured again): what the overlap of launches saves.</li>
 * </ol>
 * A table last, with the card, the driver and the bandwidth. Not a test (surefire runs *Test classes only); run on a GPU
 * host by bench/step-benchmark-device.sh. Arguments: {@code --layers=N} (fewer layers: a quick run), {@code --seed=N},
 * {@code --steps=N}, {@code --warmup=N}, {@code --cublas-prefill-ms=X}, {@code --driver=TEXT}, and {@code --profile}: instead
 * of the runs above, one 16-tenant decode step, one base-alone decode step and one 256-token prefill step (after warm-up
 * steps) between cuProfilerStart and cuProfilerStop, for {@code ncu --profile-from-start off} (bench/profile-step-device.sh).
 */
public final class StepBenchmark {
    static final int HIDDEN = 4096;
    static final int INTERMEDIATE = 11008;
    static final int HEADS = 32;
    static final int KV_HEADS = 32;
    static final int HEAD_DIM = 128;
    static final int VOCAB = 32000;
    static final int MODEL_CONTEXT = 4096;
    static final int PROMPT = 256;
    static final int BLOCK = 16;
    static final int MAX_ROWS = 256;
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final int layers;
    private final long seed;
    private final int warmup;
    private final int steps;
    private final double cublasPrefillMs;
    private final String driver;
    private final boolean stepOnly;
    private final CudaBackend backend;
    private final StepLibrary step;
    private final double bandwidth;
    private final List<String> table = new ArrayList<>();

    private StepBenchmark(int layers, long seed, int warmup, int steps, double cublasPrefillMs, String driver, boolean stepOnly) {
        this.layers = layers;
        this.stepOnly = stepOnly;
        this.seed = seed;
        this.warmup = warmup;
        this.steps = steps;
        this.cublasPrefillMs = cublasPrefillMs;
        this.driver = driver;
        this.backend = new CudaBackend(0, CudaBackend.KvCachePrecision.MODEL);
        this.step = StepLibrary.load(backend.library());
        this.bandwidth = step.copyBandwidth(1L << 30, 20);
    }

    public static void main(String[] args) {
        int layers = 32;
        long seed = 20240601L;
        int warmup = 10;
        int steps = 50;
        double cublasPrefillMs = Double.NaN;
        String driver = "unknown";
        boolean profile = false;
        boolean stepOnly = false;
        for (String argument : args) {
            String value = argument.substring(argument.indexOf('=') + 1);
            if (argument.startsWith("--layers=")) {
                layers = Integer.parseInt(value);
            } else if (argument.startsWith("--seed=")) {
                seed = Long.parseLong(value);
            } else if (argument.startsWith("--warmup=")) {
                warmup = Integer.parseInt(value);
            } else if (argument.startsWith("--steps=")) {
                steps = Integer.parseInt(value);
            } else if (argument.startsWith("--cublas-prefill-ms=")) {
                cublasPrefillMs = Double.parseDouble(value);
            } else if (argument.startsWith("--driver=")) {
                driver = value;
            } else if (argument.equals("--profile")) {
                profile = true;
            } else if (argument.equals("--step-only")) {
                stepOnly = true;
            } else {
                throw new IllegalArgumentException("unknown argument " + argument
                        + " (--layers=N --seed=N --warmup=N --steps=N --cublas-prefill-ms=X --driver=TEXT --profile --step-only)");
            }
        }
        StepBenchmark benchmark = new StepBenchmark(layers, seed, warmup, steps, cublasPrefillMs, driver, stepOnly);
        try {
            if (profile) {
                benchmark.runProfile();
            } else {
                benchmark.run();
            }
        } finally {
            benchmark.backend.close();
        }
    }

    // ---------------------------------------------------------------- the runs

    private void run() {
        System.out.printf(Locale.ROOT, "StepBenchmark: %s, driver %s, %d layers, seed %d, %d warm-up and %d timed steps%n",
                backend.describe(), driver, layers, seed, warmup, steps);
        System.out.printf(Locale.ROOT, "device-to-device copy bandwidth: %.0f GB/s (read + write, median of 20 copies of 1 GiB)%n",
                bandwidth / 1e9);
        long start = System.nanoTime();
        try (Arena baseArena = Arena.ofShared()) {
            BaseModel base = baseModel(baseArena);
            System.out.printf(Locale.ROOT, "base weights made in memory: %.2f GB in %.1f s%n", base.bytes() / 1e9, (System.nanoTime() - start) / 1e9);

            // (a), (b), (c), (e): a device for 16 tenants' sequences and one base sequence
            runSixteen(spec(base, 16 + 2, 17));
            if (!stepOnly) {  // --step-only stops here: (a), (b), (c), (e) a prompt a step and (f), to compare builds in one call
                // (e) again, the 16 prompts in one step: a device whose steps take 16 x 256 rows
                runBatchedPrefill(spec(base, 16, 17, 16 * PROMPT));
                // (d): a device for up to 64 sequences
                runTable(spec(base, 64, 65));
            }
        }
        printTable();
    }

    /**
     * The profiled steps (--profile): a device for 16 tenants and a base sequence, prompts prefilled and warm-up steps
     * run (graphs captured), then one 16-tenant decode step, one base-alone decode step and one prefill of a 256-token
     * prompt of tenant 1 between cuProfilerStart and cuProfilerStop, in that order (each starts with the embedding).
     */
    private void runProfile() {
        try (Arena baseArena = Arena.ofShared()) {
            DecoderSpec spec = spec(baseModel(baseArena), 16 + 2, 17);  // the 16 tenants', the base's, the profiled prompt
            try (CudaDecoderDevice device = new CudaDecoderDevice(backend, spec, true, CudaBackend.KvCachePrecision.MODEL)) {
                loadTenants(device, spec, 16);
                Buffers buffers = new Buffers(device, spec);
                DecoderTestSupport.Cache cache = new DecoderTestSupport.Cache(spec, seed);
                SplittableRandom random = new SplittableRandom(seed ^ 0x9F0F);
                List<DecoderTestSupport.Cache.Sequence> sixteen = sequencesOf(16);
                List<DecoderTestSupport.Cache.Sequence> alone = List.of(new DecoderTestSupport.Cache.Sequence(0));
                prefill(device, buffers, cache, sixteen, PROMPT, random);
                prefill(device, buffers, cache, alone, PROMPT, random);
                Timing warmSixteen = decode(device, buffers, cache, sixteen, random);
                Timing warmAlone = decode(device, buffers, cache, alone, random);
                System.out.printf(Locale.ROOT, "%d layers, before profiling: 16 tenants %.3f ms a step, base alone %.3f ms (medians)%n",
                        layers, warmSixteen.median(), warmAlone.median());
                synchronize(device, "the warm-up steps");
                cudaProfiler("cuProfilerStart");
                decodeOnce(device, buffers, cache, sixteen, random);
                decodeOnce(device, buffers, cache, alone, random);
                prefill(device, buffers, cache, List.of(new DecoderTestSupport.Cache.Sequence(1)), PROMPT, random);
                synchronize(device, "the profiled steps");
                cudaProfiler("cuProfilerStop");
                System.out.println("profiled: a 16-tenant decode step, a base-alone decode step, a 256-token prefill step");
            }
        }
    }

    /** One decode step of a random token per sequence, enqueued. */
    private void decodeOnce(CudaDecoderDevice device, Buffers buffers, DecoderTestSupport.Cache cache,
                            List<DecoderTestSupport.Cache.Sequence> sequences, SplittableRandom random) {
        List<int[]> tokens = new ArrayList<>();
        for (int s = 0; s < sequences.size(); s++) {
            tokens.add(new int[]{random.nextInt(VOCAB)});
        }
        StepInputs inputs = cache.step(sequences, tokens, false);
        device.run(inputs, () -> DecoderTestSupport.decoderStep(device, buffers.lookup()));
    }

    private void synchronize(CudaDecoderDevice device, String what) {
        backend.library().check(backend.library().streamSynchronize(device.stream()), "waiting for " + what);
    }

    /** Tenants 1 .. count, each with its own deltas (and, full, its own embedding and lm_head), loaded in slots 1 .. count. */
    private void loadTenants(CudaDecoderDevice device, DecoderSpec spec, int count) {
        for (int tenant = 1; tenant <= count; tenant++) {
            loadTenant(device, spec, tenant, true);
        }
    }

    /** One new sequence for each of tenants 1 .. count. */
    private static List<DecoderTestSupport.Cache.Sequence> sequencesOf(int count) {
        List<DecoderTestSupport.Cache.Sequence> sequences = new ArrayList<>();
        for (int tenant = 1; tenant <= count; tenant++) {
            sequences.add(new DecoderTestSupport.Cache.Sequence(tenant));
        }
        return sequences;
    }

    /** cuProfilerStart / cuProfilerStop of the driver (the range ncu --profile-from-start off profiles). */
    private static void cudaProfiler(String function) {
        try (Arena arena = Arena.ofConfined()) {
            SymbolLookup driver = SymbolLookup.libraryLookup("libcuda.so.1", arena);
            MethodHandle handle = Linker.nativeLinker().downcallHandle(driver.find(function)
                    .orElseThrow(() -> new IllegalStateException("libcuda.so.1 has no " + function)), FunctionDescriptor.of(ValueLayout.JAVA_INT));
            int status = (int) handle.invokeExact();
            if (status != 0) {
                throw new IllegalStateException(function + " returned CUresult " + status);
            }
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable e) {
            throw new IllegalStateException(function + " failed", e);
        }
    }

    /** The base's synthetic tensors (seeded) and their bytes. */
    private record BaseModel(List<DecoderSpec.LayerWeights> weights, Tensor embedding, Tensor lmHead, Tensor finalNorm, long bytes) {
    }

    private BaseModel baseModel(Arena arena) {
        Synthetic base = new Synthetic(arena, seed);
        List<DecoderSpec.LayerWeights> weights = base.layers(layers);
        Tensor embedding = base.f16("model.embed_tokens.weight", (long) VOCAB * HIDDEN, 9, 11, VOCAB, HIDDEN);
        Tensor lmHead = base.f16("lm_head.weight", (long) VOCAB * HIDDEN, 7, 9, VOCAB, HIDDEN);
        Tensor finalNorm = base.norm("model.norm.weight");
        return new BaseModel(weights, embedding, lmHead, finalNorm, base.bytes);
    }

    private DecoderSpec spec(BaseModel base, int sequences, int tenantSlots) {
        return spec(base, sequences, tenantSlots, MAX_ROWS);
    }

    private DecoderSpec spec(BaseModel base, int sequences, int tenantSlots, int maxRows) {
        float[][] rotary = new RotaryEmbedding(10000.0, null).tables(MODEL_CONTEXT, HEAD_DIM);
        int blocksPerSequence = (PROMPT + warmup + steps + 2 + BLOCK - 1) / BLOCK;
        return new DecoderSpec(HIDDEN, INTERMEDIATE, HEADS, KV_HEADS, HEAD_DIM, VOCAB, MODEL_CONTEXT, 1e-5f, 0, rotary[0], rotary[1],
                base.embedding(), base.lmHead(), base.finalNorm(), base.weights(), maxRows, BLOCK, sequences * blocksPerSequence + 8,
                tenantSlots);
    }

    private void runSixteen(DecoderSpec spec) {
        long opened = System.nanoTime();
        try (CudaDecoderDevice device = new CudaDecoderDevice(backend, spec, true, CudaBackend.KvCachePrecision.MODEL)) {
            System.out.printf(Locale.ROOT, "device opened in %.1f s: %s path, %s KV cache%n", (System.nanoTime() - opened) / 1e9,
                    device.tensorCores() ? "tensor-core" : "exact", device.kvCacheDtype());
            if (!device.tensorCores()) {
                throw new IllegalStateException("the 7B-shape F16 model should take the tensor-core path");
            }
            long loading = System.nanoTime();
            loadTenants(device, spec, 16);
            System.out.printf(Locale.ROOT, "16 tenants made and loaded in %.1f s%n", (System.nanoTime() - loading) / 1e9);
            Buffers buffers = new Buffers(device, spec);
            DecoderTestSupport.Cache cache = new DecoderTestSupport.Cache(spec, seed);
            SplittableRandom random = new SplittableRandom(seed ^ 0xA11CE);

            // (e) prefill: a warm-up prompt of 64 tokens (the prefill products' first launches), then 16 prompts of 256 tokens
            prefill(device, buffers, cache, List.of(new DecoderTestSupport.Cache.Sequence(0)), 64, random);
            List<DecoderTestSupport.Cache.Sequence> sequences = sequencesOf(16);
            double prefillMs = prefill(device, buffers, cache, sequences, PROMPT, random);
            double promptTokensPerSecond = 16.0 * PROMPT / (prefillMs / 1e3);
            System.out.printf(Locale.ROOT, "(e) prefill of 16 prompts x %d tokens: %.1f ms, %.0f prompt tokens/s%n", PROMPT, prefillMs,
                    promptTokensPerSecond);

            // (a) 16 tenants decoding
            Timing sixteen = decode(device, buffers, cache, sequences, random);
            Floor floor16 = floor(spec, 16, true, false, sixteen.averagePositions(), device);
            checkLogits(device, buffers, sequences.size());

            // (c) memory with the base and 16 tenants
            MemoryUse memory = device.memory();
            long used = memory.deviceTotal() - memory.deviceFree();
            System.out.printf(Locale.ROOT, "(c) memory: base %.2f GB, 16 tenants %.2f GB (%.3f GB each), KV cache %.2f GB (%s), workspace "
                            + "%.2f GB; device: %.2f GB used of %.2f GB (cudaMemGetInfo)%n", memory.baseBytes() / 1e9,
                    memory.tenantTotal() / 1e9, memory.tenantTotal() / 16e9, memory.kvCacheBytes() / 1e9, device.kvCacheDtype(),
                    memory.workspaceBytes() / 1e9, used / 1e9, memory.deviceTotal() / 1e9);

            // (b) the base alone at batch 1
            DecoderTestSupport.Cache.Sequence alone = new DecoderTestSupport.Cache.Sequence(0);
            prefill(device, buffers, cache, List.of(alone), PROMPT, random);
            Timing base = decode(device, buffers, cache, List.of(alone), random);
            Floor floorBase = floor(spec, 1, false, true, base.averagePositions(), device);

            double sixteenTokens = 16 / (sixteen.median() / 1e3);
            double separateTokens = 1 / (base.median() / 1e3);  // 16 models one after another: 16 tokens per 16 base steps
            table.add(row("(a) 16 tenants, 1 sequence each: step", sixteen, floor16, sixteenTokens, String.format(Locale.ROOT,
                    "%.2fx the tokens/s of 16 separate F16 models one after another (goals: within 1.3x of the floor, >= 5x)",
                    sixteenTokens / separateTokens)));
            table.add(row("(b) base alone, batch 1: step", base, floorBase, separateTokens, "goal: within 1.2x of the floor"));
            runWithoutPdl(device, buffers, cache, sequences, alone, random, sixteen, floor16, base, floorBase);
            table.add(String.format(Locale.ROOT, "| (c) memory, base + 16 tenants | %.2f GB (base %.2f + tenants %.2f) | KV %.2f GB %s, "
                            + "workspace %.2f GB | device used %.2f GB of %.2f (cudaMemGetInfo) | | goal: base + 16 tenants < 40 GB |",
                    (memory.baseBytes() + memory.tenantTotal()) / 1e9, memory.baseBytes() / 1e9, memory.tenantTotal() / 1e9,
                    memory.kvCacheBytes() / 1e9, device.kvCacheDtype(), memory.workspaceBytes() / 1e9, used / 1e9, memory.deviceTotal() / 1e9));
            table.add(String.format(Locale.ROOT, "| (e) prefill 16 x %d tokens | %.1f ms | %.0f prompt tokens/s | cuBLAS GEMMs of the base alone: %s | | "
                            + "one step per prompt; F32-accurate products: 4 tensor-core passes (2 parts x base + delta) against cuBLAS's 1 |", PROMPT,
                    prefillMs, promptTokensPerSecond, Double.isNaN(cublasPrefillMs) ? "not measured"
                            : String.format(Locale.ROOT, "%.1f ms, %.0f tokens/s (%.2fx ours)", cublasPrefillMs, 16.0 * PROMPT / (cublasPrefillMs / 1e3),
                            prefillMs / cublasPrefillMs)));
        }
    }

    /**
     * (f): (a) and (b) again, fresh sequences at the same positions, with every kernel waiting for the one before it to
     * finish (no programmatic dependent launch; graphs captured again): what the overlap of launches saves. The sequences
     * of (a) and (b) are released first; programmatic dependent launch is on again afterwards.
     */
    private void runWithoutPdl(CudaDecoderDevice device, Buffers buffers, DecoderTestSupport.Cache cache,
                               List<DecoderTestSupport.Cache.Sequence> sixteenSequences, DecoderTestSupport.Cache.Sequence baseSequence,
                               SplittableRandom random, Timing sixteen, Floor floor16, Timing base, Floor floorBase) {
        if (!CudaDecoderDevice.programmaticDependentLaunchRequested()) {
            table.add("| (f) without programmatic dependent launch | not run | | | | -Dbitdelta.cuda.pdl=false: (a) and (b) ran without it |");
            return;
        }
        sixteenSequences.forEach(cache::release);
        cache.release(baseSequence);
        Timing sixteenSerial;
        Timing baseSerial;
        step.check(step.setProgrammaticDependentLaunch(false), "turning programmatic dependent launch off");
        try {
            device.releaseGraphs();
            List<DecoderTestSupport.Cache.Sequence> again = sequencesOf(16);
            prefill(device, buffers, cache, again, PROMPT, random);
            sixteenSerial = decode(device, buffers, cache, again, random);
            DecoderTestSupport.Cache.Sequence aloneAgain = new DecoderTestSupport.Cache.Sequence(0);
            prefill(device, buffers, cache, List.of(aloneAgain), PROMPT, random);
            baseSerial = decode(device, buffers, cache, List.of(aloneAgain), random);
        } catch (RuntimeException e) {
            // The setting goes back on before the failure propagates; a failure of that is attached, not thrown instead.
            try {
                step.check(step.setProgrammaticDependentLaunch(true), "turning programmatic dependent launch on");
            } catch (RuntimeException restore) {
                e.addSuppressed(restore);
            }
            throw e;
        }
        step.check(step.setProgrammaticDependentLaunch(true), "turning programmatic dependent launch on");
        device.releaseGraphs();
        table.add(row("(f) 16 tenants, without programmatic dependent launch", sixteenSerial, floor16, 16 / (sixteenSerial.median() / 1e3),
                String.format(Locale.ROOT, "%.3f ms more than (a): every kernel waits for the one before to finish (below compute "
                        + "capability 9.0 no launch overlaps: the same as (a))", sixteenSerial.median() - sixteen.median())));
        table.add(row("(f) base alone, without programmatic dependent launch", baseSerial, floorBase, 1 / (baseSerial.median() / 1e3),
                String.format(Locale.ROOT, "%.3f ms more than (b)", baseSerial.median() - base.median())));
    }

    /**
     * The 16 tenants' prompts of 256 tokens prefilled in one step of 4096 rows (16 segments: the base product reads W
     * once for all of them), after one such step of 16 x 64 tokens to warm up; the median of three, each with fresh
     * sequences (the cache's blocks returned between).
     */
    private void runBatchedPrefill(DecoderSpec spec) {
        try (CudaDecoderDevice device = new CudaDecoderDevice(backend, spec, true, CudaBackend.KvCachePrecision.MODEL)) {
            loadTenants(device, spec, 16);
            Buffers buffers = new Buffers(device, spec);
            DecoderTestSupport.Cache cache = new DecoderTestSupport.Cache(spec, seed);
            SplittableRandom random = new SplittableRandom(seed ^ 0xBA7C4);
            List<DecoderTestSupport.Cache.Sequence> warm = sequencesOf(16);
            prefillTogether(device, buffers, cache, warm, 64, random);
            warm.forEach(cache::release);
            double[] times = new double[3];
            for (int i = 0; i < times.length; i++) {
                List<DecoderTestSupport.Cache.Sequence> sequences = sequencesOf(16);
                times[i] = prefillTogether(device, buffers, cache, sequences, PROMPT, random);
                sequences.forEach(cache::release);
            }
            Arrays.sort(times);
            double prefillMs = times[1];
            double promptTokensPerSecond = 16.0 * PROMPT / (prefillMs / 1e3);
            System.out.printf(Locale.ROOT, "(e) prefill of 16 prompts x %d tokens in one step: %.1f ms (of %.1f, %.1f, %.1f), %.0f prompt tokens/s%n",
                    PROMPT, prefillMs, times[0], times[1], times[2], promptTokensPerSecond);
            table.add(String.format(Locale.ROOT, "| (e) prefill 16 x %d tokens in one step | %.1f ms (median of 3) | %.0f prompt tokens/s | cuBLAS GEMMs of "
                            + "the base alone: %s | | one step of %d rows, 16 tenants' segments |", PROMPT, prefillMs, promptTokensPerSecond,
                    Double.isNaN(cublasPrefillMs) ? "not measured" : String.format(Locale.ROOT, "%.1f ms (%.2fx ours)", cublasPrefillMs,
                            prefillMs / cublasPrefillMs), 16 * PROMPT));
        }
    }

    /** One step that prefills {@code length} random tokens into every sequence; its GPU time in ms. */
    private double prefillTogether(CudaDecoderDevice device, Buffers buffers, DecoderTestSupport.Cache cache,
                                   List<DecoderTestSupport.Cache.Sequence> sequences, int length, SplittableRandom random) {
        List<int[]> tokens = new ArrayList<>();
        for (int s = 0; s < sequences.size(); s++) {
            tokens.add(DecoderTestSupport.randomTokens(random, length, VOCAB));
        }
        StepInputs inputs = cache.step(sequences, tokens, false);
        return timed(device, "the batched prefill", () -> device.run(inputs, () -> DecoderTestSupport.decoderStep(device, buffers.lookup())));
    }

    private void runTable(DecoderSpec spec) {
        try (CudaDecoderDevice device = new CudaDecoderDevice(backend, spec, true, CudaBackend.KvCachePrecision.MODEL)) {
            Buffers buffers = new Buffers(device, spec);
            SplittableRandom random = new SplittableRandom(seed ^ 0x7AB1E);
            int loaded = 0;
            for (int tenants : new int[]{1, 4, 16, 32, 64}) {
                boolean full = tenants <= 32;
                if (!full && loaded > 0) {
                    for (int slot = 1; slot <= loaded; slot++) {
                        device.unloadTenant(slot);
                    }
                    loaded = 0;
                }
                while (loaded < tenants) {
                    loaded++;
                    loadTenant(device, spec, loaded, full);
                }
                DecoderTestSupport.Cache cache = new DecoderTestSupport.Cache(spec, seed + tenants);
                List<DecoderTestSupport.Cache.Sequence> sequences = sequencesOf(tenants);
                prefill(device, buffers, cache, sequences, PROMPT, random);
                Timing timing = decode(device, buffers, cache, sequences, random);
                Floor floor = floor(spec, tenants, full, false, timing.averagePositions(), device);
                MemoryUse memory = device.memory();
                table.add(row("(d) " + tenants + " tenants" + (full ? "" : " (deltas and norms only)"), timing, floor,
                        tenants / (timing.median() / 1e3), String.format(Locale.ROOT, "tenants %.2f GB, device used %.2f GB",
                                memory.tenantTotal() / 1e9, (memory.deviceTotal() - memory.deviceFree()) / 1e9)));
            }
        }
    }

    // ---------------------------------------------------------------- steps

    /** The nine step buffers of the model code's DecoderStep, [maxRows, width]. */
    private record Buffers(Map<String, Activations> byName) {
        Buffers(CudaDecoderDevice device, DecoderSpec spec) {
            this(new LinkedHashMap<>());
            int rows = spec.maxRows();
            byName.put("residual", device.allocate("residual", rows, spec.hiddenSize()));
            byName.put("normed", device.allocate("normed", rows, spec.hiddenSize()));
            byName.put("qkv", device.allocate("qkv", rows, spec.width(Projection.Group.QKV)));
            byName.put("attended", device.allocate("attended", rows, spec.queryWidth()));
            byName.put("gateUp", device.allocate("gateUp", rows, spec.width(Projection.Group.GATE_UP)));
            byName.put("feedForward", device.allocate("feedForward", rows, spec.intermediateSize()));
            byName.put("outputRows", device.allocate("outputRows", rows, spec.hiddenSize()));
            byName.put("outputNormed", device.allocate("outputNormed", rows, spec.hiddenSize()));
            byName.put("logits", device.allocate("logits", rows, spec.vocabularySize()));
        }

        Function<String, Activations> lookup() {
            return byName::get;
        }
    }

    /** Prefills {@code length} random tokens into each sequence, one sequence per step; the GPU time of all, in ms. */
    private double prefill(CudaDecoderDevice device, Buffers buffers, DecoderTestSupport.Cache cache,
                           List<DecoderTestSupport.Cache.Sequence> sequences, int length, SplittableRandom random) {
        return timed(device, "the prefill", () -> {
            for (DecoderTestSupport.Cache.Sequence sequence : sequences) {
                StepInputs inputs = cache.step(List.of(sequence), List.of(DecoderTestSupport.randomTokens(random, length, VOCAB)), false);
                device.run(inputs, () -> DecoderTestSupport.decoderStep(device, buffers.lookup()));
            }
        });
    }

    /** The GPU time in ms of what {@code work} enqueues on the device's stream, between two timer events. */
    private double timed(CudaDecoderDevice device, String what, Runnable work) {
        long start = step.timerCreate();
        long end = step.timerCreate();
        try {
            step.check(step.eventRecord(start, device.stream()), "recording the start of " + what);
            work.run();
            step.check(step.eventRecord(end, device.stream()), "recording the end of " + what);
            return step.timerElapsed(start, end);
        } finally {
            step.eventDestroy(start);
            step.eventDestroy(end);
        }
    }

    /** Per-step GPU times (ms) of the timed steps and the mean number of positions a sequence attended to. */
    private record Timing(double[] milliseconds, double averagePositions) {
        double median() {
            double[] sorted = milliseconds.clone();
            Arrays.sort(sorted);
            return sorted[sorted.length / 2];
        }

        double minimum() {
            return Arrays.stream(milliseconds).min().orElseThrow();
        }
    }

    /**
     * Decode steps of one random token per sequence (the tokens are not sampled: the next step does not wait for this
     * one), enqueued back to back, each between two timer events: the GPU's time of each step, its input upload included.
     */
    private Timing decode(CudaDecoderDevice device, Buffers buffers, DecoderTestSupport.Cache cache,
                          List<DecoderTestSupport.Cache.Sequence> sequences, SplittableRandom random) {
        int total = warmup + steps;
        long[] events = new long[total + 1];
        double positions = 0;
        try {
            for (int i = 0; i <= total; i++) {
                events[i] = step.timerCreate();
            }
            step.check(step.eventRecord(events[0], device.stream()), "recording a step event");
            for (int i = 0; i < total; i++) {
                if (i >= warmup) {
                    for (DecoderTestSupport.Cache.Sequence sequence : sequences) {
                        positions += sequence.length + 1;
                    }
                }
                decodeOnce(device, buffers, cache, sequences, random);
                step.check(step.eventRecord(events[i + 1], device.stream()), "recording a step event");
            }
            double[] milliseconds = new double[steps];
            for (int i = 0; i < steps; i++) {
                milliseconds[i] = step.timerElapsed(events[warmup + i], events[warmup + i + 1]);
            }
            return new Timing(milliseconds, positions / ((double) steps * sequences.size()));
        } finally {
            for (long event : events) {
                if (event != 0) {
                    step.eventDestroy(event);
                }
            }
        }
    }

    /** The last step's logits are finite (a broken kernel shows up as NaN or infinity). */
    private void checkLogits(CudaDecoderDevice device, Buffers buffers, int rows) {
        float[] logits = new float[rows * VOCAB];
        device.read(buffers.byName().get("logits"), rows, logits);
        long bad = IntStream.range(0, logits.length).filter(i -> !Float.isFinite(logits[i])).count();
        double sum = 0;
        for (float value : logits) {
            sum += Math.abs(value);
        }
        System.out.printf(Locale.ROOT, "logits of the last step: %d of %d not finite, mean |logit| %.3f%n", bad, logits.length,
                sum / logits.length);
        if (bad > 0) {
            throw new IllegalStateException(bad + " logits are not finite");
        }
    }

    // ---------------------------------------------------------------- floors

    /** Bytes a step must read, by part, and its time at the copy bandwidth. */
    private record Floor(long base, long deltas, long heads, long kv, double milliseconds) {
        long total() {
            return base + deltas + heads + kv;
        }
    }

    /**
     * The floor of a decode step with {@code tenants} tenants' rows (or, {@code baseRow}, one base row): every base
     * projection weight once, each tenant's packed signs and per-row scales (device layout, stacked q|k|v and gate|up),
     * each tenant's lm_head (or the base's once), and each sequence's keys and values at its positions.
     */
    private Floor floor(DecoderSpec spec, int tenants, boolean ownHeads, boolean baseRow, double averagePositions, CudaDecoderDevice device) {
        long base = 0;
        long perTenant = 0;
        for (int layer = 0; layer < spec.layerCount(); layer++) {
            for (Projection projection : Projection.values()) {
                base += spec.layers().get(layer).weight(projection).byteSize();
            }
            for (Projection.Group group : Projection.Group.values()) {
                long rows = spec.width(group);
                long columns = switch (group) {
                    case QKV, GATE_UP -> spec.hiddenSize();
                    case ATTENTION_OUTPUT -> spec.queryWidth();
                    case FEED_FORWARD_OUTPUT -> spec.intermediateSize();
                };
                perTenant += backend.library().signsDeviceBytes(rows, columns) + 4 * rows;
            }
        }
        long head = (long) VOCAB * HIDDEN * 2;
        long deltas = baseRow ? 0 : tenants * perTenant;
        long heads = baseRow || !ownHeads ? head : tenants * head;
        int sequences = baseRow ? 1 : tenants;
        int kvBytes = device.kvCacheDtype().equals("F32") ? 4 : 2;
        long kv = Math.round(averagePositions * sequences * spec.layerCount() * 2L * spec.keyValueWidth() * kvBytes);
        long total = base + deltas + heads + kv;
        return new Floor(base, deltas, heads, kv, total / bandwidth * 1e3);
    }

    private String row(String what, Timing timing, Floor floor, double tokensPerSecond, String note) {
        String line = String.format(Locale.ROOT, "| %s | %.3f ms (min %.3f) | floor %.3f ms (%.2f GB: base %.2f, deltas %.2f, heads %.2f, KV %.2f) | "
                        + "%.2fx floor | %.0f tokens/s | %s |", what, timing.median(), timing.minimum(), floor.milliseconds(), floor.total() / 1e9,
                floor.base() / 1e9, floor.deltas() / 1e9, floor.heads() / 1e9, floor.kv() / 1e9, timing.median() / floor.milliseconds(),
                tokensPerSecond, note);
        System.out.println(line);
        return line;
    }

    private void printTable() {
        System.out.println();
        System.out.printf(Locale.ROOT, "== StepBenchmark: %s, driver %s, copy bandwidth %.0f GB/s, Llama-2-7B shape (%d layers), F16 weights, "
                        + "F16 KV cache, contexts of %d prompt tokens, medians of %d steps after %d%n", backend.describe(), driver,
                bandwidth / 1e9, layers, PROMPT, steps, warmup);
        System.out.println("| what | time | floor | x floor | tokens/s | note |");
        System.out.println("| --- | --- | --- | --- | --- | --- |");
        table.forEach(System.out::println);
    }

    // ---------------------------------------------------------------- synthetic weights and tenants

    private void loadTenant(CudaDecoderDevice device, DecoderSpec spec, int slot, boolean full) {
        try (Arena arena = Arena.ofShared()) {
            Synthetic synthetic = new Synthetic(arena, seed * 1_000_003L + slot);
            BinaryDelta[][] deltas = new BinaryDelta[spec.layerCount()][Projection.values().length];
            Tensor[] inputNorms = new Tensor[spec.layerCount()];
            Tensor[] postNorms = new Tensor[spec.layerCount()];
            for (int layer = 0; layer < spec.layerCount(); layer++) {
                for (Projection projection : Projection.values()) {
                    Tensor weight = spec.layers().get(layer).weight(projection);
                    deltas[layer][projection.ordinal()] = synthetic.delta("t" + slot + "." + projection.weightName(layer),
                            (int) weight.dimension(0), (int) weight.dimension(1));
                }
                inputNorms[layer] = synthetic.norm("t" + slot + ".in" + layer);
                postNorms[layer] = synthetic.norm("t" + slot + ".post" + layer);
            }
            Tensor embedding = full ? synthetic.f16("t" + slot + ".embed", (long) VOCAB * HIDDEN, 9, 11, VOCAB, HIDDEN) : null;
            Tensor lmHead = full ? synthetic.f16("t" + slot + ".lm_head", (long) VOCAB * HIDDEN, 7, 9, VOCAB, HIDDEN) : null;
            device.loadTenant(slot, new TenantWeights("tenant " + slot, deltas, embedding, lmHead, synthetic.norm("t" + slot + ".norm"),
                    inputNorms, postNorms));
        }
    }

    /**
     * Seeded synthetic tensors in native memory, filled on all cores: F16 values with a random sign and mantissa and an
     * exponent field drawn from a range (magnitudes between powers of two), sign bytes at random, norms near 1.
     */
    private static final class Synthetic {
        private static final long CHUNK = 1L << 21;  // elements per parallel piece
        private final Arena arena;
        private final long seed;
        private long serial;
        long bytes;

        Synthetic(Arena arena, long seed) {
            this.arena = arena;
            this.seed = seed;
        }

        private long nextSeed() {
            return seed * 0x9E3779B97F4A7C15L + (++serial) * 0xBF58476D1CE4E5B9L;
        }

        /** F16 values with exponent fields low .. high (15 is 2^0): magnitudes 2^(low - 15) .. 2^(high - 14). */
        Tensor f16(String name, long count, int low, int high, long... shape) {
            MemorySegment data = arena.allocate(2 * count, 64);
            long tensorSeed = nextSeed();
            long pieces = (count + CHUNK - 1) / CHUNK;
            IntStream.range(0, (int) pieces).parallel().forEach(piece -> {
                SplittableRandom random = new SplittableRandom(tensorSeed + piece * 0x632BE59BD9B4E019L);
                long first = piece * CHUNK;
                long last = Math.min(count, first + CHUNK);
                for (long i = first; i < last; i++) {
                    int bits = random.nextInt();
                    int exponent = low + Math.floorMod(bits >>> 11, high - low + 1);
                    data.set(SHORT, 2 * i, (short) ((bits & 0x8000) | (exponent << 10) | (bits & 0x3FF)));
                }
            });
            bytes += 2 * count;
            return new Tensor(name, DType.F16, shape, data);
        }

        /** Norm weights of 0.5 .. 1 (positive). */
        Tensor norm(String name) {
            MemorySegment data = arena.allocate(2L * HIDDEN, 64);
            SplittableRandom random = new SplittableRandom(nextSeed());
            for (int i = 0; i < HIDDEN; i++) {
                data.set(SHORT, 2L * i, (short) ((14 << 10) | random.nextInt(1 << 10)));
            }
            bytes += 2L * HIDDEN;
            return new Tensor(name, DType.F16, new long[]{HIDDEN}, data);
        }

        /** Random packed signs [rows, cols / 8] and per-row scales of a fine-tune's size of change. */
        BinaryDelta delta(String name, int rows, int columns) {
            long count = (long) rows * BinaryDelta.bytesPerRow(columns);
            MemorySegment signs = arena.allocate(count, 64);
            long tensorSeed = nextSeed();
            long pieces = (count + 8 * CHUNK - 1) / (8 * CHUNK);
            IntStream.range(0, (int) pieces).parallel().forEach(piece -> {
                SplittableRandom random = new SplittableRandom(tensorSeed + piece * 0x632BE59BD9B4E019L);
                long first = piece * 8 * CHUNK;
                long last = Math.min(count, first + 8 * CHUNK);
                long i = first;
                for (; i + 8 <= last; i += 8) {
                    signs.set(ValueLayout.JAVA_LONG_UNALIGNED, i, random.nextLong());
                }
                for (; i < last; i++) {
                    signs.set(ValueLayout.JAVA_BYTE, i, (byte) random.nextInt());
                }
            });
            SplittableRandom random = new SplittableRandom(tensorSeed);
            float[] scales = new float[rows];
            for (int row = 0; row < rows; row++) {
                scales[row] = (float) (0.0005 + 0.001 * random.nextDouble());
            }
            bytes += count;
            return new BinaryDelta(name, rows, columns, signs, scales);
        }

        List<DecoderSpec.LayerWeights> layers(int count) {
            int queryWidth = HEADS * HEAD_DIM;
            int keyValueWidth = KV_HEADS * HEAD_DIM;
            List<DecoderSpec.LayerWeights> layers = new ArrayList<>();
            for (int layer = 0; layer < count; layer++) {
                String prefix = "model.layers." + layer + ".";
                layers.add(new DecoderSpec.LayerWeights(norm(prefix + "input_layernorm.weight"), norm(prefix + "post_attention_layernorm.weight"),
                        weight(prefix + "q", queryWidth, HIDDEN), weight(prefix + "k", keyValueWidth, HIDDEN),
                        weight(prefix + "v", keyValueWidth, HIDDEN), weight(prefix + "o", HIDDEN, queryWidth),
                        weight(prefix + "gate", INTERMEDIATE, HIDDEN), weight(prefix + "up", INTERMEDIATE, HIDDEN),
                        weight(prefix + "down", HIDDEN, INTERMEDIATE)));
            }
            return layers;
        }

        /** A projection weight of magnitudes 2^-9 .. 2^-6 (about 1 / sqrt(K) for K = 4096 .. 11008). */
        private Tensor weight(String name, int rows, int columns) {
            return f16(name, (long) rows * columns, 6, 8, rows, columns);
        }
    }
}
