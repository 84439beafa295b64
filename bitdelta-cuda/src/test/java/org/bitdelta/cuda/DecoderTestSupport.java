package org.bitdelta.cuda;

import org.bitdelta.BinaryDelta;
import org.bitdelta.internal.model.RotaryEmbedding;
import org.bitdelta.spi.Activations;
import org.bitdelta.spi.DecoderDevice;
import org.bitdelta.spi.DecoderSpec;
import org.bitdelta.spi.Projection;
import org.bitdelta.spi.StepInputs;
import org.bitdelta.spi.TenantWeights;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.BiConsumer;
import java.util.function.Function;
import java.util.function.IntFunction;
import java.util.stream.IntStream;

/**
 * Synthetic decoders for the decoder-device tests: a {@link DecoderSpec} of seeded random in-memory tensors, random
 * tenants, step inputs laid out as the Decoder lays them out (a tiny block manager), and a pair of devices driven
 * in lockstep (the scalar oracle and the device under test).
 */
final class DecoderTestSupport {
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private DecoderTestSupport() {
    }

    /** -Dbitdelta.test.seed=N replays a run; otherwise a fresh seed, printed. */
    static long seed(String test) {
        Long fixed = Long.getLong("bitdelta.test.seed");
        long seed = fixed != null ? fixed : System.nanoTime() ^ 0x5DEECE66DL * Thread.currentThread().threadId();
        System.out.println(test + ": seed " + seed + " (replay with -Dbitdelta.test.seed=" + seed + ")");
        return seed;
    }

    /** The shape of a synthetic decoder. */
    record Shape(DType dtype, int hidden, int intermediate, int heads, int keyValueHeads, int headDimension, int vocabulary,
                 int layers, int context, int window, boolean tied, int maxRows, int blockSize, int blocks, int slots) {
        @Override
        public String toString() {
            return dtype + " hidden " + hidden + " ffn " + intermediate + " heads " + heads + "/" + keyValueHeads + "x" + headDimension
                    + " vocab " + vocabulary + " layers " + layers + " context " + context + " window " + window
                    + (tied ? " tied" : " untied") + " rows " + maxRows + " blocks " + blocks + "x" + blockSize;
        }
    }

    /** A tensor of {@code dtype} holding {@code values} (rounded to it), on the heap. */
    static Tensor tensor(String name, DType dtype, float[] values, long... shape) {
        MemorySegment data = MemorySegment.ofArray(new byte[values.length * dtype.byteSize()]);
        for (int i = 0; i < values.length; i++) {
            switch (dtype) {
                case F32 -> data.set(FLOAT, 4L * i, values[i]);
                case F16 -> data.set(SHORT, 2L * i, Float.floatToFloat16(values[i]));
                case BF16 -> data.set(SHORT, 2L * i, CudaBackend.toBfloat16(values[i]));
                default -> throw new IllegalArgumentException(dtype.toString());
            }
        }
        return new Tensor(name, dtype, shape, data);
    }

    static float[] uniform(SplittableRandom random, int count, double low, double high) {
        float[] values = new float[count];
        for (int i = 0; i < count; i++) {
            values[i] = (float) (low + (high - low) * random.nextDouble());
        }
        return values;
    }

    static Tensor randomMatrix(SplittableRandom random, String name, DType dtype, int rows, int columns, double magnitude) {
        return tensor(name, dtype, uniform(random, rows * columns, -magnitude, magnitude), rows, columns);
    }

    static Tensor randomNorm(SplittableRandom random, String name, DType dtype, int length) {
        return tensor(name, dtype, uniform(random, length, 0.7, 1.3), length);
    }

