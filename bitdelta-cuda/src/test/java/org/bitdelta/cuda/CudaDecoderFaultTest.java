package org.bitdelta.cuda;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.cuda.DecoderTestSupport.Cache;
import org.bitdelta.cuda.DecoderTestSupport.Shape;
import org.bitdelta.cuda.DecoderTestSupport.TenantKind;
import org.bitdelta.cuda.internal.CudaException;
import org.bitdelta.cuda.internal.CudaLibrary;
import org.bitdelta.cuda.internal.DeviceScope;
import org.bitdelta.cuda.internal.StepLibrary;
import org.bitdelta.internal.cpu.ScalarKernels;
import org.bitdelta.internal.cpu.VectorCpuBackend;
import org.bitdelta.internal.model.Decoder;
import org.bitdelta.internal.model.DecoderOptions;
import org.bitdelta.internal.model.ModelLoader;
import org.bitdelta.internal.model.Sequence;
import org.bitdelta.spi.Activations;
import org.bitdelta.spi.DecoderSpec;
import org.bitdelta.spi.MemoryUse;
import org.bitdelta.spi.StepInputs;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Faults of the GPU decoder: a tenant over the budget, or one that does not fit in GPU memory, fails alone while the
 * other sequences of the step go on; a removed tenant's device memory is freed (its accounting and cudaMemGetInfo);
 * malformed step inputs are refused before any launch and leave the device usable; the C ABI refuses bad shapes with
 * a message; the backend's product caches never serve one object's data for another at the same address.
 */
class CudaDecoderFaultTest {
    private static final long MIB = 1L << 20;
    /** F32 KV caches: the tests below compare greedy tokens with the CPU's (CudaDecoderModelTest says why). */
    @RegisterExtension
    static final GpuResources resources = new GpuResources(CudaBackend.KvCachePrecision.F32);
    private static CudaBackend gpu;
    private static VectorCpuBackend cpu;

    @BeforeAll
    static void open() {
        gpu = resources.backend();
        cpu = resources.open(VectorCpuBackend::new);
    }

    /** Greedy tokens of one sequence through Decoder.step. */
    private static int[] greedy(Decoder decoder, String tenant, int[] prompt, int count) {
        try (Sequence sequence = decoder.newSequence(tenant)) {
            int[] tokens = new int[count];
            int[] next = prompt;
            for (int i = 0; i < count; i++) {
                Decoder.StepResult result = decoder.step(List.of(sequence), List.of(next), List.of(Decoder.TokenSampling.greedy()));
                assertNull(result.failures().getFirst(), "tenant " + tenant);
                tokens[i] = result.tokens()[0];
                next = new int[]{tokens[i]};
            }
            return tokens;
        }
    }

    @Test
    void aTenantOverTheBudgetFailsAloneWhileTheOthersRun() {
        Path base = DecoderTestSupport.bundledModel("stories260K");
        try (DeltaModel alice = BitDelta.compress(base, DecoderTestSupport.bundledModel("stories260K-ft-alice"), CompressOptions.defaults().backend(cpu));
             DeltaModel shakespeare = BitDelta.compress(base, DecoderTestSupport.bundledModel("stories260K-ft-shakespeare"),
                     CompressOptions.defaults().backend(cpu));
             Decoder reference = Decoder.load(base, cpu, false)) {
            long aliceBytes = alice.tensorBytes();
            // Room for one of the two tenants at a time.
            DecoderOptions options = DecoderOptions.defaults(512).withTenantBudgetBytes(aliceBytes * 3 / 2);
            try (Decoder decoder = Decoder.load(base, gpu, false, options)) {
                addBoth(decoder, alice, shakespeare);
                addBoth(reference, alice, shakespeare);
                int[] prompt = {1};
                try (Sequence first = decoder.newSequence("alice"); Sequence second = decoder.newSequence("shakespeare")) {
                    Decoder.StepResult result = decoder.step(List.of(first, second), List.of(prompt, prompt),
                            List.of(Decoder.TokenSampling.greedy(), Decoder.TokenSampling.greedy()));
                    assertNull(result.failures().get(0), "alice runs");
                    assertEquals(greedy(reference, "alice", prompt, 1)[0], result.tokens()[0], "alice's token");
                    BitDeltaException refused = result.failures().get(1);
                    assertNotNull(refused, "shakespeare does not fit the budget while alice's sequence is open");
                    assertTrue(refused.getMessage().contains("does not fit"), refused.getMessage());
                    assertEquals(-1, result.tokens()[1]);
                }
                // With alice's sequence closed, shakespeare evicts it and runs like the reference.
                assertArrayEquals(greedy(reference, "shakespeare", prompt, 20), greedy(decoder, "shakespeare", prompt, 20));
                MemoryUse memory = decoder.memory();
                assertEquals(1, memory.tenantBytes().size(), "alice was evicted for shakespeare: " + memory.tenantBytes());
            }
        }
    }

