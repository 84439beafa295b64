package org.bitdelta.testing;

import org.bitdelta.BinaryDelta;
import org.bitdelta.internal.model.RotaryEmbedding;
import org.bitdelta.spi.Activations;
import org.bitdelta.spi.DecoderDevice;
import org.bitdelta.spi.DecoderDevice.Norm;
import org.bitdelta.spi.DecoderSpec;
import org.bitdelta.spi.Projection;
import org.bitdelta.spi.Sampling;
import org.bitdelta.spi.StepInputs;
import org.bitdelta.spi.TenantWeights;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every {@link DecoderDevice} operation of a backend under test against another backend's (the scalar oracle's),
 * one operation at a time, on a random synthetic model: random base weights, tenants with random 1-bit deltas
 * (some also with their own embeddings, lm_head and norms), a step mixing prefill chunks and decode rows of base
 * and tenant sequences, over KV blocks scattered in the cache and partly filled.
 */
public final class DecoderDeviceConformance {
    /**
     * The shape of a synthetic model and of its step.
     *
     * @param window     sliding window (0: none)
     * @param tenants    loaded tenants (each gets a slot; odd ones replace embeddings, lm_head and norms too)
     * @param sequences  sequences in the step; the first half are prefill chunks, the rest decode rows
     */
    public record Shape(DType dtype, int hidden, int intermediate, int heads, int keyValueHeads, int headDimension,
                        int vocabulary, int context, int window, boolean tied, int layers, int blockSize, int tenants,
                        int sequences) {
        @Override
        public String toString() {
            return dtype + " hidden " + hidden + " ff " + intermediate + " heads " + heads + "/" + keyValueHeads + " x " + headDimension
                    + " vocab " + vocabulary + " context " + context + (window > 0 ? " window " + window : "") + (tied ? " tied" : "")
                    + " blocks of " + blockSize + ", " + tenants + " tenants, " + sequences + " sequences";
        }
    }

    private final Shape shape;
    private final long seed;
    private final Random random;
    private final DecoderSpec spec;
    private final List<TenantWeights> tenantWeights = new ArrayList<>();

    public DecoderDeviceConformance(Shape shape, long seed) {
        this.shape = shape;
        this.seed = seed;
        this.random = new Random(seed);
        int hidden = shape.hidden();
        int queryWidth = shape.heads() * shape.headDimension();
        int keyValueWidth = shape.keyValueHeads() * shape.headDimension();
        List<DecoderSpec.LayerWeights> layers = new ArrayList<>();
        for (int layer = 0; layer < shape.layers(); layer++) {
            layers.add(new DecoderSpec.LayerWeights(norm("in" + layer), norm("post" + layer),
                    matrix("q" + layer, queryWidth, hidden), matrix("k" + layer, keyValueWidth, hidden),
                    matrix("v" + layer, keyValueWidth, hidden), matrix("o" + layer, hidden, queryWidth),
                    matrix("gate" + layer, shape.intermediate(), hidden), matrix("up" + layer, shape.intermediate(), hidden),
                    matrix("down" + layer, hidden, shape.intermediate())));
        }
        Tensor embedding = matrix("embedding", shape.vocabulary(), hidden);
        Tensor lmHead = shape.tied() ? embedding : matrix("lm_head", shape.vocabulary(), hidden);
        float[][] rotary = new RotaryEmbedding(10000.0, null).tables(shape.context(), shape.headDimension());
        int maxRows = 64;
        int kvBlocks = 4 * shape.sequences() * ((shape.context() + shape.blockSize() - 1) / shape.blockSize()) + 3;
        this.spec = new DecoderSpec(hidden, shape.intermediate(), shape.heads(), shape.keyValueHeads(), shape.headDimension(),
                shape.vocabulary(), shape.context(), 1e-5f, shape.window(), rotary[0], rotary[1], embedding, lmHead, norm("final"),
                layers, maxRows, shape.blockSize(), kvBlocks, shape.tenants() + 2);
        for (int tenant = 0; tenant < shape.tenants(); tenant++) {
            boolean replaces = tenant % 2 == 1;
            BinaryDelta[][] deltas = new BinaryDelta[shape.layers()][Projection.values().length];
            Tensor[] inputNorms = new Tensor[shape.layers()];
            Tensor[] postNorms = new Tensor[shape.layers()];
            for (int layer = 0; layer < shape.layers(); layer++) {
                for (Projection projection : Projection.values()) {
                    // Tenant 2 leaves the value and down projections to the base: rows of one product mix "delta" and "none".
                    if (tenant == 2 && (projection == Projection.VALUE || projection == Projection.DOWN)) {
                        continue;
                    }
                    Tensor weight = layers.get(layer).weight(projection);
                    deltas[layer][projection.ordinal()] = delta("t" + tenant + "." + projection + layer,
                            (int) weight.dimension(0), (int) weight.dimension(1), tenant % 3 == 0);
                }
                inputNorms[layer] = replaces ? norm("t" + tenant + "in" + layer) : null;
                postNorms[layer] = replaces && layer % 2 == 0 ? norm("t" + tenant + "post" + layer) : null;
            }
            Tensor tenantEmbedding = replaces ? matrix("t" + tenant + "embedding", shape.vocabulary(), hidden) : null;
            Tensor tenantHead = shape.tied() ? tenantEmbedding : replaces ? matrix("t" + tenant + "lm_head", shape.vocabulary(), hidden) : null;
            tenantWeights.add(new TenantWeights("t" + tenant, deltas, tenantEmbedding, tenantHead, replaces ? norm("t" + tenant + "final") : null,
                    inputNorms, postNorms));
        }
    }

