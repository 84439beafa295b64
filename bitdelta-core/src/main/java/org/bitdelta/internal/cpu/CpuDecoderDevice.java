package org.bitdelta.internal.cpu;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.spi.Activations;
import org.bitdelta.spi.DecoderDevice;
import org.bitdelta.spi.DecoderSpec;
import org.bitdelta.spi.MemoryUse;
import org.bitdelta.spi.Projection;
import org.bitdelta.spi.StepInputs;
import org.bitdelta.spi.TenantWeights;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.tensor.Tensor;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.IntStream;

/**
 * A {@link DecoderDevice} on the Java heap: activations are float arrays, the paged KV cache is float arrays
 * (per layer, per block, transposed: [kvWidth, blockSize], so attention runs along positions in vector lanes),
 * and every projection goes through a {@link TensorBackend}'s products. With {@code vectorized} false every
 * operation is a plain loop: the scalar oracle the other devices are tested against.
 */
public final class CpuDecoderDevice implements DecoderDevice {
    private static final VectorSpecies<Float> LANES = FloatVector.SPECIES_PREFERRED;

    private final DecoderSpec spec;
    private final TensorBackend products;
    private final boolean vectorized;
    private final float[][] keyCache;
    private final float[][] valueCache;
    private final float[] baseFinalNorm;
    private final float[][] baseInputNorms;
    private final float[][] basePostAttentionNorms;
    /** [slot] the tenant's weights, null where the slot is empty (slot 0: the base). */
    private final TenantWeights[] tenants;
    /** [slot] norms as floats where the tenant replaces them. */
    private final float[][][] inputNorms;
    private final float[][][] postAttentionNorms;
    private final float[][] finalNorms;
    /** [layer][projection][slot]: the tenant's delta, null where none; a list view is handed to the products. */
    private final BinaryDelta[][][] deltas;
    private final Map<Integer, Long> tenantBytes = new HashMap<>();
    private final List<HeapActivations> buffers = new ArrayList<>();
    private StepInputs inputs;
    private boolean closed;

    /** Activations on the heap: [rows, columns] row-major. */
    record HeapActivations(String name, int rows, int columns, float[] data) implements Activations {
    }

    /**
     * @param products   the backend whose products the projections and the lm_head run on (kept open)
     * @param vectorized false: plain loops everywhere (the scalar oracle)
     */
    public CpuDecoderDevice(DecoderSpec spec, TensorBackend products, boolean vectorized) {
        this.spec = spec;
        this.products = products;
        this.vectorized = vectorized;
        int layers = spec.layerCount();
        long cacheFloats = (long) spec.kvBlocks() * spec.keyValueWidth() * spec.kvBlockSize();
        if (cacheFloats > Integer.MAX_VALUE - 8) {
            throw new BitDeltaException("a KV cache of " + spec.kvBlocks() + " blocks of " + spec.kvBlockSize() + " tokens x "
                    + spec.keyValueWidth() + " values per layer is too large for the Java heap; use fewer cache tokens");
        }
        this.keyCache = new float[layers][(int) cacheFloats];
        this.valueCache = new float[layers][(int) cacheFloats];
        this.baseFinalNorm = spec.finalNorm().toFloatArray();
        this.baseInputNorms = new float[layers][];
        this.basePostAttentionNorms = new float[layers][];
        for (int layer = 0; layer < layers; layer++) {
            baseInputNorms[layer] = spec.layers().get(layer).inputNorm().toFloatArray();
            basePostAttentionNorms[layer] = spec.layers().get(layer).postAttentionNorm().toFloatArray();
        }
        int slots = spec.tenantSlots();
        this.tenants = new TenantWeights[slots];
        this.inputNorms = new float[slots][][];
        this.postAttentionNorms = new float[slots][][];
        this.finalNorms = new float[slots][];
        this.deltas = new BinaryDelta[layers][Projection.values().length][slots];
    }

    @Override
    public DecoderSpec spec() {
        return spec;
    }