    private static void addBoth(Decoder decoder, DeltaModel alice, DeltaModel shakespeare) {
        DecoderTestSupport.addTenant(decoder, "alice", alice);
        DecoderTestSupport.addTenant(decoder, "shakespeare", shakespeare);
    }

    /**
     * A tenant whose upload cannot fit in GPU memory (the memory taken by a hog first) fails alone with a clear
     * message; the device keeps serving the others and loads the tenant once memory is back; removing a tenant
     * frees its memory (accounting and cudaMemGetInfo).
     */
    @Test
    void aTenantThatDoesNotFitInGpuMemoryFailsAloneAndRemovalFreesItsMemory(@TempDir Path folder) throws IOException {
        long seed = DecoderTestSupport.seed("GPU memory faults");
        int vocabulary = 1 << 17;  // a tenant's own F32 embedding and lm_head: 2 x 48 MiB
        CudaDecoderModelTest.writeLlama(folder, DType.F16, vocabulary, seed);
        DecoderOptions options = DecoderOptions.defaults(160).withMaxRows(64);
        try (Decoder decoder = Decoder.load(folder, gpu, false, options); Decoder reference = Decoder.load(folder, cpu, false, options)) {
            Tensor embedding = decoder.weights().tensor(ModelLoader.EMBEDDING);
            Tensor lmHead = decoder.weights().tensor(ModelLoader.LM_HEAD);
            Map<String, Tensor> big = Map.of(
                    ModelLoader.EMBEDDING, asF32(embedding, 1.1f),
                    ModelLoader.LM_HEAD, asF32(lmHead, 0.9f));
            Map<String, Tensor> small = Map.of(ModelLoader.FINAL_NORM, DecoderTestSupport.randomNorm(new SplittableRandom(seed),
                    ModelLoader.FINAL_NORM, DType.F16, 96));
            for (Decoder each : List.of(decoder, reference)) {
                each.addTenant("small", "small", Map.of(), small);
                each.addTenant("big", "big", Map.of(), big);
            }
            int[] prompt = {1, 5, 9};
            int[] smallExpected = greedy(reference, "small", prompt, 8);
            int[] bigExpected = greedy(reference, "big", prompt, 8);
            assertArrayEquals(smallExpected, greedy(decoder, "small", prompt, 8), "small tenant before the hog");

            CudaLibrary library = gpu.library();
            long freeBefore = library.memoryInfo()[0];
            try (DeviceScope hog = new DeviceScope(library)) {
                long headroom = 24 * MIB;  // for the runtime: the step itself allocates nothing
                long free;
                while ((free = library.memoryInfo()[0]) > headroom + 2 * MIB) {
                    long chunk = Math.min(1L << 30, (free - headroom) / (2 * MIB) * (2 * MIB));
                    if (chunk <= 0) {
                        break;
                    }
                    try {
                        hog.allocate(chunk, "memory hog");
                    } catch (CudaException e) {
                        break;  // fragmentation: what is left is what the test needs
                    }
                }
                System.out.println("  hog holds " + hog.liveBytes() / MIB + " MiB, " + library.memoryInfo()[0] / MIB + " MiB free");
                try (Sequence smallSequence = decoder.newSequence("small"); Sequence bigSequence = decoder.newSequence("big")) {
                    Decoder.StepResult result = decoder.step(List.of(smallSequence, bigSequence), List.of(prompt, prompt),
                            List.of(Decoder.TokenSampling.greedy(), Decoder.TokenSampling.greedy()));
                    assertNull(result.failures().get(0), "the small tenant runs");
                    assertEquals(smallExpected[0], result.tokens()[0], "the small tenant's token");
                    BitDeltaException refused = result.failures().get(1);
                    assertNotNull(refused, "the big tenant cannot be uploaded");
                    assertTrue(refused.getMessage().contains("does not fit") && refused.getMessage().contains("big"), refused.getMessage());
                    System.out.println("  refused: " + refused.getMessage());
                    assertEquals(-1, decoder.tenantMemory().stream().filter(t -> t.name().equals("big")).findFirst().orElseThrow().slot());
                }
            }
            // Memory is back: the big tenant loads and serves like the reference.
            assertArrayEquals(bigExpected, greedy(decoder, "big", prompt, 8), "big tenant once memory is free");
            MemoryUse loaded = decoder.memory();
            long bigBytes = decoder.tenantMemory().stream().filter(t -> t.name().equals("big")).findFirst().orElseThrow().deviceBytes();
            assertTrue(bigBytes >= embedding.elementCount() * 8, "the big tenant holds its two F32 tables: " + bigBytes);
            assertTrue(freeBefore - loaded.deviceFree() >= bigBytes - 4 * MIB,
                    "cudaMemGetInfo: " + (freeBefore - loaded.deviceFree()) + " bytes fewer free, the tenant holds " + bigBytes);
            decoder.removeTenant("big");
            MemoryUse removed = decoder.memory();
            assertEquals(loaded.tenantTotal() - bigBytes, removed.tenantTotal(), "the accounting drops the removed tenant");
            assertTrue(removed.deviceFree() >= loaded.deviceFree() + bigBytes - 4 * MIB,
                    "cudaMemGetInfo after removal: " + removed.deviceFree() + " free, was " + loaded.deviceFree() + " with " + bigBytes + " held");
            assertArrayEquals(smallExpected, greedy(decoder, "small", prompt, 8), "the small tenant still serves");
        }
    }

