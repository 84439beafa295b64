package org.bitdelta.internal.model;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.DeltaLinear;
import org.bitdelta.internal.safetensors.ModelWeights;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.IntStream;

/**
 * A Llama/Mistral decoder over one memory-mapped base model that serves many tenants at once: each sequence of
 * a batch names its tenant, every projection is a {@link DeltaLinear}, and a tenant may also replace the
 * embeddings, norms and lm_head with its own tensors.
 *
 * <p>The forward pass is one readable path from token ids to logits: embed, then per layer RMSNorm → q/k/v →
 * RoPE → causal (optionally sliding-window) grouped-query attention over the KV cache → o → residual, RMSNorm →
 * SwiGLU → residual; final RMSNorm → lm_head. Everything is computed in float32 whatever the weights' dtype.
 *
 * <p>Thread safety: forward passes may run concurrently; {@link #addTenant} and {@link #removeTenant} wait for
 * the passes in flight to finish (so a pass never sees half a tenant), and a sequence whose tenant was removed
 * gets no logits from later passes while the other sequences of the batch go on.
 */
public final class Decoder implements AutoCloseable {
    public static final String EMBEDDING = "model.embed_tokens.weight";
    public static final String FINAL_NORM = "model.norm.weight";
    public static final String LM_HEAD = "lm_head.weight";
    private static final VectorSpecies<Float> LANES = FloatVector.SPECIES_PREFERRED;
    private static final Pattern LAYER_TENSOR = Pattern.compile("model\\.layers\\.(\\d+)\\.(.+)\\.weight");

    private final ModelConfig config;
    private final ModelWeights weights;
    private final TensorBackend backend;
    private final boolean ownsBackend;
    private final Tensor embedding;
    private final Tensor outputWeight;
    private final float[] finalNorm;
    private final Layer[] layers;
    /** cos/sin of position · inverse frequency, [contextLength, headDimension / 2], rounded as HF does in float32. */
    private final float[] ropeCos;
    private final float[] ropeSin;
    private final ReentrantReadWriteLock tenantLock = new ReentrantReadWriteLock();
    private final Tenant baseTenant;
    private volatile Map<String, Tenant> tenants;

    private record Layer(float[] inputNorm, float[] postAttentionNorm, DeltaLinear[] projections) {
        DeltaLinear projection(Projection projection) {
            return projections[projection.ordinal()];
        }
    }

    /**
     * What a tenant changes: the layer-local index of its delta in each projection ({@link DeltaLinear#BASE} where
     * it has none) and its own tensors where it replaces the base's (null: the base's).
     */
    public static final class Tenant {
        private final String name;
        private final int[][] slots;
        private final Tensor embedding;
        private final Tensor outputWeight;
        private final float[][] inputNorms;
        private final float[][] postAttentionNorms;
        private final float[] finalNorm;
        private volatile boolean removed;

        private Tenant(String name, int[][] slots, Tensor embedding, Tensor outputWeight, float[][] inputNorms,
                       float[][] postAttentionNorms, float[] finalNorm) {
            this.name = name;
            this.slots = slots;
            this.embedding = embedding;
            this.outputWeight = outputWeight;
            this.inputNorms = inputNorms;
            this.postAttentionNorms = postAttentionNorms;
            this.finalNorm = finalNorm;
        }

        public String name() {
            return name;
        }

        public boolean removed() {
            return removed;
        }
    }

    /**
     * One sequence's state between passes: its tenant and its KV cache (per layer, keys and values each as
     * [kvHead · dimension, capacity]: positions contiguous). Not thread-safe; one pass at a time.
     */
    public static final class Sequence {
        private final Tenant tenant;
        private final float[][] keys;
        private final float[][] values;
        private int length;

        private Sequence(Tenant tenant, int layerCount) {
            this.tenant = tenant;
            this.keys = new float[layerCount][];
            this.values = new float[layerCount][];
            Arrays.fill(keys, new float[0]);
            Arrays.fill(values, new float[0]);
        }

        public Tenant tenant() {
            return tenant;
        }

        /** Tokens already in the cache: the position of the next token. */
        public int length() {
            return length;
        }
    }