    @Override
    public MemoryUse memory() {
        long base = spec.embedding().byteSize() + (spec.lmHead() != spec.embedding() ? spec.lmHead().byteSize() : 0)
                + spec.finalNorm().byteSize();
        for (DecoderSpec.LayerWeights layer : spec.layers()) {
            base += layer.inputNorm().byteSize() + layer.postAttentionNorm().byteSize();
            for (Projection projection : Projection.values()) {
                base += layer.weight(projection).byteSize();
            }
        }
        long kv = 0;
        for (int layer = 0; layer < spec.layerCount(); layer++) {
            kv += 4L * (keyCache[layer].length + valueCache[layer].length);
        }
        long workspace = 0;
        for (HeapActivations buffer : buffers) {
            workspace += 4L * buffer.data.length;
        }
        return new MemoryUse(base, tenantBytes, kv, workspace, -1, -1);
    }

    @Override
    public long loadTenant(int slot, TenantWeights weights) {
        if (slot < 1 || slot >= tenants.length || tenants[slot] != null) {
            throw new IllegalArgumentException("slot " + slot + " is not an empty tenant slot (1 .. " + (tenants.length - 1) + ")");
        }
        tenants[slot] = weights;
        int layers = spec.layerCount();
        inputNorms[slot] = new float[layers][];
        postAttentionNorms[slot] = new float[layers][];
        for (int layer = 0; layer < layers; layer++) {
            inputNorms[slot][layer] = floatsOrNull(weights.inputNorms()[layer]);
            postAttentionNorms[slot][layer] = floatsOrNull(weights.postAttentionNorms()[layer]);
            for (Projection projection : Projection.values()) {
                deltas[layer][projection.ordinal()][slot] = weights.delta(layer, projection);
            }
        }
        finalNorms[slot] = floatsOrNull(weights.finalNorm());
        long bytes = weights.bytes();
        tenantBytes.put(slot, bytes);
        return bytes;
    }

    @Override
    public void unloadTenant(int slot) {
        if (slot < 1 || slot >= tenants.length || tenants[slot] == null) {
            throw new IllegalArgumentException("slot " + slot + " holds no tenant");
        }
        tenants[slot] = null;
        inputNorms[slot] = null;
        postAttentionNorms[slot] = null;
        finalNorms[slot] = null;
        for (BinaryDelta[][] layer : deltas) {
            for (BinaryDelta[] projection : layer) {
                projection[slot] = null;
            }
        }
        tenantBytes.remove(slot);
    }

    private static float[] floatsOrNull(Tensor tensor) {
        return tensor == null ? null : tensor.toFloatArray();
    }

    @Override
    public Activations allocate(String name, int rows, int columns) {
        if (rows < 1 || rows > spec.maxRows() || columns < 1) {
            throw new IllegalArgumentException(name + ": [" + rows + ", " + columns + "] (rows at most " + spec.maxRows() + ")");
        }
        HeapActivations buffer = new HeapActivations(name, rows, columns, new float[Math.multiplyExact(rows, columns)]);
        buffers.add(buffer);
        return buffer;
    }

    @Override
    public void run(StepInputs stepInputs, Runnable operations) {
        if (closed) {
            throw new BitDeltaException("the decoder device is closed");
        }
        if (stepInputs.rows() > spec.maxRows()) {
            throw new IllegalArgumentException(stepInputs.rows() + " rows, more than maxRows " + spec.maxRows());
        }
        for (int row = 0; row < stepInputs.rows(); row++) {
            int slot = stepInputs.slots()[row];
            if (slot < 0 || slot >= tenants.length || (slot > 0 && tenants[slot] == null)) {
                throw new IllegalArgumentException("row " + row + " names tenant slot " + slot + ", which holds no tenant");
            }
        }
        this.inputs = stepInputs;
        operations.run();
    }

    private static float[] data(Activations buffer) {
        return ((HeapActivations) buffer).data;
    }

    // ---------------------------------------------------------------- operations

    @Override
    public void embed(Activations out) {
        float[] x = data(out);
        int hidden = spec.hiddenSize();
        for (int row = 0; row < inputs.rows(); row++) {
            int slot = inputs.slots()[row];
            Tensor table = slot > 0 && tenants[slot].embedding() != null ? tenants[slot].embedding() : spec.embedding();
            long start = (long) inputs.tokens()[row] * hidden;
            for (int k = 0; k < hidden; k++) {
                x[row * hidden + k] = table.getFloat(start + k);
            }
        }
    }