    private static Tensor asF32(Tensor tensor, float factor) {
        float[] values = tensor.toFloatArray();
        for (int i = 0; i < values.length; i++) {
            values[i] *= factor;
        }
        return DecoderTestSupport.tensor(tensor.name(), DType.F32, values, tensor.shape());
    }

    @Test
    void malformedStepInputsAreRefusedBeforeAnyLaunchAndTheDeviceStaysUsable() {
        long seed = DecoderTestSupport.seed("malformed inputs");
        Shape shape = new Shape(DType.F16, 64, 96, 4, 2, 16, 50, 1, 32, 0, false, 8, 4, 16, 3);
        DecoderSpec spec = DecoderTestSupport.spec(shape, seed);
        try (CudaDecoderDevice device = new CudaDecoderDevice(gpu, spec, true)) {
            device.loadTenant(1, DecoderTestSupport.tenant(spec, "t", new TenantKind(1, true, true, true, true, DType.F16), seed));
            Activations residual = device.allocate("residual", spec.maxRows(), spec.hiddenSize());
            Cache cache = new Cache(spec, seed);
            Cache.Sequence sequence = new Cache.Sequence(1);
            StepInputs good = cache.step(List.of(sequence), List.of(new int[]{3, 4}), true);
            List<StepInputs> bad = List.of(
                    with(good, "token", 50), with(good, "slot", 2), with(good, "slot", -1), with(good, "position", 32),
                    with(good, "cacheSlot", 64), with(good, "block", 16), with(good, "outputRow", 2), with(good, "rows", 9));
            for (StepInputs inputs : bad) {
                assertThrows(IllegalArgumentException.class, () -> device.run(inputs, () -> device.embed(residual)));
            }
            device.run(good, () -> device.embed(residual));
            float[] values = new float[2 * spec.hiddenSize()];
            device.read(residual, 2, values);
            // Tenant 1 replaces the embedding: rows are its rows 3 and 4.
            Tensor table = DecoderTestSupport.tenant(spec, "t", new TenantKind(1, true, true, true, true, DType.F16), seed).embedding();
            for (int k = 0; k < spec.hiddenSize(); k++) {
                assertEquals(table.getFloat(3L * spec.hiddenSize() + k), values[k]);
                assertEquals(table.getFloat(4L * spec.hiddenSize() + k), values[spec.hiddenSize() + k]);
            }
            assertThrows(IllegalStateException.class, () -> device.embed(residual), "operations outside run() are refused");
        }
    }