    public DecoderSpec spec() {
        return spec;
    }

    public List<TenantWeights> tenants() {
        return tenantWeights;
    }

    /** Opens {@code backend}'s device on this model with every tenant loaded in slots 1, 2, ... */
    public DecoderDevice open(TensorBackend backend) {
        DecoderDevice device = backend.openDecoder(spec);
        for (int tenant = 0; tenant < tenantWeights.size(); tenant++) {
            device.loadTenant(tenant + 1, tenantWeights.get(tenant));
        }
        return device;
    }

    /**
     * Runs every operation on both devices and compares: each within {@code tolerance} relative error (L2 over the
     * output), greedy sampling exactly.
     */
    public void compare(TensorBackend underTest, TensorBackend oracle, double tolerance) {
        try (DecoderDevice tested = open(underTest); DecoderDevice reference = open(oracle)) {
            Steps steps = steps();
            String where = shape + ", seed " + seed + " (replay with -Dbitdelta.test.seed=" + seed + ")";
            int hidden = spec.hiddenSize();
            Pair residual = new Pair(tested, reference, "residual", hidden);
            Pair normed = new Pair(tested, reference, "normed", hidden);
            Pair queryKeyValue = new Pair(tested, reference, "qkv", spec.width(Projection.Group.QKV));
            Pair attended = new Pair(tested, reference, "attended", spec.queryWidth());
            Pair gateUp = new Pair(tested, reference, "gate|up", spec.width(Projection.Group.GATE_UP));
            Pair feedForward = new Pair(tested, reference, "feed-forward", spec.intermediateSize());
            Pair outputRows = new Pair(tested, reference, "output rows", hidden);
            Pair logits = new Pair(tested, reference, "logits", spec.vocabularySize());

            // Step 1: the history of every sequence goes into the KV cache (random q|k|v through rotaryAndCache).
            for (int layer = 0; layer < spec.layerCount(); layer++) {
                int l = layer;
                queryKeyValue.writeRandom(steps.history.rows());
                both(tested, reference, steps.history, device -> device.rotaryAndCache(l, queryKeyValue.on(device)));
            }
            // Step 2: the new rows, one operation at a time.
            StepInputs step = steps.current;
            int rows = step.rows();
            both(tested, reference, step, device -> device.embed(residual.on(device)));
            residual.assertClose("embed", rows, 0, where);
            for (int layer = 0; layer < spec.layerCount(); layer++) {
                int l = layer;
                for (Norm norm : List.of(Norm.INPUT, Norm.POST_ATTENTION)) {
                    residual.writeRandom(rows);
                    both(tested, reference, step, device -> device.rmsNorm(residual.on(device), norm, l, normed.on(device)));
                    normed.assertClose("rmsNorm " + norm + " layer " + l, rows, tolerance, where);
                }
                for (Projection.Group group : Projection.Group.values()) {
                    Pair in = switch (group) {
                        case QKV, GATE_UP -> normed;
                        case ATTENTION_OUTPUT -> attended;
                        case FEED_FORWARD_OUTPUT -> feedForward;
                    };
                    Pair out = switch (group) {
                        case QKV -> queryKeyValue;
                        case GATE_UP -> gateUp;
                        case ATTENTION_OUTPUT, FEED_FORWARD_OUTPUT -> residual;
                    };
                    boolean accumulate = out == residual;
                    in.writeRandom(rows);
                    out.writeRandom(rows);
                    both(tested, reference, step, device -> device.project(l, group, in.on(device), out.on(device), accumulate));
                    out.assertClose("project " + group + " layer " + l + (accumulate ? " (accumulate)" : ""), rows, tolerance, where);
                }
                queryKeyValue.writeRandom(rows);
                both(tested, reference, step, device -> device.rotaryAndCache(l, queryKeyValue.on(device)));
                queryKeyValue.assertClose("rotaryAndCache layer " + l + " (rotated q|k)", rows, tolerance, where);
                both(tested, reference, step, device -> device.attention(l, queryKeyValue.on(device), attended.on(device)));
                attended.assertClose("attention layer " + l, rows, tolerance, where);
            }
            gateUp.writeRandom(rows);
            both(tested, reference, step, device -> device.swiGlu(gateUp.on(device), feedForward.on(device)));
            feedForward.assertClose("swiGlu", rows, tolerance, where);
            residual.writeRandom(rows);
            both(tested, reference, step, device -> device.gatherOutputRows(residual.on(device), outputRows.on(device)));
            outputRows.assertClose("gatherOutputRows", step.outputRows(), 0, where);
            both(tested, reference, step, device -> device.rmsNorm(outputRows.on(device), Norm.FINAL, 0, normed.on(device)));
            normed.assertClose("rmsNorm FINAL", step.outputRows(), tolerance, where);
            both(tested, reference, step, device -> device.lmHead(normed.on(device), logits.on(device)));
            logits.assertClose("lmHead", step.outputRows(), tolerance, where);

            // Sampling on the same logits: greedy must agree exactly.
            int outputs = step.outputRows();
            logits.writeRandom(outputs);
            float[] zero = new float[outputs];
            int[] noLimit = new int[outputs];
            float[] all = new float[outputs];
            Arrays.fill(all, 1f);
            Sampling greedy = new Sampling(zero, noLimit, all, new long[outputs], new int[outputs]);
            int[] testedTokens = new int[outputs];
            int[] referenceTokens = new int[outputs];
            tested.sample(logits.tested, greedy, outputs, testedTokens);
            reference.sample(logits.reference, greedy, outputs, referenceTokens);
            assertArrayEquals(referenceTokens, testedTokens, "greedy sampling, " + where);
        }
    }