    private Decoder(ModelConfig config, ModelWeights weights, TensorBackend backend, boolean ownsBackend) {
        this.config = config;
        this.weights = weights;
        this.backend = backend;
        this.ownsBackend = ownsBackend;
        int hidden = config.hiddenSize();
        this.embedding = requireWeight(EMBEDDING, config.vocabularySize(), hidden);
        // A tied model's lm_head is its embedding matrix (HF then neither needs nor reads lm_head.weight).
        this.outputWeight = config.tiedEmbeddings() ? embedding : requireWeight(LM_HEAD, config.vocabularySize(), hidden);
        this.finalNorm = requireWeight(FINAL_NORM, hidden).toFloatArray();
        this.layers = new Layer[config.layerCount()];
        for (int layer = 0; layer < layers.length; layer++) {
            DeltaLinear[] projections = new DeltaLinear[Projection.values().length];
            for (Projection projection : Projection.values()) {
                long[] shape = projectionShape(projection);
                projections[projection.ordinal()] = DeltaLinear.of(
                        requireWeight(projection.weightName(layer), shape[0], shape[1]), List.of(), backend);
            }
            layers[layer] = new Layer(
                    requireWeight(layerNormName(layer, "input_layernorm"), hidden).toFloatArray(),
                    requireWeight(layerNormName(layer, "post_attention_layernorm"), hidden).toFloatArray(),
                    projections);
        }
        int half = config.headDimension() / 2;
        this.ropeCos = new float[config.contextLength() * half];
        this.ropeSin = new float[config.contextLength() * half];
        for (int i = 0; i < half; i++) {
            // As transformers computes it: inv_freq = 1 / theta^(2i/d) in float32, angle = position * inv_freq in float32.
            float exponent = (float) (2 * i) / config.headDimension();
            float inverseFrequency = (float) (1.0 / (float) Math.pow(config.ropeTheta(), exponent));
            for (int position = 0; position < config.contextLength(); position++) {
                float angle = position * inverseFrequency;
                ropeCos[position * half + i] = (float) Math.cos(angle);
                ropeSin[position * half + i] = (float) Math.sin(angle);
            }
        }
        int[][] baseSlots = new int[layers.length][Projection.values().length];
        for (int[] row : baseSlots) {
            Arrays.fill(row, DeltaLinear.BASE);
        }
        this.baseTenant = new Tenant("base", baseSlots, null, null, new float[layers.length][], new float[layers.length][], null);
        this.tenants = Map.of();
    }

    /**
     * Opens a Hugging Face model folder (config.json + safetensors, sharded or not), weights memory-mapped.
     *
     * @param ownsBackend whether {@link #close()} also closes the backend
     */
    public static Decoder load(Path folder, TensorBackend backend, boolean ownsBackend) {
        if (!java.nio.file.Files.isDirectory(folder)) {
            throw new BitDeltaException(folder + ": no such model folder (a Hugging Face folder with config.json and safetensors weights)");
        }
        ModelConfig config = ModelConfig.read(folder);
        ModelWeights weights = ModelWeights.open(folder);
        try {
            return new Decoder(config, weights, backend, ownsBackend);
        } catch (RuntimeException e) {
            weights.close();
            throw e;
        }
    }

    private static String layerNormName(int layer, String norm) {
        return "model.layers." + layer + "." + norm + ".weight";
    }

    private long[] projectionShape(Projection projection) {
        long hidden = config.hiddenSize();
        long queryWidth = (long) config.headCount() * config.headDimension();
        long keyValueWidth = (long) config.keyValueHeadCount() * config.headDimension();
        long intermediate = config.intermediateSize();
        return switch (projection) {
            case QUERY -> new long[]{queryWidth, hidden};
            case KEY, VALUE -> new long[]{keyValueWidth, hidden};
            case OUTPUT -> new long[]{hidden, queryWidth};
            case GATE, UP -> new long[]{intermediate, hidden};
            case DOWN -> new long[]{hidden, intermediate};
        };
    }

    private Tensor requireWeight(String name, long... shape) {
        if (!weights.contains(name)) {
            throw new BitDeltaException(weights.location() + ": has no tensor '" + name + "', which a " + config.modelType()
                    + " model with the config " + config.configFile() + " needs");
        }
        Tensor tensor = weights.tensor(name);
        checkTensor(tensor, weights.fileOf(name).toString(), shape);
        return tensor;
    }

    private static void checkTensor(Tensor tensor, String where, long... shape) {
        if (tensor.dtype() != DType.F32 && tensor.dtype() != DType.F16 && tensor.dtype() != DType.BF16) {
            throw new BitDeltaException(where + ": tensor '" + tensor.name() + "' is " + tensor.dtype() + "; weights must be F32, F16 or BF16");
        }
        if (!Arrays.equals(tensor.shape(), shape)) {
            throw new BitDeltaException(where + ": tensor '" + tensor.name() + "' has shape " + Arrays.toString(tensor.shape())
                    + " but the config asks for " + Arrays.toString(shape));
        }
    }