    /** A decoder spec of random weights (scaled so that activations stay of order 1 through the layers). */
    static DecoderSpec spec(Shape shape, long seed) {
        SplittableRandom random = new SplittableRandom(seed);
        DType dtype = shape.dtype();
        int hidden = shape.hidden();
        int queryWidth = shape.heads() * shape.headDimension();
        int keyValueWidth = shape.keyValueHeads() * shape.headDimension();
        double toHidden = 1.0 / Math.sqrt(hidden);
        List<DecoderSpec.LayerWeights> layers = new ArrayList<>();
        for (int layer = 0; layer < shape.layers(); layer++) {
            String prefix = "model.layers." + layer + ".";
            layers.add(new DecoderSpec.LayerWeights(
                    randomNorm(random, prefix + "input_layernorm.weight", dtype, hidden),
                    randomNorm(random, prefix + "post_attention_layernorm.weight", dtype, hidden),
                    randomMatrix(random, prefix + "q", dtype, queryWidth, hidden, 2 * toHidden),
                    randomMatrix(random, prefix + "k", dtype, keyValueWidth, hidden, 2 * toHidden),
                    randomMatrix(random, prefix + "v", dtype, keyValueWidth, hidden, 2 * toHidden),
                    randomMatrix(random, prefix + "o", dtype, hidden, queryWidth, 1.0 / Math.sqrt(queryWidth)),
                    randomMatrix(random, prefix + "gate", dtype, shape.intermediate(), hidden, 2 * toHidden),
                    randomMatrix(random, prefix + "up", dtype, shape.intermediate(), hidden, 2 * toHidden),
                    randomMatrix(random, prefix + "down", dtype, hidden, shape.intermediate(), 1.0 / Math.sqrt(shape.intermediate()))));
        }
        Tensor embedding = randomMatrix(random, "model.embed_tokens.weight", dtype, shape.vocabulary(), hidden, 1.0);
        Tensor lmHead = shape.tied() ? embedding : randomMatrix(random, "lm_head.weight", dtype, shape.vocabulary(), hidden, 2 * toHidden);
        float[][] rotary = new RotaryEmbedding(10000.0, null).tables(shape.context(), shape.headDimension());
        return new DecoderSpec(hidden, shape.intermediate(), shape.heads(), shape.keyValueHeads(), shape.headDimension(), shape.vocabulary(),
                shape.context(), 1e-5f, shape.window(), rotary[0], rotary[1], embedding, lmHead,
                randomNorm(random, "model.norm.weight", dtype, hidden), layers, shape.maxRows(), shape.blockSize(), shape.blocks(),
                shape.slots());
    }

    /** What a random tenant replaces. */
    record TenantKind(double deltaShare, boolean perRowScales, boolean embedding, boolean lmHead, boolean norms, DType tensorDtype) {
    }

    /** Random signs (padding bits 0) and positive scales. */
    static BinaryDelta randomDelta(SplittableRandom random, String name, int rows, int columns, boolean perRowScales) {
        int rowBytes = BinaryDelta.bytesPerRow(columns);
        byte[] signs = new byte[rows * rowBytes];
        random.nextBytes(signs);
        if (columns % 8 != 0) {
            int mask = (1 << (columns % 8)) - 1;
            for (int row = 0; row < rows; row++) {
                signs[row * rowBytes + rowBytes - 1] &= (byte) mask;
            }
        }
        float[] scales = uniform(random, perRowScales ? rows : 1, 0.002, 0.02);
        return new BinaryDelta(name, rows, columns, MemorySegment.ofArray(signs), scales);
    }