    @Override
    public void rmsNorm(Activations in, Norm norm, int layer, Activations out) {
        float[] input = data(in);
        float[] output = data(out);
        int hidden = spec.hiddenSize();
        boolean outputRows = norm == Norm.FINAL;
        int rows = outputRows ? inputs.outputRows() : inputs.rows();
        for (int row = 0; row < rows; row++) {
            int slot = outputRows ? inputs.outputSlot(row) : inputs.slots()[row];
            float[] weight = switch (norm) {
                case INPUT -> orBase(slot > 0 ? inputNorms[slot][layer] : null, baseInputNorms[layer]);
                case POST_ATTENTION -> orBase(slot > 0 ? postAttentionNorms[slot][layer] : null, basePostAttentionNorms[layer]);
                case FINAL -> orBase(slot > 0 ? finalNorms[slot] : null, baseFinalNorm);
            };
            // HF LlamaRMSNorm: weight * (x / sqrt(mean(x²) + eps)), the mean in float32 (double here: as close or closer).
            int offset = row * hidden;
            double sumOfSquares = 0;
            for (int k = 0; k < hidden; k++) {
                float value = input[offset + k];
                sumOfSquares += value * value;
            }
            float inverse = (float) (1.0 / Math.sqrt((float) (sumOfSquares / hidden) + spec.normEpsilon()));
            for (int k = 0; k < hidden; k++) {
                output[offset + k] = weight[k] * (input[offset + k] * inverse);
            }
        }
    }

    private static float[] orBase(float[] tenantWeight, float[] baseWeight) {
        return tenantWeight != null ? tenantWeight : baseWeight;
    }

    @Override
    public void project(int layer, Projection.Group group, Activations in, Activations out, boolean accumulate) {
        float[] x = data(in);
        float[] y = data(out);
        int rows = inputs.rows();
        int width = out.columns();
        int column = 0;
        int[] tenantOfRow = new int[rows];
        for (Projection projection : group.members()) {
            Tensor weight = spec.layers().get(layer).weight(projection);
            int outputs = Math.toIntExact(weight.dimension(0));
            BinaryDelta[] bySlot = deltas[layer][projection.ordinal()];
            for (int row = 0; row < rows; row++) {
                int slot = inputs.slots()[row];
                tenantOfRow[row] = slot > 0 && bySlot[slot] != null ? slot : -1;
            }
            boolean direct = !accumulate && outputs == width;
            float[] product = direct ? y : new float[rows * outputs];
            products.deltaMatmul(x, rows, weight, Arrays.asList(bySlot), tenantOfRow, product);
            if (!direct) {
                for (int row = 0; row < rows; row++) {
                    int target = row * width + column;
                    int source = row * outputs;
                    if (accumulate) {
                        for (int m = 0; m < outputs; m++) {
                            y[target + m] += product[source + m];
                        }
                    } else {
                        System.arraycopy(product, source, y, target, outputs);
                    }
                }
            }
            column += outputs;
        }
    }

    @Override
    public void rotaryAndCache(int layer, Activations qkv) {
        float[] values = data(qkv);
        int width = qkv.columns();
        int queryWidth = spec.queryWidth();
        int keyValueWidth = spec.keyValueWidth();
        int blockSize = spec.kvBlockSize();
        float[] keys = keyCache[layer];
        float[] cachedValues = valueCache[layer];
        for (int row = 0; row < inputs.rows(); row++) {
            int offset = row * width;
            int position = inputs.positions()[row];
            rotate(values, offset, spec.headCount(), position);
            rotate(values, offset + queryWidth, spec.keyValueHeadCount(), position);
            int cacheSlot = inputs.cacheSlots()[row];
            int blockStart = (cacheSlot / blockSize) * keyValueWidth * blockSize;
            int inBlock = cacheSlot % blockSize;
            for (int i = 0; i < keyValueWidth; i++) {
                keys[blockStart + i * blockSize + inBlock] = values[offset + queryWidth + i];
                cachedValues[blockStart + i * blockSize + inBlock] = values[offset + queryWidth + keyValueWidth + i];
            }
        }
    }