    public ModelConfig config() {
        return config;
    }

    public ModelWeights weights() {
        return weights;
    }

    public TensorBackend backend() {
        return backend;
    }

    // ---------------------------------------------------------------- tenants

    /** The tenant named {@code name}: "base" or a loaded one. */
    public Tenant tenant(String name) {
        if (baseTenant.name.equals(name)) {
            return baseTenant;
        }
        Tenant tenant = tenants.get(name);
        if (tenant == null) {
            throw new BitDeltaException("tenant '" + name + "' is not loaded (loaded: " + tenantNames() + ")");
        }
        return tenant;
    }

    /** "base" first, then the loaded tenants in the order they were added. */
    public List<String> tenantNames() {
        List<String> names = new ArrayList<>();
        names.add(baseTenant.name);
        names.addAll(tenants.keySet());
        return names;
    }

    /**
     * Adds a tenant. Everything is checked before anything changes, so a refused tenant leaves the model as it was.
     *
     * @param source   where the tenant comes from, for error messages (a file name)
     * @param deltas   projection weight name → its 1-bit delta; projections not named use the base weight
     * @param replaced tensor name → the tenant's own tensor (embeddings, norms, lm_head)
     */
    public void addTenant(String name, String source, Map<String, BinaryDelta> deltas, Map<String, Tensor> replaced) {
        if (name == null || name.isBlank()) {
            throw new BitDeltaException("a tenant needs a non-blank name");
        }
        if (name.equals(baseTenant.name)) {
            throw new BitDeltaException("'" + name + "' names the base model itself and cannot be a tenant's name");
        }
        BinaryDelta[][] deltaOf = new BinaryDelta[layers.length][Projection.values().length];
        for (Map.Entry<String, BinaryDelta> entry : deltas.entrySet()) {
            int[] place = projectionOf(entry.getKey());
            if (place == null) {
                throw new BitDeltaException(source + ": has a delta for '" + entry.getKey() + "', which is not a projection of this "
                        + config.layerCount() + "-layer " + config.modelType() + " model");
            }
            BinaryDelta delta = entry.getValue();
            long[] shape = projectionShape(Projection.values()[place[1]]);
            if (delta.rows() != shape[0] || delta.cols() != shape[1]) {
                throw new BitDeltaException(source + ": delta '" + entry.getKey() + "' is " + delta.rows() + "x" + delta.cols()
                        + " but the base weight is " + shape[0] + "x" + shape[1]);
            }
            deltaOf[place[0]][place[1]] = delta;
        }
        int hidden = config.hiddenSize();
        Tensor tenantEmbedding = null;
        Tensor tenantOutput = null;
        float[] tenantFinalNorm = null;
        float[][] inputNorms = new float[layers.length][];
        float[][] postAttentionNorms = new float[layers.length][];
        for (Map.Entry<String, Tensor> entry : replaced.entrySet()) {
            String tensorName = entry.getKey();
            Tensor tensor = entry.getValue().withName(tensorName);
            Matcher matcher = LAYER_TENSOR.matcher(tensorName);
            if (tensorName.equals(EMBEDDING)) {
                checkTensor(tensor, source, config.vocabularySize(), hidden);
                tenantEmbedding = tensor;
            } else if (tensorName.equals(LM_HEAD)) {
                if (config.tiedEmbeddings()) {
                    throw new BitDeltaException(source + ": replaces '" + LM_HEAD + "' but the base ties it to the embeddings ("
                            + config.configFile() + ": tie_word_embeddings); replace '" + EMBEDDING + "' instead");
                }
                checkTensor(tensor, source, config.vocabularySize(), hidden);
                tenantOutput = tensor;
            } else if (tensorName.equals(FINAL_NORM)) {
                checkTensor(tensor, source, hidden);
                tenantFinalNorm = tensor.toFloatArray();
            } else if (matcher.matches() && Integer.parseInt(matcher.group(1)) < layers.length
                    && (matcher.group(2).equals("input_layernorm") || matcher.group(2).equals("post_attention_layernorm"))) {
                checkTensor(tensor, source, hidden);
                int layer = Integer.parseInt(matcher.group(1));
                (matcher.group(2).equals("input_layernorm") ? inputNorms : postAttentionNorms)[layer] = tensor.toFloatArray();
            } else if (projectionOf(tensorName) != null) {
                throw new BitDeltaException(source + ": holds projection '" + tensorName + "' as a full tensor; only 1-bit deltas"
                        + " of projections can be served from a shared base");
            } else {
                throw new BitDeltaException(source + ": replaces tensor '" + tensorName + "', which this decoder does not use"
                        + " (it uses the embeddings, norms, lm_head and the seven projections of each layer)");
            }
        }
        if (config.tiedEmbeddings()) {
            tenantOutput = tenantEmbedding;
        }
        ReentrantReadWriteLock.WriteLock lock = tenantLock.writeLock();
        lock.lock();
        try {
            if (tenants.containsKey(name)) {
                throw new BitDeltaException("a tenant named '" + name + "' is already loaded; remove it first");
            }
            int[][] slots = new int[layers.length][Projection.values().length];
            for (int layer = 0; layer < layers.length; layer++) {
                for (Projection projection : Projection.values()) {
                    BinaryDelta delta = deltaOf[layer][projection.ordinal()];
                    slots[layer][projection.ordinal()] = delta == null ? DeltaLinear.BASE
                            : layers[layer].projection(projection).addTenant(delta);
                }
            }
            Map<String, Tenant> next = new LinkedHashMap<>(tenants);
            next.put(name, new Tenant(name, slots, tenantEmbedding, tenantOutput, inputNorms, postAttentionNorms, tenantFinalNorm));
            tenants = Collections.unmodifiableMap(next);
        } finally {
            lock.unlock();
        }
    }