    /** A random tenant of {@code spec}: deltas on about deltaShare of the projections, replaced tensors as asked. */
    static TenantWeights tenant(DecoderSpec spec, String name, TenantKind kind, long seed) {
        SplittableRandom random = new SplittableRandom(seed);
        int layers = spec.layerCount();
        BinaryDelta[][] deltas = new BinaryDelta[layers][Projection.values().length];
        for (int layer = 0; layer < layers; layer++) {
            for (Projection projection : Projection.values()) {
                if (random.nextDouble() < kind.deltaShare()) {
                    Tensor weight = spec.layers().get(layer).weight(projection);
                    deltas[layer][projection.ordinal()] = randomDelta(random, name + "." + projection.weightName(layer),
                            (int) weight.dimension(0), (int) weight.dimension(1), kind.perRowScales());
                }
            }
        }
        DType dtype = kind.tensorDtype();
        Tensor embedding = kind.embedding() ? randomMatrix(random, name + ".embed", dtype, spec.vocabularySize(), spec.hiddenSize(), 1.0) : null;
        boolean tied = spec.lmHead() == spec.embedding();
        Tensor lmHead = tied ? embedding
                : kind.lmHead() ? randomMatrix(random, name + ".lm_head", dtype, spec.vocabularySize(), spec.hiddenSize(),
                2.0 / Math.sqrt(spec.hiddenSize())) : null;
        Tensor finalNorm = kind.norms() ? randomNorm(random, name + ".norm", dtype, spec.hiddenSize()) : null;
        Tensor[] inputNorms = new Tensor[layers];
        Tensor[] postNorms = new Tensor[layers];
        for (int layer = 0; layer < layers; layer++) {
            if (kind.norms() && random.nextBoolean()) {
                inputNorms[layer] = randomNorm(random, name + ".in" + layer, dtype, spec.hiddenSize());
            }
            if (kind.norms() && random.nextBoolean()) {
                postNorms[layer] = randomNorm(random, name + ".post" + layer, dtype, spec.hiddenSize());
            }
        }
        return new TenantWeights(name, deltas, embedding, lmHead, finalNorm, inputNorms, postNorms);
    }

    /**
     * A tiny block manager (as the Decoder's): sequences with a tenant slot, a length and a block table whose blocks
     * come from a shuffled free list (so tables are not contiguous).
     */
    static final class Cache {
        final int blockSize;
        final List<Integer> free = new ArrayList<>();

        static final class Sequence {
            final int slot;
            int length;
            final List<Integer> blocks = new ArrayList<>();

            Sequence(int slot) {
                this.slot = slot;
            }
        }

        Cache(DecoderSpec spec, long seed) {
            this.blockSize = spec.kvBlockSize();
            for (int block = 0; block < spec.kvBlocks(); block++) {
                free.add(block);
            }
            Collections.shuffle(free, new java.util.Random(seed));
        }

        /** Returns the sequence's blocks to the free list; it starts again empty. */
        void release(Sequence sequence) {
            free.addAll(sequence.blocks);
            sequence.blocks.clear();
            sequence.length = 0;
        }

        /**
         * The inputs of one step: sequence s runs tokens.get(s) (its next tokens); output rows are every row
         * ({@code allOutputs}) or each sequence's last. Grows the tables and advances the lengths.
         */
        StepInputs step(List<Sequence> sequences, List<int[]> tokens, boolean allOutputs) {
            int rows = tokens.stream().mapToInt(t -> t.length).sum();
            int width = 1;
            for (int s = 0; s < sequences.size(); s++) {
                Sequence sequence = sequences.get(s);
                int needed = (sequence.length + tokens.get(s).length + blockSize - 1) / blockSize;
                while (sequence.blocks.size() < needed) {
                    sequence.blocks.add(free.removeLast());
                }
                width = Math.max(width, sequence.blocks.size());
            }
            // Row r is token offset[r] of sequence sequenceOfRow[r] (the sequences' tokens one after another); every
            // per-row value follows from those two.
            int[] sequenceOfRow = IntStream.range(0, sequences.size())
                    .flatMap(s -> IntStream.range(0, tokens.get(s).length).map(i -> s)).toArray();
            int[] offset = IntStream.range(0, sequences.size()).flatMap(s -> IntStream.range(0, tokens.get(s).length)).toArray();
            IntFunction<Sequence> sequenceOf = row -> sequences.get(sequenceOfRow[row]);
            int[] tokenIds = IntStream.range(0, rows).map(row -> tokens.get(sequenceOfRow[row])[offset[row]]).toArray();
            int[] slots = IntStream.range(0, rows).map(row -> sequenceOf.apply(row).slot).toArray();
            int[] positions = IntStream.range(0, rows).map(row -> sequenceOf.apply(row).length + offset[row]).toArray();
            int[] cacheSlots = IntStream.range(0, rows).map(row -> {
                int position = positions[row];
                return sequenceOf.apply(row).blocks.get(position / blockSize) * blockSize + position % blockSize;
            }).toArray();
            int[] outputRows = IntStream.range(0, rows)
                    .filter(row -> allOutputs || offset[row] == tokens.get(sequenceOfRow[row]).length - 1).toArray();
            int[] tables = new int[sequences.size() * width];
            for (int s = 0; s < sequences.size(); s++) {
                Sequence sequence = sequences.get(s);
                for (int b = 0; b < sequence.blocks.size(); b++) {
                    tables[s * width + b] = sequence.blocks.get(b);
                }
                sequence.length += tokens.get(s).length;
            }
            return new StepInputs(rows, tokenIds, slots, positions, sequenceOfRow, cacheSlots, sequences.size(), width, tables,
                    outputRows.length, outputRows);
        }
    }