    /** RoPE in HF's rotate_half convention: dimension i pairs with i + d/2 within each head. */
    private void rotate(float[] vectors, int offset, int heads, int position) {
        int headDimension = spec.headDimension();
        int half = headDimension / 2;
        int table = position * half;
        float[] cosines = spec.rotaryCos();
        float[] sines = spec.rotarySin();
        for (int head = 0; head < heads; head++) {
            int base = offset + head * headDimension;
            for (int i = 0; i < half; i++) {
                float cos = cosines[table + i];
                float sin = sines[table + i];
                float first = vectors[base + i];
                float second = vectors[base + i + half];
                vectors[base + i] = first * cos - second * sin;
                vectors[base + i + half] = second * cos + first * sin;
            }
        }
    }

    @Override
    public void attention(int layer, Activations qkv, Activations out) {
        float[] queries = data(qkv);
        float[] output = data(out);
        int width = qkv.columns();
        int queryWidth = spec.queryWidth();
        IntStream rows = IntStream.range(0, inputs.rows());
        (vectorized ? rows.parallel() : rows).forEach(row ->
                attendRow(layer, row, queries, row * width, output, row * queryWidth));
    }

    /**
     * Causal grouped-query attention of one row: query head h reads key/value head h / (heads / kvHeads); the
     * row sees positions first .. p of its sequence, first = p − window + 1 with a sliding window, else 0.
     */
    private void attendRow(int layer, int row, float[] queries, int queryOffset, float[] output, int outputOffset) {
        int headDimension = spec.headDimension();
        int group = spec.headCount() / spec.keyValueHeadCount();
        int blockSize = spec.kvBlockSize();
        int keyValueWidth = spec.keyValueWidth();
        int position = inputs.positions()[row];
        int first = spec.slidingWindow() > 0 ? Math.max(0, position - spec.slidingWindow() + 1) : 0;
        int count = position - first + 1;
        int tableOffset = inputs.sequenceOfRow()[row] * inputs.blocksPerSequence();
        float scale = (float) (1.0 / Math.sqrt(headDimension));
        float[] keys = keyCache[layer];
        float[] values = valueCache[layer];
        float[] scores = new float[count];
        float[] laneSums = new float[LANES.length()];
        for (int head = 0; head < spec.headCount(); head++) {
            int query = queryOffset + head * headDimension;
            int rowBase = (head / group) * headDimension; // first cache row of this head's kv head
            // scores[j] = scale · Σ_d q[d] · K[d, first + j], block by block
            for (int j = 0; j < count; ) {
                int cachePosition = first + j;
                int inBlock = cachePosition % blockSize;
                int run = Math.min(blockSize - inBlock, count - j);
                int base = inputs.blockTables()[tableOffset + cachePosition / blockSize] * keyValueWidth * blockSize + inBlock;
                int done = 0;
                if (vectorized) {
                    for (; done + LANES.length() <= run; done += LANES.length()) {
                        FloatVector sum = FloatVector.zero(LANES);
                        for (int d = 0; d < headDimension; d++) {
                            sum = FloatVector.fromArray(LANES, keys, base + (rowBase + d) * blockSize + done)
                                    .fma(FloatVector.broadcast(LANES, queries[query + d]), sum);
                        }
                        sum.mul(scale).intoArray(scores, j + done);
                    }
                }
                for (; done < run; done++) {
                    float sum = 0;
                    for (int d = 0; d < headDimension; d++) {
                        sum += queries[query + d] * keys[base + (rowBase + d) * blockSize + done];
                    }
                    scores[j + done] = sum * scale;
                }
                j += run;
            }
            // Softmax over the visible positions (float32, max subtracted, as HF's eager attention).
            float max = Float.NEGATIVE_INFINITY;
            for (int j = 0; j < count; j++) {
                max = Math.max(max, scores[j]);
            }
            float total = 0;
            for (int j = 0; j < count; j++) {
                float weight = (float) Math.exp(scores[j] - max);
                scores[j] = weight;
                total += weight;
            }
            float inverseTotal = 1.0f / total;
            // output[d] = Σ_j weight[j] · V[d, first + j] / total
            int out = outputOffset + head * headDimension;
            for (int d = 0; d < headDimension; d++) {
                float sum = 0;
                for (int j = 0; j < count; ) {
                    int cachePosition = first + j;
                    int inBlock = cachePosition % blockSize;
                    int run = Math.min(blockSize - inBlock, count - j);
                    int base = inputs.blockTables()[tableOffset + cachePosition / blockSize] * keyValueWidth * blockSize
                            + (rowBase + d) * blockSize + inBlock;
                    int done = 0;
                    if (vectorized && run >= LANES.length()) {
                        FloatVector lanes = FloatVector.zero(LANES);
                        for (; done + LANES.length() <= run; done += LANES.length()) {
                            lanes = FloatVector.fromArray(LANES, values, base + done).fma(FloatVector.fromArray(LANES, scores, j + done), lanes);
                        }
                        // Lanes summed in lane order: reduceLanes(ADD) sums in another order once C2 compiles it,
                        // and a row's result must not depend on when it runs.
                        lanes.intoArray(laneSums, 0);
                        for (float lane : laneSums) {
                            sum += lane;
                        }
                    }
                    for (; done < run; done++) {
                        sum += scores[j + done] * values[base + done];
                    }
                    j += run;
                }
                output[out + d] = sum * inverseTotal;
            }
        }
    }