    /** Removes a tenant once the passes in flight have finished; its sequences get no logits from then on. */
    public void removeTenant(String name) {
        ReentrantReadWriteLock.WriteLock lock = tenantLock.writeLock();
        lock.lock();
        try {
            Tenant tenant = tenants.get(name);
            if (tenant == null) {
                throw new BitDeltaException(baseTenant.name.equals(name) ? "the base model cannot be removed"
                        : "tenant '" + name + "' is not loaded (loaded: " + tenantNames() + ")");
            }
            tenant.removed = true;
            for (int layer = 0; layer < layers.length; layer++) {
                for (Projection projection : Projection.values()) {
                    int slot = tenant.slots[layer][projection.ordinal()];
                    if (slot != DeltaLinear.BASE) {
                        layers[layer].projection(projection).removeTenant(slot);
                    }
                }
            }
            Map<String, Tenant> next = new LinkedHashMap<>(tenants);
            next.remove(name);
            tenants = Collections.unmodifiableMap(next);
        } finally {
            lock.unlock();
        }
    }

    /** [layer, projection ordinal] of a projection weight's name, or null. */
    private int[] projectionOf(String tensorName) {
        Matcher matcher = LAYER_TENSOR.matcher(tensorName);
        if (!matcher.matches()) {
            return null;
        }
        int layer;
        try {
            layer = Integer.parseInt(matcher.group(1));
        } catch (NumberFormatException e) {
            return null; // more digits than an int: not a layer of this model
        }
        if (layer >= layers.length) {
            return null;
        }
        for (Projection projection : Projection.values()) {
            if (projection.weightName(layer).equals(tensorName)) {
                return new int[]{layer, projection.ordinal()};
            }
        }
        return null;
    }

    // ---------------------------------------------------------------- forward

    /** A new, empty sequence for the tenant named {@code tenantName}. */
    public Sequence newSequence(String tenantName) {
        return new Sequence(tenant(tenantName), layers.length);
    }