    static int[] randomTokens(SplittableRandom random, int count, int vocabulary) {
        int[] tokens = new int[count];
        for (int i = 0; i < count; i++) {
            tokens[i] = random.nextInt(vocabulary);
        }
        return tokens;
    }

    /** Two devices over one spec driven in lockstep: the same tenants, buffers, writes and steps. */
    static final class Twin implements AutoCloseable {
        final DecoderDevice oracle;
        final DecoderDevice device;
        private final Map<String, Activations[]> buffers = new LinkedHashMap<>();

        Twin(DecoderDevice oracle, DecoderDevice device) {
            this.oracle = oracle;
            this.device = device;
        }

        void allocate(String name, int rows, int columns) {
            buffers.put(name, new Activations[]{oracle.allocate(name, rows, columns), device.allocate(name, rows, columns)});
        }

        Activations of(DecoderDevice which, String name) {
            Activations[] pair = buffers.get(name);
            return pair[which == oracle ? 0 : 1];
        }

        void load(int slot, TenantWeights weights) {
            oracle.loadTenant(slot, weights);
            device.loadTenant(slot, weights);
        }

        void write(String name, int rows, float[] values) {
            oracle.write(values, rows, of(oracle, name));
            device.write(values, rows, of(device, name));
        }

        /** Runs the same step on both: {@code operations} gets the device and a buffer lookup. */
        void run(StepInputs inputs, BiConsumer<DecoderDevice, Function<String, Activations>> operations) {
            oracle.run(inputs, () -> operations.accept(oracle, name -> of(oracle, name)));
            device.run(inputs, () -> operations.accept(device, name -> of(device, name)));
        }

        /** {oracle's, device's} first rows of a buffer. */
        float[][] read(String name, int rows) {
            Activations[] pair = buffers.get(name);
            float[] expected = new float[rows * pair[0].columns()];
            float[] actual = new float[rows * pair[1].columns()];
            java.util.Arrays.fill(actual, Float.NaN);
            oracle.read(pair[0], rows, expected);
            device.read(pair[1], rows, actual);
            return new float[][]{expected, actual};
        }

        @Override
        public void close() {
            try {
                device.close();
            } finally {
                oracle.close();
            }
        }
    }

    /** The op sequence of DecoderStep (internal.model), written out for tests that drive whole steps themselves. */
    static void decoderStep(DecoderDevice device, Function<String, Activations> buffer) {
        DecoderSpec spec = device.spec();
        device.embed(buffer.apply("residual"));
        for (int layer = 0; layer < spec.layerCount(); layer++) {
            device.rmsNorm(buffer.apply("residual"), DecoderDevice.Norm.INPUT, layer, buffer.apply("normed"));
            device.project(layer, Projection.Group.QKV, buffer.apply("normed"), buffer.apply("qkv"), false);
            device.rotaryAndCache(layer, buffer.apply("qkv"));
            device.attention(layer, buffer.apply("qkv"), buffer.apply("attended"));
            device.project(layer, Projection.Group.ATTENTION_OUTPUT, buffer.apply("attended"), buffer.apply("residual"), true);
            device.rmsNorm(buffer.apply("residual"), DecoderDevice.Norm.POST_ATTENTION, layer, buffer.apply("normed"));
            device.project(layer, Projection.Group.GATE_UP, buffer.apply("normed"), buffer.apply("gateUp"), false);
            device.swiGlu(buffer.apply("gateUp"), buffer.apply("feedForward"));
            device.project(layer, Projection.Group.FEED_FORWARD_OUTPUT, buffer.apply("feedForward"), buffer.apply("residual"), true);
        }
        device.gatherOutputRows(buffer.apply("residual"), buffer.apply("outputRows"));
        device.rmsNorm(buffer.apply("outputRows"), DecoderDevice.Norm.FINAL, 0, buffer.apply("outputNormed"));
        device.lmHead(buffer.apply("outputNormed"), buffer.apply("logits"));
    }