    private static void both(DecoderDevice tested, DecoderDevice reference, StepInputs inputs, java.util.function.Consumer<DecoderDevice> operation) {
        tested.run(inputs, () -> operation.accept(tested));
        reference.run(inputs, () -> operation.accept(reference));
    }

    /** One buffer on each device, written with the same random values. */
    private final class Pair {
        final Activations tested;
        final Activations reference;
        final DecoderDevice testedDevice;
        final DecoderDevice referenceDevice;
        final int columns;

        Pair(DecoderDevice testedDevice, DecoderDevice referenceDevice, String name, int columns) {
            this.testedDevice = testedDevice;
            this.referenceDevice = referenceDevice;
            this.tested = testedDevice.allocate(name, spec.maxRows(), columns);
            this.reference = referenceDevice.allocate(name, spec.maxRows(), columns);
            this.columns = columns;
        }

        Activations on(DecoderDevice device) {
            return device == testedDevice ? tested : reference;
        }

        void writeRandom(int rows) {
            float[] values = new float[rows * columns];
            for (int i = 0; i < values.length; i++) {
                values[i] = (float) random.nextGaussian();
            }
            testedDevice.write(values, rows, tested);
            referenceDevice.write(values, rows, reference);
        }

        void assertClose(String what, int rows, double tolerance, String where) {
            float[] actual = new float[rows * columns];
            float[] expected = new float[rows * columns];
            testedDevice.read(tested, rows, actual);
            referenceDevice.read(reference, rows, expected);
            double error = Norms.relativeError(actual, expected);
            assertTrue(error <= tolerance, what + ": relative error " + error + " over " + tolerance + ", " + where);
        }
    }

    /** Two steps: the sequences' history, then their new rows (prefill chunks, then decode rows). */
    private record Steps(StepInputs history, StepInputs current) {
    }