    @Override
    public void swiGlu(Activations gateUp, Activations out) {
        float[] input = data(gateUp);
        float[] output = data(out);
        int intermediate = spec.intermediateSize();
        for (int row = 0; row < inputs.rows(); row++) {
            int gate = row * 2 * intermediate;
            int up = gate + intermediate;
            int target = row * intermediate;
            // Scalar Math.exp, not the Vector API's EXP: that one's intrinsic (SVML) and its Java fallback round
            // differently, so a row's result would depend on the JIT tier.
            for (int done = 0; done < intermediate; done++) {
                float g = input[gate + done];
                output[target + done] = g / (1.0f + (float) Math.exp(-g)) * input[up + done];
            }
        }
    }

    @Override
    public void gatherOutputRows(Activations in, Activations out) {
        float[] input = data(in);
        float[] output = data(out);
        int hidden = in.columns();
        for (int i = 0; i < inputs.outputRows(); i++) {
            System.arraycopy(input, inputs.outputRowIndex()[i] * hidden, output, i * hidden, hidden);
        }
    }

    @Override
    public void lmHead(Activations in, Activations logits) {
        float[] input = data(in);
        float[] output = data(logits);
        int hidden = spec.hiddenSize();
        int vocabulary = spec.vocabularySize();
        // Rows grouped by lm_head tensor: one product per distinct lm_head among the output rows.
        Map<Tensor, List<Integer>> rowsOfHead = new IdentityHashMap<>();
        for (int i = 0; i < inputs.outputRows(); i++) {
            int slot = inputs.outputSlot(i);
            Tensor head = slot > 0 && tenants[slot].lmHead() != null ? tenants[slot].lmHead() : spec.lmHead();
            rowsOfHead.computeIfAbsent(head, key -> new ArrayList<>()).add(i);
        }
        for (Map.Entry<Tensor, List<Integer>> group : rowsOfHead.entrySet()) {
            List<Integer> members = group.getValue();
            float[] x = new float[members.size() * hidden];
            for (int m = 0; m < members.size(); m++) {
                System.arraycopy(input, members.get(m) * hidden, x, m * hidden, hidden);
            }
            float[] y = new float[members.size() * vocabulary];
            products.matmul(x, members.size(), group.getKey(), y);
            for (int m = 0; m < members.size(); m++) {
                System.arraycopy(y, m * vocabulary, output, members.get(m) * vocabulary, vocabulary);
            }
        }
    }

    @Override
    public void read(Activations source, int rows, float[] destination) {
        checkRows(source, rows);
        System.arraycopy(data(source), 0, destination, 0, rows * source.columns());
    }

    @Override
    public void write(float[] source, int rows, Activations target) {
        checkRows(target, rows);
        System.arraycopy(source, 0, data(target), 0, rows * target.columns());
    }

    private static void checkRows(Activations buffer, int rows) {
        if (rows < 0 || rows > buffer.rows()) {
            throw new IllegalArgumentException(buffer.name() + ": " + rows + " rows of " + buffer.rows());
        }
    }

    @Override
    public void close() {
        closed = true;
        buffers.clear();
    }
}