    /**
     * Runs the next tokens of each sequence through the model, appending them to the sequences' KV caches.
     *
     * @param sequences    the batch; each at most once
     * @param tokens       tokens.get(i): the next tokens of sequences.get(i) (at least one)
     * @param allPositions true: logits for every new token ([n, vocab]); false: for the last one only ([1, vocab])
     * @return logits per sequence, row-major; null for a sequence whose tenant has been removed (its cache is
     * left as it was, and the others are computed as if it were not in the batch)
     */
    public List<float[]> forward(List<Sequence> sequences, List<int[]> tokens, boolean allPositions) {
        if (sequences.size() != tokens.size()) {
            throw new IllegalArgumentException(sequences.size() + " sequences but " + tokens.size() + " token arrays");
        }
        IdentityHashMap<Sequence, Boolean> seen = new IdentityHashMap<>();
        for (int s = 0; s < sequences.size(); s++) {
            int[] chunk = tokens.get(s);
            Sequence sequence = sequences.get(s);
            if (seen.put(sequence, Boolean.TRUE) != null) {
                throw new IllegalArgumentException("sequence " + s + " appears twice in one batch");
            }
            if (chunk.length == 0) {
                throw new IllegalArgumentException("sequence " + s + " (tenant '" + sequence.tenant.name + "') has no tokens to run");
            }
            if ((long) sequence.length + chunk.length > config.contextLength()) {
                throw new BitDeltaException("sequence " + s + " (tenant '" + sequence.tenant.name + "') would be "
                        + ((long) sequence.length + chunk.length) + " tokens long, more than the model's context of "
                        + config.contextLength() + " (" + config.configFile() + ": max_position_embeddings)");
            }
            for (int token : chunk) {
                if (token < 0 || token >= config.vocabularySize()) {
                    throw new BitDeltaException("sequence " + s + " has token id " + token + " outside the vocabulary [0, "
                            + config.vocabularySize() + ")");
                }
            }
        }
        ReentrantReadWriteLock.ReadLock lock = tenantLock.readLock();
        lock.lock();
        try {
            List<Integer> live = new ArrayList<>();
            for (int s = 0; s < sequences.size(); s++) {
                if (!sequences.get(s).tenant.removed) {
                    live.add(s);
                }
            }
            float[][] logits = new float[sequences.size()][];
            if (!live.isEmpty()) {
                List<Sequence> liveSequences = live.stream().map(sequences::get).toList();
                List<int[]> liveTokens = live.stream().map(tokens::get).toList();
                List<float[]> computed = run(liveSequences, liveTokens, allPositions);
                for (int i = 0; i < live.size(); i++) {
                    logits[live.get(i)] = computed.get(i);
                }
            }
            return Arrays.asList(logits);
        } finally {
            lock.unlock();
        }
    }

    private List<float[]> run(List<Sequence> sequences, List<int[]> tokens, boolean allPositions) {
        int hidden = config.hiddenSize();
        int headDimension = config.headDimension();
        int queryWidth = config.headCount() * headDimension;
        int keyValueWidth = config.keyValueHeadCount() * headDimension;
        int intermediate = config.intermediateSize();

        // Rows of the batch: every new token of every sequence, sequence after sequence.
        int rows = 0;
        for (int[] chunk : tokens) {
            rows += chunk.length;
        }
        int[] sequenceOfRow = new int[rows];
        int[] positionOfRow = new int[rows];
        Tenant[] tenantOfRow = new Tenant[rows];
        float[] residual = new float[rows * hidden];
        for (int s = 0, row = 0; s < sequences.size(); s++) {
            Sequence sequence = sequences.get(s);
            Tensor table = sequence.tenant.embedding != null ? sequence.tenant.embedding : embedding;
            for (int i = 0; i < tokens.get(s).length; i++, row++) {
                sequenceOfRow[row] = s;
                positionOfRow[row] = sequence.length + i;
                tenantOfRow[row] = sequence.tenant;
                long start = (long) tokens.get(s)[i] * hidden;
                for (int k = 0; k < hidden; k++) {
                    residual[row * hidden + k] = table.getFloat(start + k);
                }
            }
            ensureCapacity(sequence, sequence.length + tokens.get(s).length);
        }

        float[] normed = new float[rows * hidden];
        float[] queries = new float[rows * queryWidth];
        float[] keys = new float[rows * keyValueWidth];
        float[] values = new float[rows * keyValueWidth];
        float[] attention = new float[rows * queryWidth];
        float[] projected = new float[rows * hidden];
        float[] gate = new float[rows * intermediate];
        float[] up = new float[rows * intermediate];
        int[] slotOfRow = new int[rows];

        for (int layerIndex = 0; layerIndex < layers.length; layerIndex++) {
            Layer layer = layers[layerIndex];
            final int l = layerIndex;

            // Attention block: x += o(attention(rope(q(norm(x))), rope(k(norm(x))), v(norm(x))))
            rmsNorm(residual, normed, rows, row -> orBase(tenantOfRow[row].inputNorms[l], layer.inputNorm));
            project(layer, l, Projection.QUERY, normed, tenantOfRow, slotOfRow, queries);
            project(layer, l, Projection.KEY, normed, tenantOfRow, slotOfRow, keys);
            project(layer, l, Projection.VALUE, normed, tenantOfRow, slotOfRow, values);
            for (int row = 0; row < rows; row++) {
                rotate(queries, row * queryWidth, config.headCount(), positionOfRow[row]);
                rotate(keys, row * keyValueWidth, config.keyValueHeadCount(), positionOfRow[row]);
                Sequence sequence = sequences.get(sequenceOfRow[row]);
                int capacity = sequence.keys[l].length / keyValueWidth;
                storeColumn(sequence.keys[l], capacity, keys, row * keyValueWidth, keyValueWidth, positionOfRow[row]);
                storeColumn(sequence.values[l], capacity, values, row * keyValueWidth, keyValueWidth, positionOfRow[row]);
            }
            IntStream.range(0, rows).parallel().forEach(row -> attend(sequences.get(sequenceOfRow[row]), l,
                    positionOfRow[row], queries, row * queryWidth, attention, row * queryWidth));
            project(layer, l, Projection.OUTPUT, attention, tenantOfRow, slotOfRow, projected);
            for (int i = 0; i < rows * hidden; i++) {
                residual[i] += projected[i];
            }

            // Feed-forward block (SwiGLU): x += down(silu(gate(norm(x))) * up(norm(x)))
            rmsNorm(residual, normed, rows, row -> orBase(tenantOfRow[row].postAttentionNorms[l], layer.postAttentionNorm));
            project(layer, l, Projection.GATE, normed, tenantOfRow, slotOfRow, gate);
            project(layer, l, Projection.UP, normed, tenantOfRow, slotOfRow, up);
            swiGlu(gate, up, rows * intermediate);
            project(layer, l, Projection.DOWN, gate, tenantOfRow, slotOfRow, projected);
            for (int i = 0; i < rows * hidden; i++) {
                residual[i] += projected[i];
            }
        }
        for (int s = 0; s < sequences.size(); s++) {
            sequences.get(s).length += tokens.get(s).length;
        }
        return outputLogits(sequences, tokens, allPositions, residual, rows, tenantOfRow);
    }