    /** {@code good} with one field broken. */
    private static StepInputs with(StepInputs good, String field, int value) {
        int[] tokens = good.tokens().clone();
        int[] slots = good.slots().clone();
        int[] positions = good.positions().clone();
        int[] cacheSlots = good.cacheSlots().clone();
        int[] tables = good.blockTables().clone();
        int[] outputs = good.outputRowIndex().clone();
        int rows = good.rows();
        switch (field) {
            case "token" -> tokens[0] = value;
            case "slot" -> slots[1] = value;
            case "position" -> positions[1] = value;
            case "cacheSlot" -> cacheSlots[0] = value;
            case "block" -> tables[0] = value;
            case "outputRow" -> outputs[1] = value;
            case "rows" -> rows = value;
            default -> throw new IllegalArgumentException(field);
        }
        return new StepInputs(rows, tokens, slots, positions, good.sequenceOfRow(), cacheSlots, good.sequences(), good.blocksPerSequence(),
                tables, good.outputRows(), outputs);
    }

    @Test
    void theStepAbiRefusesBadShapesWithAMessage() {
        StepLibrary step = StepLibrary.load(gpu.library());
        int status = step.project(1, 1, 1, CudaLibrary.DTYPE_F16, 1, 1, 1, 1, 2, 0, 64, false, 0);
        assertEquals(2, status, "BD_ERR_BAD_SHAPE");
        assertTrue(step.lastError().contains("bd_step_project") && step.lastError().contains("[0, 64]"), step.lastError());
        assertEquals(3, step.project(1, 1, 1, 7, 1, 1, 1, 1, 2, 8, 8, false, 0), "BD_ERR_BAD_DTYPE");
        assertEquals(1, step.embed(0, 1, 1, 1, 1, 1, 8, 1, 0), "BD_ERR_NULL_POINTER");
        assertEquals(2, step.attention(1, 1, 1, 1, 1, 1, 1, CudaLibrary.DTYPE_F32, 1, 1, 4, 4, 4, 1024, 0, 1f, 1, 0),
                "head dimension over 512");
        CudaException failure = step.failure(2, "a call");
        assertTrue(failure.getMessage().contains("head_dim 1024"), failure.getMessage());
        assertEquals(3, step.attention(1, 1, 1, 1, 1, 1, 1, 9, 1, 1, 4, 4, 4, 64, 0, 1f, 1, 0), "BD_ERR_BAD_DTYPE: KV dtype code 9");
        // The tensor-core path: K not a multiple of 8, a capacity below the launch, an F32 weight.
        assertEquals(2, step.projectTc(1, 1, 1, CudaLibrary.DTYPE_F16, 16, 1, 1, 1, 1, 2, 8, 12, false, 0), "K 12");
        assertTrue(step.lastError().contains("bd_step_project_tc") && step.lastError().contains("[8, 12]"), step.lastError());
        assertEquals(2, step.split(1, 4, 1, 64, CudaLibrary.DTYPE_BF16, true, 1, 2, 0), "capacity 2 < launch_rows 4");
        assertEquals(3, step.projectTc(1, 1, 1, CudaLibrary.DTYPE_F32, 16, 1, 1, 1, 1, 2, 8, 16, false, 0), "F32 weights");
        assertEquals(5, step.projectTc(1, 1, 1, CudaLibrary.DTYPE_F16, 18, 1, 1, 1, 1, 2, 8, 16, false, 0), "W not 16-byte aligned");
        assertEquals(4, step.projectPrefill(4, 1, 1, 1, CudaLibrary.DTYPE_F16, 16, 1, 1, 2, 1, 4, 1, 8, 16, false, 256, 16, 0),
                "a prefill workspace too small");
        assertEquals(2, step.lmHeadGrouped(1, 1, 1, 1, 1, 1, 1, 16, 1, 10, 12, 0), "hidden 12 (not a multiple of 8)");
    }