    private Steps steps() {
        int sequences = shape.sequences();
        int blockSize = shape.blockSize();
        int widest = (shape.context() + blockSize - 1) / blockSize;
        // Blocks handed out in a shuffled order, so that a sequence's blocks are scattered in the cache.
        List<Integer> free = new ArrayList<>();
        for (int block = 0; block < spec.kvBlocks(); block++) {
            free.add(block);
        }
        java.util.Collections.shuffle(free, random);
        int[] blockTables = new int[sequences * widest];
        for (int i = 0; i < blockTables.length; i++) {
            blockTables[i] = free.get(i);
        }
        int[] historyLength = new int[sequences];
        int[] newLength = new int[sequences];
        int[] slotOf = new int[sequences];
        int budget = spec.maxRows();
        for (int s = 0; s < sequences; s++) {
            boolean prefill = s < (sequences + 1) / 2;
            newLength[s] = prefill ? 1 + random.nextInt(Math.min(12, budget / sequences)) : 1;
            historyLength[s] = random.nextInt(Math.max(1, Math.min(shape.context() - newLength[s], budget / sequences)));
            slotOf[s] = random.nextInt(shape.tenants() + 1);
        }
        StepInputs history = inputs(sequences, widest, blockTables, slotOf, new int[sequences], historyLength, false);
        StepInputs current = inputs(sequences, widest, blockTables, slotOf, historyLength, newLength, true);
        return new Steps(history, current);
    }

    private StepInputs inputs(int sequences, int widest, int[] blockTables, int[] slotOf, int[] start, int[] count, boolean outputs) {
        int rows = Arrays.stream(count).sum();
        int[] tokens = new int[Math.max(rows, 1)];
        int[] slots = new int[tokens.length];
        int[] positions = new int[tokens.length];
        int[] sequenceOfRow = new int[tokens.length];
        int[] cacheSlots = new int[tokens.length];
        List<Integer> outputRowList = new ArrayList<>();
        int blockSize = shape.blockSize();
        for (int s = 0, row = 0; s < sequences; s++) {
            for (int i = 0; i < count[s]; i++, row++) {
                int position = start[s] + i;
                tokens[row] = random.nextInt(shape.vocabulary());
                slots[row] = slotOf[s];
                positions[row] = position;
                sequenceOfRow[row] = s;
                cacheSlots[row] = blockTables[s * widest + position / blockSize] * blockSize + position % blockSize;
                // Output rows: the last row of each sequence, and every row of the first sequence.
                if (outputs && (s == 0 || i == count[s] - 1)) {
                    outputRowList.add(row);
                }
            }
        }
        int[] outputRowIndex = outputRowList.stream().mapToInt(Integer::intValue).toArray();
        return new StepInputs(rows, tokens, slots, positions, sequenceOfRow, cacheSlots, sequences, widest, blockTables,
                outputRowIndex.length, outputRowIndex);
    }

    // ---------------------------------------------------------------- random weights

    private Tensor matrix(String name, int rows, int columns) {
        float[] values = SyntheticModels.gaussian(random, rows * columns, 1.0 / Math.sqrt(columns));
        return SyntheticModels.tensor(name, shape.dtype(), values, rows, columns);
    }

    private Tensor norm(String name) {
        float[] values = new float[shape.hidden()];
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) (1 + 0.25 * random.nextGaussian());
        }
        return SyntheticModels.tensor(name, shape.dtype(), values, shape.hidden());
    }

    private BinaryDelta delta(String name, int rows, int columns, boolean perRow) {
        int bytesPerRow = BinaryDelta.bytesPerRow(columns);
        MemorySegment signs = MemorySegment.ofArray(new byte[rows * bytesPerRow]);
        for (int row = 0; row < rows; row++) {
            for (int column = 0; column < columns; column++) {
                if (random.nextBoolean()) {
                    long at = (long) row * bytesPerRow + column / 8;
                    signs.set(ValueLayout.JAVA_BYTE, at, (byte) (signs.get(ValueLayout.JAVA_BYTE, at) | (1 << (column % 8))));
                }
            }
        }
        float[] scales = new float[perRow ? rows : 1];
        for (int i = 0; i < scales.length; i++) {
            scales[i] = (float) (0.2 * (0.5 + random.nextDouble()) / Math.sqrt(columns));
        }
        return new BinaryDelta(name, rows, columns, signs, scales);
    }
}