    /** Final norm and lm_head for the rows that need logits, grouped by the lm_head each row's tenant uses. */
    private List<float[]> outputLogits(List<Sequence> sequences, List<int[]> tokens, boolean allPositions, float[] residual,
                                       int rows, Tenant[] tenantOfRow) {
        int hidden = config.hiddenSize();
        int vocabulary = config.vocabularySize();
        List<float[]> logits = new ArrayList<>();
        List<Integer> outputRows = new ArrayList<>();
        for (int s = 0, row = 0; s < sequences.size(); s++) {
            int count = tokens.get(s).length;
            logits.add(new float[(allPositions ? count : 1) * vocabulary]);
            for (int i = allPositions ? 0 : count - 1; i < count; i++) {
                outputRows.add(row + i);
            }
            row += count;
        }
        float[] normed = new float[rows * hidden];
        float[] rowsOnly = new float[outputRows.size() * hidden];
        for (int i = 0; i < outputRows.size(); i++) {
            System.arraycopy(residual, outputRows.get(i) * hidden, rowsOnly, i * hidden, hidden);
        }
        int[] outputRowList = outputRows.stream().mapToInt(Integer::intValue).toArray();
        rmsNorm(rowsOnly, normed, outputRowList.length, i -> orBase(tenantOfRow[outputRowList[i]].finalNorm, finalNorm));

        // Rows grouped by lm_head tensor: one product per distinct lm_head in the batch.
        Map<Tensor, List<Integer>> rowsOfHead = new IdentityHashMap<>();
        for (int i = 0; i < outputRowList.length; i++) {
            Tensor head = tenantOfRow[outputRowList[i]].outputWeight;
            rowsOfHead.computeIfAbsent(head != null ? head : outputWeight, key -> new ArrayList<>()).add(i);
        }
        int[] sequenceOfOutput = new int[outputRowList.length];
        int[] offsetInSequence = new int[outputRowList.length];
        for (int s = 0, i = 0; s < sequences.size(); s++) {
            int count = allPositions ? tokens.get(s).length : 1;
            for (int j = 0; j < count; j++, i++) {
                sequenceOfOutput[i] = s;
                offsetInSequence[i] = j;
            }
        }
        for (Map.Entry<Tensor, List<Integer>> group : rowsOfHead.entrySet()) {
            List<Integer> members = group.getValue();
            float[] input = new float[members.size() * hidden];
            for (int m = 0; m < members.size(); m++) {
                System.arraycopy(normed, members.get(m) * hidden, input, m * hidden, hidden);
            }
            float[] output = new float[members.size() * vocabulary];
            backend.matmul(input, members.size(), group.getKey(), output);
            for (int m = 0; m < members.size(); m++) {
                int i = members.get(m);
                System.arraycopy(output, m * vocabulary, logits.get(sequenceOfOutput[i]), offsetInSequence[i] * vocabulary, vocabulary);
            }
        }
        return logits;
    }