    /** The buffers {@link #decoderStep} uses, [maxRows, width]. */
    static void allocateStepBuffers(Twin twin, DecoderSpec spec) {
        int rows = spec.maxRows();
        twin.allocate("residual", rows, spec.hiddenSize());
        twin.allocate("normed", rows, spec.hiddenSize());
        twin.allocate("qkv", rows, spec.width(Projection.Group.QKV));
        twin.allocate("attended", rows, spec.queryWidth());
        twin.allocate("gateUp", rows, spec.width(Projection.Group.GATE_UP));
        twin.allocate("feedForward", rows, spec.intermediateSize());
        twin.allocate("outputRows", rows, spec.hiddenSize());
        twin.allocate("outputNormed", rows, spec.hiddenSize());
        twin.allocate("logits", rows, spec.vocabularySize());
    }

    /**
     * max |actual − expected| over max |expected| (+infinity if actual has a NaN or infinity where expected is
     * finite); a value under {@code tolerance} passes.
     */
    static double relativeError(float[] expected, float[] actual, int count) {
        double difference = 0;
        double scale = 0;
        for (int i = 0; i < count; i++) {
            if (!Float.isFinite(actual[i]) && Float.isFinite(expected[i])) {
                return Double.POSITIVE_INFINITY;
            }
            difference = Math.max(difference, Math.abs((double) actual[i] - expected[i]));
            scale = Math.max(scale, Math.abs((double) expected[i]));
        }
        return scale == 0 ? difference : difference / scale;
    }

    /** Adds {@code delta} (compressed against the decoder's base) as tenant {@code name}. */
    static void addTenant(org.bitdelta.internal.model.Decoder decoder, String name, org.bitdelta.DeltaModel delta) {
        Map<String, BinaryDelta> deltas = new LinkedHashMap<>();
        for (BinaryDelta matrix : delta.matrices()) {
            deltas.put(matrix.name(), matrix);
        }
        decoder.addTenant(name, "compressed fine-tune '" + name + "'", deltas, delta.tensors());
    }

    /**
     * The repository root: -Dbitdelta.repository.root (as surefire passes it), else the first folder with bitdelta-core/
     * at or above the working directory.
     */
    static Path repositoryRoot() {
        String configured = System.getProperty("bitdelta.repository.root");
        if (configured != null && !configured.isBlank()) {
            return Path.of(configured).toAbsolutePath();
        }
        Path here = Path.of("").toAbsolutePath();
        while (here != null && !Files.isDirectory(here.resolve("bitdelta-core"))) {
            here = here.getParent();
        }
        if (here == null) {
            throw new IllegalStateException("cannot find the repository root (with bitdelta-core/) above " + Path.of("").toAbsolutePath());
        }
        return here;
    }

    /** The folder of a bundled test model of bitdelta-core (stories260K, stories260K-ft-alice, mistral-tiny, ...). */
    static Path bundledModel(String name) {
        Path folder = repositoryRoot().resolve("bitdelta-core/src/test/resources/models").resolve(name);
        if (!Files.isDirectory(folder)) {
            throw new IllegalStateException("bundled model missing: " + folder);
        }
        return folder;
    }
}
