package org.bitdelta.cuda;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDelta;
import org.bitdelta.CompressOptions;
import org.bitdelta.DeltaModel;
import org.bitdelta.inference.DecoderModel;
import org.bitdelta.inference.Perplexity;
import org.bitdelta.internal.cpu.VectorCpuBackend;
import org.bitdelta.internal.model.Decoder;
import org.bitdelta.internal.model.ModelLoader;
import org.bitdelta.internal.model.Sequence;
import org.bitdelta.internal.safetensors.SafetensorsWriter;
import org.bitdelta.serving.Completion;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.EngineOptions;
import org.bitdelta.serving.Request;
import org.bitdelta.spi.MemoryUse;
import org.bitdelta.spi.Projection;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The whole decoder on the GPU against the CPU backend (F32 throughout): greedy generations of 64 tokens are
 * identical and perplexities agree within 1e-4 (relative) for every tenant of the bundled stories260K family (F32,
 * tied embeddings, GQA 8/4: the base, the fine-tunes themselves, and both fine-tunes compressed as tenants, mixed in
 * one batch), for every fixture model of the repository (mistral-tiny F16 with its sliding window, and the other
 * F16/BF16/F32 Llamas as they arrive) with synthetic tenants and its compressed fine-tune, and for a synthetic BF16
 * Llama written here. Generation runs through the serving engine (Decoder.step, sampling on the device), perplexity
 * through DecoderModel (host logits). The GPU keeps F32 KV caches here (as the CPU does), so that the 16-bit models'
 * tensor-core path is compared at F32 rounding; {@link #sixteenBitKvCachesKeepPerplexitiesNearTheCpu} checks the
 * default 16-bit caches at their own tolerance.
 */
class CudaDecoderModelTest {
    static final int NEW_TOKENS = 64;
    static final double PERPLEXITY_TOLERANCE = 1e-4;
    /**
     * Relative perplexity differences with the KV cache in the model's dtype, by that dtype. A numpy model of the
     * fixtures in F32 with keys and values rounded (bench/kv_cache_precision.py: five texts of 100 tokens) moved
     * perplexities by 0.5e-4 .. 1.4e-4 with F16 (mistral-tiny) and 0.5e-4 .. 9.8e-4 with BF16 (the synthetic Llama);
     * these bounds leave 7x and 5x to that, and a wrong attention moves perplexity by far more than 1e-2.
     */
    static final double F16_KV_PERPLEXITY_TOLERANCE = 1e-3;
    static final double BF16_KV_PERPLEXITY_TOLERANCE = 5e-3;
    @RegisterExtension
    static final GpuResources resources = new GpuResources(CudaBackend.KvCachePrecision.F32);
    /** The backend under test (CUDA) and the reference (the vectorized CPU backend). */
    static org.bitdelta.spi.TensorBackend gpu;
    static org.bitdelta.spi.TensorBackend cpu;
    /** The CUDA backend with its default KV caches: the model's dtype for 16-bit models. */
    static CudaBackend gpuSixteenBitKv;

    @BeforeAll
    static void open() {
        gpu = resources.backend();
        gpuSixteenBitKv = resources.open(() -> new CudaBackend(0, CudaBackend.KvCachePrecision.MODEL));
        cpu = resources.open(VectorCpuBackend::new);
    }

    /** Seeded prompts: BOS then random tokens, of the given lengths. */
    private static List<int[]> prompts(long seed, int vocabulary, int... lengths) {
        SplittableRandom random = new SplittableRandom(seed);
        List<int[]> prompts = new ArrayList<>();
        for (int length : lengths) {
            int[] tokens = new int[length];
            tokens[0] = 1;
            for (int i = 1; i < length; i++) {
                tokens[i] = 3 + random.nextInt(vocabulary - 3);
            }
            prompts.add(tokens);
        }
        return prompts;
    }

    /** Greedy generations of {@code requests}, all in one batch on an engine over {@code folder} on {@code backend}. */
    private static List<CompletionResult> generate(Path folder, org.bitdelta.spi.TensorBackend backend, Map<String, DeltaModel> tenants,
                                                   List<Request> requests) {
        try (Engine engine = Engine.open(folder, EngineOptions.defaults().backend(backend))) {
            tenants.forEach(engine::addTenant);
            List<Completion> completions = requests.stream().map(engine::submit).toList();
            return completions.stream().map(Completion::result).toList();
        }
    }

    private static void assertPerplexitiesAgree(double expected, double actual, String what) {
        double relative = Math.abs(actual - expected) / expected;
        System.out.printf("  %s: perplexity CPU %.6f, GPU %.6f, relative difference %.2e%n", what, expected, actual, relative);
        assertTrue(relative < PERPLEXITY_TOLERANCE, what + ": perplexity CPU " + expected + " vs GPU " + actual + " (relative " + relative + ")");
    }

    @Test
    void storiesFamilyGreedyGenerationsAreIdenticalAndPerplexitiesAgree() {
        long seed = DecoderTestSupport.seed("stories260K family");
        Path base = DecoderTestSupport.bundledModel("stories260K");
        try (DeltaModel alice = BitDelta.compress(base, DecoderTestSupport.bundledModel("stories260K-ft-alice"),
                CompressOptions.defaults().backend(cpu));
             DeltaModel shakespeare = BitDelta.compress(base, DecoderTestSupport.bundledModel("stories260K-ft-shakespeare"),
                     CompressOptions.defaults().perRowScales(true).backend(cpu));
             DecoderModel onCpu = DecoderModel.load(base, cpu);
             DecoderModel onGpu = DecoderModel.load(base, gpu)) {
            for (DecoderModel model : List.of(onCpu, onGpu)) {
                model.addTenant("alice", alice);
                model.addTenant("shakespeare", shakespeare);
            }
            List<int[]> prompts = prompts(seed, onCpu.vocabularySize(), 1, 1, 1, 9, 9, 30, 4);
            List<String> tenants = List.of("base", "alice", "shakespeare", "base", "alice", "shakespeare", "alice");
            List<Request> requests = new ArrayList<>();
            for (int i = 0; i < tenants.size(); i++) {
                requests.add(Request.tokens(tenants.get(i), prompts.get(i)).maxTokens(NEW_TOKENS));
            }
            Map<String, DeltaModel> deltas = new LinkedHashMap<>();
            deltas.put("alice", alice);
            deltas.put("shakespeare", shakespeare);
            List<CompletionResult> expected = generate(base, cpu, deltas, requests);
            List<CompletionResult> actual = generate(base, gpu, deltas, requests);
            for (int i = 0; i < requests.size(); i++) {
                assertArrayEquals(expected.get(i).tokens(), actual.get(i).tokens(), "request " + i + " (" + tenants.get(i) + ", seed " + seed + ")");
                assertEquals(expected.get(i).finishReason(), actual.get(i).finishReason());
            }
            assertFalse(java.util.Arrays.equals(actual.get(0).tokens(), actual.get(1).tokens()), "alice continues differently from the base");
            int[] text = textFor(onCpu.vocabularySize(), expected, seed);
            for (String tenant : List.of("base", "alice", "shakespeare")) {
                assertPerplexitiesAgree(Perplexity.evaluate(onCpu, tenant, text, 128, 8).perplexity(),
                        Perplexity.evaluate(onGpu, tenant, text, 128, 8).perplexity(), "stories260K tenant " + tenant);
            }
            MemoryUse memory = onGpu.memory();
            System.out.println("  GPU memory: base " + memory.baseBytes() + " B, tenants " + memory.tenantBytes() + ", KV cache "
                    + memory.kvCacheBytes() + " B, workspace " + memory.workspaceBytes() + " B; device " + memory.deviceFree() + " free of "
                    + memory.deviceTotal());
            assertEquals(2, memory.tenantBytes().size(), "both tenants resident");
            assertTrue(memory.deviceTotal() > 0 && memory.deviceFree() > 0 && memory.deviceFree() <= memory.deviceTotal());
        }
    }

    /** Generated text (natural for the model) followed by random tokens: 8 windows of 128. */
    private static int[] textFor(int vocabulary, List<CompletionResult> generated, long seed) {
        int[] text = new int[8 * 128];
        SplittableRandom random = new SplittableRandom(seed);
        int at = 0;
        for (CompletionResult result : generated) {
            text[at++] = 1;
            for (int token : result.tokens()) {
                if (at < text.length / 2) {
                    text[at++] = token;
                }
            }
        }
        while (at < text.length) {
            text[at++] = random.nextInt(vocabulary);
        }
        return text;
    }

    @Test
    void fineTunesOnTheirOwnGenerateIdenticallyOnTheGpu() {
        long seed = DecoderTestSupport.seed("stories260K fine-tunes alone");
        for (String name : List.of("stories260K-ft-alice", "stories260K-ft-shakespeare")) {
            Path folder = DecoderTestSupport.bundledModel(name);
            try (DecoderModel onCpu = DecoderModel.load(folder, cpu); DecoderModel onGpu = DecoderModel.load(folder, gpu)) {
                List<Request> requests = new ArrayList<>();
                for (int[] prompt : prompts(seed, onCpu.vocabularySize(), 1, 12)) {
                    requests.add(Request.tokens("base", prompt).maxTokens(NEW_TOKENS));
                }
                List<CompletionResult> expected = generate(folder, cpu, Map.of(), requests);
                List<CompletionResult> actual = generate(folder, gpu, Map.of(), requests);
                for (int i = 0; i < requests.size(); i++) {
                    assertArrayEquals(expected.get(i).tokens(), actual.get(i).tokens(), name + " request " + i + " (seed " + seed + ")");
                }
                int[] text = textFor(onCpu.vocabularySize(), expected, seed);
                assertPerplexitiesAgree(Perplexity.evaluate(onCpu, "base", text, 128, 8).perplexity(),
                        Perplexity.evaluate(onGpu, "base", text, 128, 8).perplexity(), name);
            }
        }
    }

    /**
     * The repository's fixture models (F16/BF16/F32 Llama and Mistral folders beside stories260K; NAME-ft, where
     * present, is NAME's fine-tune): each with synthetic tenants and its fine-tune compressed as a tenant, and the
     * fine-tune on its own.
     */
    static Stream<String> fixtureModels() throws IOException {
        Path models = DecoderTestSupport.bundledModel("stories260K").getParent();
        try (Stream<Path> folders = Files.list(models)) {
            List<String> names = folders.filter(folder -> Files.isRegularFile(folder.resolve("config.json")))
                    .map(folder -> folder.getFileName().toString())
                    .filter(name -> !name.startsWith("stories260K") && !name.endsWith("-ft"))
                    .sorted().toList();
            assertFalse(names.isEmpty(), "no fixture models beside stories260K in " + models);
            return names.stream();
        }
    }

    @ParameterizedTest
    @MethodSource("fixtureModels")
    void fixtureModelsWithTenantsMatchTheCpu(String name) {
        long seed = DecoderTestSupport.seed("fixture " + name);
        Path folder = DecoderTestSupport.bundledModel(name);
        Path fineTune = folder.resolveSibling(name + "-ft");
        boolean tuned = Files.isDirectory(fineTune);
        checkDecoders(folder, seed, name, tuned ? fineTune : null);
        if (tuned) {
            checkDecoders(fineTune, seed + 1, name + "-ft", null);
        }
    }

    @Test
    void syntheticBf16LlamaWithTenantsMatchesTheCpu(@TempDir Path folder) throws IOException {
        long seed = DecoderTestSupport.seed("synthetic BF16 Llama");
        writeLlama(folder, DType.BF16, 300, seed);
        checkDecoders(folder, seed, "BF16 Llama", null);
    }

    /**
     * The default KV caches of 16-bit models (F16 for mistral-tiny, BF16 for the synthetic Llama): perplexities of the
     * base and two tenants within the tolerance of their rounding (not 1e-4: 16-bit keys move logits by about 1e-4,
     * enough to flip greedy near-ties, so generations are not compared), and the cache takes half the bytes of F32's.
     */
    @Test
    void sixteenBitKvCachesKeepPerplexitiesNearTheCpu(@TempDir Path folder) throws IOException {
        long seed = DecoderTestSupport.seed("16-bit KV caches");
        writeLlama(folder, DType.BF16, 300, seed);
        for (Path model : List.of(DecoderTestSupport.bundledModel("mistral-tiny"), folder)) {
            try (Decoder onCpu = Decoder.load(model, cpu, false); Decoder onGpu = Decoder.load(model, gpuSixteenBitKv, false);
                 Decoder onGpuF32 = Decoder.load(model, gpu, false)) {
                DType dtype = onCpu.weights().tensor(Projection.QUERY.weightName(0)).dtype();
                double tolerance = dtype == DType.F16 ? F16_KV_PERPLEXITY_TOLERANCE : BF16_KV_PERPLEXITY_TOLERANCE;
                for (int t = 1; t <= 2; t++) {
                    Map<String, BinaryDelta> deltas = new LinkedHashMap<>();
                    Map<String, Tensor> replaced = new LinkedHashMap<>();
                    syntheticTenant(onCpu, seed + t, t, deltas, replaced);
                    for (Decoder decoder : List.of(onCpu, onGpu, onGpuF32)) {
                        decoder.addTenant("t" + t, "synthetic tenant " + t, deltas, replaced);
                    }
                }
                List<String> tenants = List.of("base", "t1", "t2");
                List<int[]> texts = new ArrayList<>();
                int length = Math.min(100, onCpu.config().contextLength());
                for (int i = 0; i < tenants.size(); i++) {
                    texts.add(prompts(seed + 11 + i, onCpu.config().vocabularySize(), length).getFirst());
                }
                double[] lossCpu = meanLosses(onCpu, tenants, texts);
                double[] lossGpu = meanLosses(onGpu, tenants, texts);
                for (int i = 0; i < tenants.size(); i++) {
                    double expected = Math.exp(lossCpu[i]);
                    double actual = Math.exp(lossGpu[i]);
                    double relative = Math.abs(actual - expected) / expected;
                    System.out.printf("  %s %s KV cache, tenant %s: perplexity CPU %.6f, GPU %.6f, relative difference %.2e%n",
                            model.getFileName(), dtype, tenants.get(i), expected, actual, relative);
                    assertTrue(relative < tolerance, model + " tenant " + tenants.get(i) + ": perplexity CPU " + expected + " vs GPU "
                            + actual + " with a " + dtype + " KV cache (relative " + relative + ", tolerance " + tolerance + ")");
                }
                long sixteen = onGpu.memory().kvCacheBytes();
                long f32 = onGpuF32.memory().kvCacheBytes();
                assertEquals(f32, 2 * sixteen, "a " + dtype + " KV cache takes half the bytes of an F32 one");
            }
        }
    }

    /**
     * Both backends' decoders over one folder with three synthetic tenants (and {@code fineTune}, when given,
     * compressed against the folder as tenant "ft"): greedy continuations through Decoder.step (argmax on the
     * device), sampled ones (temperature, top-k, top-p on the device), and perplexities from Decoder.forward logits.
     */
    static void checkDecoders(Path folder, long seed, String name, Path fineTune) {
        checkDecoders(cpu, gpu, folder, seed, name, fineTune);
    }

    /**
     * {@code folder} on {@code gpuBackend} against {@code cpuBackend}: three synthetic tenants and, with
     * {@code fineTune}, that fine-tune compressed as a tenant, mixed in one batch: greedy and sampled generations of
     * {@link #NEW_TOKENS} tokens identical, perplexities within {@link #PERPLEXITY_TOLERANCE}.
     */
    static void checkDecoders(org.bitdelta.spi.TensorBackend cpuBackend, org.bitdelta.spi.TensorBackend gpuBackend, Path folder, long seed,
                              String name, Path fineTune) {
        try (Decoder onCpu = Decoder.load(folder, cpuBackend, false); Decoder onGpu = Decoder.load(folder, gpuBackend, false);
             DeltaModel compressed = fineTune == null ? null
                     : BitDelta.compress(folder, fineTune, CompressOptions.defaults().perRowScales(true).backend(cpuBackend))) {
            for (int t = 1; t <= 3; t++) {
                Map<String, BinaryDelta> deltas = new LinkedHashMap<>();
                Map<String, Tensor> replaced = new LinkedHashMap<>();
                syntheticTenant(onCpu, seed + t, t, deltas, replaced);
                onCpu.addTenant("t" + t, "synthetic tenant " + t, deltas, replaced);
                onGpu.addTenant("t" + t, "synthetic tenant " + t, deltas, replaced);
            }
            List<String> tenants = new ArrayList<>(List.of("base", "t1", "t2", "t3", "t1", "base"));
            if (compressed != null) {
                DecoderTestSupport.addTenant(onCpu, "ft", compressed);
                DecoderTestSupport.addTenant(onGpu, "ft", compressed);
                tenants.addAll(List.of("ft", "ft"));
            }
            int vocabulary = onCpu.config().vocabularySize();
            int longest = Math.max(1, onCpu.config().contextLength() - NEW_TOKENS);  // prompt + continuation fit the context
            List<int[]> prompts = new ArrayList<>();
            int[] lengths = {1, 5, 17, 3, 1, 40, 9, 2};
            for (int i = 0; i < tenants.size(); i++) {
                prompts.add(prompts(seed + i, vocabulary, Math.min(lengths[i], longest)).getFirst());
            }
            int[][] expected = generate(onCpu, tenants, prompts, 0);
            int[][] actual = generate(onGpu, tenants, prompts, 0);
            for (int i = 0; i < tenants.size(); i++) {
                assertArrayEquals(expected[i], actual[i], name + " greedy sequence " + i + " (" + tenants.get(i) + ", seed " + seed + ")");
            }
            assertFalse(java.util.Arrays.equals(actual[0], actual[1]) && java.util.Arrays.equals(actual[1], actual[2]),
                    "the tenants change the continuations");
            // Sampled on the device vs on the host: the same draws give the same tokens unless a uniform number lands
            // within float rounding of a boundary (about 1e-6 per token).
            int[][] sampledCpu = generate(onCpu, tenants, prompts, 0.8f);
            int[][] sampledGpu = generate(onGpu, tenants, prompts, 0.8f);
            for (int i = 0; i < tenants.size(); i++) {
                assertArrayEquals(sampledCpu[i], sampledGpu[i], name + " sampled sequence " + i + " (" + tenants.get(i) + ", seed " + seed + ")");
            }
            int textLength = Math.min(100, onCpu.config().contextLength());
            List<String> textTenants = compressed != null ? List.of("base", "t1", "t2", "t3", "ft") : List.of("base", "t1", "t2", "t3");
            List<int[]> texts = new ArrayList<>();
            for (int i = 0; i < textTenants.size(); i++) {
                texts.add(prompts(seed + 7 + i, vocabulary, textLength).getFirst());
            }
            double[] lossCpu = meanLosses(onCpu, textTenants, texts);
            double[] lossGpu = meanLosses(onGpu, textTenants, texts);
            for (int i = 0; i < textTenants.size(); i++) {
                assertPerplexitiesAgree(Math.exp(lossCpu[i]), Math.exp(lossGpu[i]), name + " tenant " + textTenants.get(i));
            }
        }
    }

    /** Each sequence's prompt then NEW_TOKENS tokens through Decoder.step (greedy at temperature 0). */
    private static int[][] generate(Decoder decoder, List<String> tenants, List<int[]> prompts, float temperature) {
        List<Sequence> sequences = new ArrayList<>();
        try {
            for (String tenant : tenants) {
                sequences.add(decoder.newSequence(tenant));
            }
            int[][] generated = new int[tenants.size()][NEW_TOKENS];
            List<int[]> next = new ArrayList<>(prompts);
            for (int step = 0; step < NEW_TOKENS; step++) {
                List<Decoder.TokenSampling> sampling = new ArrayList<>();
                for (int i = 0; i < tenants.size(); i++) {
                    sampling.add(temperature == 0 ? Decoder.TokenSampling.greedy()
                            : new Decoder.TokenSampling(temperature, 40, 0.9f, 1000L + i, step));
                }
                Decoder.StepResult result = decoder.step(sequences, next, sampling);
                next = new ArrayList<>();
                for (int i = 0; i < tenants.size(); i++) {
                    assertEquals(null, result.failures().get(i), "sequence " + i);
                    generated[i][step] = result.tokens()[i];
                    next.add(new int[]{result.tokens()[i]});
                }
            }
            return generated;
        } finally {
            sequences.forEach(Sequence::close);
        }
    }

    /** Mean cross-entropy of tokens 1 .. n−1 of each text, from Decoder.forward logits (double). */
    private static double[] meanLosses(Decoder decoder, List<String> tenants, List<int[]> texts) {
        List<Sequence> sequences = new ArrayList<>();
        try {
            for (String tenant : tenants) {
                sequences.add(decoder.newSequence(tenant));
            }
            List<float[]> logits = decoder.forward(sequences, texts, true);
            int vocabulary = decoder.config().vocabularySize();
            double[] losses = new double[texts.size()];
            for (int s = 0; s < texts.size(); s++) {
                int[] text = texts.get(s);
                double total = 0;
                for (int i = 0; i + 1 < text.length; i++) {
                    double max = Double.NEGATIVE_INFINITY;
                    for (int v = 0; v < vocabulary; v++) {
                        max = Math.max(max, logits.get(s)[i * vocabulary + v]);
                    }
                    double sum = 0;
                    for (int v = 0; v < vocabulary; v++) {
                        sum += Math.exp(logits.get(s)[i * vocabulary + v] - max);
                    }
                    total += max + Math.log(sum) - logits.get(s)[i * vocabulary + text[i + 1]];
                }
                losses[s] = total / (text.length - 1);
            }
            return losses;
        } finally {
            sequences.forEach(Sequence::close);
        }
    }

    /**
     * Tenant {@code kind}: 1 = deltas on every projection (per-row scales) and its own embedding, lm_head (where
     * untied) and norms; 2 = deltas on half the projections (per-matrix scales); 3 = norms only.
     */
    private static void syntheticTenant(Decoder decoder, long seed, int kind, Map<String, BinaryDelta> deltas, Map<String, Tensor> replaced) {
        SplittableRandom random = new SplittableRandom(seed);
        var config = decoder.config();
        for (int layer = 0; layer < config.layerCount(); layer++) {
            for (Projection projection : Projection.values()) {
                if (kind == 3 || (kind == 2 && random.nextBoolean())) {
                    continue;
                }
                Tensor weight = decoder.weights().tensor(projection.weightName(layer));
                int rows = (int) weight.dimension(0);
                int columns = (int) weight.dimension(1);
                double meanMagnitude = 0;
                for (long i = 0; i < weight.elementCount(); i++) {
                    meanMagnitude += Math.abs(weight.getFloat(i));
                }
                meanMagnitude /= weight.elementCount();
                BinaryDelta delta = DecoderTestSupport.randomDelta(random, projection.weightName(layer), rows, columns, kind == 1);
                float[] scales = delta.scales();
                for (int i = 0; i < scales.length; i++) {
                    scales[i] = (float) (meanMagnitude * (0.1 + 0.2 * random.nextDouble()));  // a fine-tune's size of change
                }
                deltas.put(projection.weightName(layer), delta.withScales(scales));
            }
        }
        DType dtype = decoder.weights().tensor(ModelLoader.EMBEDDING).dtype();
        int hidden = config.hiddenSize();
        if (kind != 2) {
            replaced.put(ModelLoader.FINAL_NORM, DecoderTestSupport.randomNorm(random, ModelLoader.FINAL_NORM, dtype, hidden));
            replaced.put("model.layers.0.input_layernorm.weight", DecoderTestSupport.randomNorm(random, "in0", dtype, hidden));
            replaced.put("model.layers." + (config.layerCount() - 1) + ".post_attention_layernorm.weight",
                    DecoderTestSupport.randomNorm(random, "post", dtype, hidden));
        }
        if (kind == 1) {
            Tensor embedding = decoder.weights().tensor(ModelLoader.EMBEDDING);
            replaced.put(ModelLoader.EMBEDDING, perturbed(embedding, random, ModelLoader.EMBEDDING));
            if (!config.tiedEmbeddings()) {
                replaced.put(ModelLoader.LM_HEAD, perturbed(decoder.weights().tensor(ModelLoader.LM_HEAD), random, ModelLoader.LM_HEAD));
            }
        }
    }

    /** A copy of {@code tensor} with 20% noise, in its dtype. */
    private static Tensor perturbed(Tensor tensor, SplittableRandom random, String name) {
        float[] values = tensor.toFloatArray();
        for (int i = 0; i < values.length; i++) {
            values[i] *= (float) (1 + 0.2 * (random.nextDouble() - 0.5));
        }
        return DecoderTestSupport.tensor(name, tensor.dtype(), values, tensor.shape());
    }

    /** A Llama of random weights (GQA 3, untied, head dimension 16) as a Hugging Face folder. */
    static void writeLlama(Path folder, DType dtype, int vocabulary, long seed) throws IOException {
        int hidden = 96;
        int intermediate = 256;
        int layers = 3;
        int heads = 6;
        int keyValueHeads = 2;
        int headDimension = 16;
        Files.writeString(folder.resolve("config.json"), """
                {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": %d, "intermediate_size": %d,
                 "num_hidden_layers": %d, "num_attention_heads": %d, "num_key_value_heads": %d, "head_dim": %d,
                 "vocab_size": %d, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "max_position_embeddings": 160,
                 "hidden_act": "silu", "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2,
                 "torch_dtype": "%s"}
                """.formatted(hidden, intermediate, layers, heads, keyValueHeads, headDimension, vocabulary,
                dtype == DType.BF16 ? "bfloat16" : dtype == DType.F16 ? "float16" : "float32"));
        SplittableRandom random = new SplittableRandom(seed);
        List<SafetensorsWriter.Source> sources = new ArrayList<>();
        sources.add(SafetensorsWriter.Source.of(DecoderTestSupport.randomMatrix(random, ModelLoader.EMBEDDING, dtype, vocabulary, hidden, 1.0)));
        for (int layer = 0; layer < layers; layer++) {
            String prefix = "model.layers." + layer + ".";
            int[][] shapes = {{heads * headDimension, hidden}, {keyValueHeads * headDimension, hidden}, {keyValueHeads * headDimension, hidden},
                    {hidden, heads * headDimension}, {intermediate, hidden}, {intermediate, hidden}, {hidden, intermediate}};
            for (Projection projection : Projection.values()) {
                int[] shape = shapes[projection.ordinal()];
                sources.add(SafetensorsWriter.Source.of(DecoderTestSupport.randomMatrix(random, projection.weightName(layer), dtype,
                        shape[0], shape[1], 1.7 / Math.sqrt(shape[1]))));
            }
            sources.add(SafetensorsWriter.Source.of(DecoderTestSupport.randomNorm(random, prefix + "input_layernorm.weight", dtype, hidden)));
            sources.add(SafetensorsWriter.Source.of(DecoderTestSupport.randomNorm(random, prefix + "post_attention_layernorm.weight", dtype, hidden)));
        }
        sources.add(SafetensorsWriter.Source.of(DecoderTestSupport.randomNorm(random, ModelLoader.FINAL_NORM, dtype, hidden)));
        sources.add(SafetensorsWriter.Source.of(DecoderTestSupport.randomMatrix(random, ModelLoader.LM_HEAD, dtype, vocabulary, hidden,
                3.0 / Math.sqrt(hidden))));
        SafetensorsWriter.write(folder.resolve("model.safetensors"), Map.of("format", "pt"), sources, true);
    }
}