    /** gate = silu(gate) · up, silu(g) = g / (1 + e^−g); in vector lanes, the exponential being most of its cost. */
    private static void swiGlu(float[] gate, float[] up, int length) {
        int vectorEnd = LANES.loopBound(length);
        for (int i = 0; i < vectorEnd; i += LANES.length()) {
            FloatVector g = FloatVector.fromArray(LANES, gate, i);
            g.div(g.neg().lanewise(VectorOperators.EXP).add(1f)).mul(FloatVector.fromArray(LANES, up, i)).intoArray(gate, i);
        }
        for (int i = vectorEnd; i < length; i++) {
            float g = gate[i];
            gate[i] = g / (1.0f + (float) Math.exp(-g)) * up[i];
        }
    }

    private static float[] orBase(float[] tenantWeight, float[] baseWeight) {
        return tenantWeight != null ? tenantWeight : baseWeight;
    }

    private void project(Layer layer, int layerIndex, Projection projection, float[] input, Tenant[] tenantOfRow,
                         int[] slotOfRow, float[] output) {
        for (int row = 0; row < tenantOfRow.length; row++) {
            slotOfRow[row] = tenantOfRow[row].slots[layerIndex][projection.ordinal()];
        }
        layer.projection(projection).forward(input, slotOfRow, output);
    }

    /** HF LlamaRMSNorm: weight * (x / sqrt(mean(x²) + eps)), per row with that row's weight. */
    private void rmsNorm(float[] input, float[] output, int rows, java.util.function.IntFunction<float[]> weightOfRow) {
        int hidden = config.hiddenSize();
        for (int row = 0; row < rows; row++) {
            int offset = row * hidden;
            double sumOfSquares = 0;
            for (int k = 0; k < hidden; k++) {
                float value = input[offset + k];
                sumOfSquares += value * value;
            }
            float inverse = (float) (1.0 / Math.sqrt((float) (sumOfSquares / hidden) + config.normEpsilon()));
            float[] weight = weightOfRow.apply(row);
            for (int k = 0; k < hidden; k++) {
                output[offset + k] = weight[k] * (input[offset + k] * inverse);
            }
        }
    }

    /** RoPE in HF's rotate_half convention: dimension i pairs with i + d/2 within each head. */
    private void rotate(float[] vectors, int offset, int heads, int position) {
        int headDimension = config.headDimension();
        int half = headDimension / 2;
        int table = position * half;
        for (int head = 0; head < heads; head++) {
            int base = offset + head * headDimension;
            for (int i = 0; i < half; i++) {
                float cos = ropeCos[table + i];
                float sin = ropeSin[table + i];
                float first = vectors[base + i];
                float second = vectors[base + i + half];
                vectors[base + i] = first * cos - second * sin;
                vectors[base + i + half] = second * cos + first * sin;
            }
        }
    }