    /**
     * The product caches are keyed by objects: a new delta (or weight) over the very memory of an earlier one, with
     * other contents, is uploaded anew instead of being served the earlier one's device copy (a cache keyed by the
     * address and size would return the old signs).
     */
    @Test
    void productCachesNeverServeAnEarlierObjectsDataAtTheSameAddress() {
        long seed = DecoderTestSupport.seed("cache identity");
        SplittableRandom random = new SplittableRandom(seed);
        int rows = 48;
        int columns = 80;
        try (Arena arena = Arena.ofConfined()) {
            Tensor weight = DecoderTestSupport.randomMatrix(random, "w", DType.F16, rows, columns, 0.1);
            MemorySegment weightMemory = arena.allocate(weight.byteSize(), 64).copyFrom(weight.data());
            Tensor first = new Tensor("w", DType.F16, new long[]{rows, columns}, weightMemory);
            MemorySegment signMemory = arena.allocate((long) rows * BinaryDelta.bytesPerRow(columns), 64);
            BinaryDelta firstDelta = fill(signMemory, random, rows, columns);
            float[] x = DecoderTestSupport.uniform(random, columns, -1, 1);
            for (int i = 0; i < x.length; i++) {
                x[i] = GpuTestSupport.roundTo(DType.F16, x[i]);
            }
            float[] y = new float[rows];
            gpu.deltaMatmul(x, 1, first, List.of(firstDelta), new int[]{0}, y);
            // New contents in the same memory, seen through new objects at the same address and size.
            BinaryDelta secondDelta = fill(MemorySegment.ofAddress(signMemory.address()).reinterpret(signMemory.byteSize()), random, rows, columns);
            Tensor replacement = DecoderTestSupport.randomMatrix(random, "w", DType.F16, rows, columns, 0.1);
            MemorySegment.ofAddress(weightMemory.address()).reinterpret(weightMemory.byteSize()).copyFrom(replacement.data());
            Tensor second = new Tensor("w", DType.F16, new long[]{rows, columns},
                    MemorySegment.ofAddress(weightMemory.address()).reinterpret(weightMemory.byteSize()));
            gpu.deltaMatmul(x, 1, second, List.of(secondDelta), new int[]{0}, y);
            float[] expected = new float[rows];
            ScalarKernels.deltaMatmul(x, 1, second, List.of(secondDelta), new int[]{0}, expected);
            double error = DecoderTestSupport.relativeError(expected, y, rows);
            assertTrue(error < 1e-5, "the second delta and weight were served: relative error " + error + " (seed " + seed + ")");
            assertTrue(firstDelta.rows() == rows, "the first delta stays reachable (its cache entry alive) during the check");
        }
    }

    private static BinaryDelta fill(MemorySegment signs, SplittableRandom random, int rows, int columns) {
        int rowBytes = BinaryDelta.bytesPerRow(columns);
        for (long i = 0; i < signs.byteSize(); i++) {
            signs.set(ValueLayout.JAVA_BYTE, i, (byte) random.nextInt(256));
        }
        if (columns % 8 != 0) {
            for (int row = 0; row < rows; row++) {
                long last = (long) row * rowBytes + rowBytes - 1;
                signs.set(ValueLayout.JAVA_BYTE, last, (byte) (signs.get(ValueLayout.JAVA_BYTE, last) & ((1 << (columns % 8)) - 1)));
            }
        }
        return new BinaryDelta("delta", rows, columns, signs, new float[]{0.01f + 0.01f * random.nextFloat()});
    }
}