    /**
     * Causal grouped-query attention of one query row over its sequence's cache: query head h reads key/value head
     * h / (heads / kvHeads); with a sliding window W the query at position p sees keys p − W + 1 .. p.
     *
     * <p>Keys and values are cached transposed ([kvHead · dimension, position]), so both products (scores = q·K,
     * output = weights·V) run along contiguous positions in vector lanes; attention is a third of a prefill's
     * work at 256 tokens, too much to leave to scalar loops.
     */
    private void attend(Sequence sequence, int layer, int position, float[] queries, int queryOffset, float[] output, int outputOffset) {
        int headDimension = config.headDimension();
        int keyValueWidth = config.keyValueHeadCount() * headDimension;
        int group = config.headCount() / config.keyValueHeadCount();
        int first = config.slidingWindow() > 0 ? Math.max(0, position - config.slidingWindow() + 1) : 0;
        int count = position - first + 1;
        int vectorEnd = LANES.loopBound(count);
        float scale = (float) (1.0 / Math.sqrt(headDimension));
        float[] keyCache = sequence.keys[layer];
        float[] valueCache = sequence.values[layer];
        int capacity = keyCache.length / keyValueWidth;
        float[] scores = new float[count];
        for (int head = 0; head < config.headCount(); head++) {
            int query = queryOffset + head * headDimension;
            int rowBase = (head / group) * headDimension; // first cache row of this head's kv head
            // scores[j] = scale · Σ_d q[d] · K[d, first + j]
            for (int j = 0; j < vectorEnd; j += LANES.length()) {
                FloatVector sum = FloatVector.zero(LANES);
                for (int d = 0; d < headDimension; d++) {
                    sum = FloatVector.fromArray(LANES, keyCache, (rowBase + d) * capacity + first + j)
                            .fma(FloatVector.broadcast(LANES, queries[query + d]), sum);
                }
                sum.mul(scale).intoArray(scores, j);
            }
            for (int j = vectorEnd; j < count; j++) {
                float sum = 0;
                for (int d = 0; d < headDimension; d++) {
                    sum += queries[query + d] * keyCache[(rowBase + d) * capacity + first + j];
                }
                scores[j] = sum * scale;
            }
            // Softmax over the visible positions (float32, max subtracted, as HF's eager attention).
            float max = Float.NEGATIVE_INFINITY;
            for (int j = 0; j < count; j++) {
                max = Math.max(max, scores[j]);
            }
            float total = 0;
            if (vectorEnd > 0) {
                FloatVector lanes = FloatVector.zero(LANES);
                for (int j = 0; j < vectorEnd; j += LANES.length()) {
                    FloatVector weight = FloatVector.fromArray(LANES, scores, j).sub(max).lanewise(VectorOperators.EXP);
                    weight.intoArray(scores, j);
                    lanes = lanes.add(weight);
                }
                total = lanes.reduceLanes(VectorOperators.ADD);
            }
            for (int j = vectorEnd; j < count; j++) {
                float weight = (float) Math.exp(scores[j] - max);
                scores[j] = weight;
                total += weight;
            }
            float inverseTotal = 1.0f / total;
            // output[d] = Σ_j weight[j] · V[d, first + j] / total
            int out = outputOffset + head * headDimension;
            for (int d = 0; d < headDimension; d++) {
                int valueRow = (rowBase + d) * capacity + first;
                float sum = 0;
                if (vectorEnd > 0) {
                    FloatVector lanes = FloatVector.zero(LANES);
                    for (int j = 0; j < vectorEnd; j += LANES.length()) {
                        lanes = FloatVector.fromArray(LANES, valueCache, valueRow + j).fma(FloatVector.fromArray(LANES, scores, j), lanes);
                    }
                    sum = lanes.reduceLanes(VectorOperators.ADD);
                }
                for (int j = vectorEnd; j < count; j++) {
                    sum += scores[j] * valueCache[valueRow + j];
                }
                output[out + d] = sum * inverseTotal;
            }
        }
    }

    private void ensureCapacity(Sequence sequence, int length) {
        int keyValueWidth = config.keyValueHeadCount() * config.headDimension();
        int capacity = sequence.keys[0].length / keyValueWidth;
        if (capacity >= length) {
            return;
        }
        // Grow geometrically, but never past the context: a sequence cannot be longer than that.
        int next = Math.min(config.contextLength(), Math.max(length, Math.max(16, capacity * 2)));
        for (int layer = 0; layer < layers.length; layer++) {
            sequence.keys[layer] = grow(sequence.keys[layer], keyValueWidth, capacity, next);
            sequence.values[layer] = grow(sequence.values[layer], keyValueWidth, capacity, next);
        }
    }

    /** A transposed cache ([rows, capacity]) copied into a wider one ([rows, next]). */
    private static float[] grow(float[] cache, int rows, int capacity, int next) {
        float[] grown = new float[rows * next];
        for (int row = 0; row < rows; row++) {
            System.arraycopy(cache, row * capacity, grown, row * next, capacity);
        }
        return grown;
    }

    /** Stores one row's vector ([kvHeads · headDimension]) at {@code position} of a transposed cache. */
    private static void storeColumn(float[] cache, int capacity, float[] vectors, int offset, int width, int position) {
        for (int row = 0; row < width; row++) {
            cache[row * capacity + position] = vectors[offset + row];
        }
    }

    @Override
    public void close() {
        try {
            weights.close();
        } finally {
            if (ownsBackend) {
                backend.close();
            }
        }
    }
}
