package org.bitdelta.internal.model;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.DeltaModel;
import org.bitdelta.internal.safetensors.ModelWeights;
import org.bitdelta.spi.DecoderDevice;
import org.bitdelta.spi.DecoderSpec;
import org.bitdelta.spi.MemoryUse;
import org.bitdelta.spi.Sampling;
import org.bitdelta.spi.StepInputs;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.tensor.Tensor;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A Llama/Mistral decoder over one memory-mapped base model serving many tenants at once. Its parts: loading
 * ({@link ModelLoader}), the tenant table ({@link TenantTable}), the KV block manager ({@link KvBlockManager}) and
 * the step ({@link DecoderStep}), run on a backend's {@link DecoderDevice}. Work comes as sequences, each of one
 * tenant; a step runs the next tokens of several sequences (prefill chunks and decode tokens alike) as one batch.
 *
 * <p>Thread safety: every method may be called from any thread; steps and tenant changes take turns (one device,
 * one step at a time). A removed tenant's sequences get no more results while the others go on.
 */
public final class Decoder implements AutoCloseable {
    private final ModelConfig config;
    private final ModelWeights weights;
    private final TensorBackend backend;
    private final boolean ownsBackend;
    private final DecoderDevice device;
    private final DecoderStep step;
    private final TenantTable tenants;
    private final KvBlockManager blocks;
    private final ReentrantLock lock = new ReentrantLock();
    private boolean closed;

    /** How to pick one sequence's next token: see {@link Sampling}. */
    public record TokenSampling(float temperature, int topK, float topP, long seed, int draw) {
        public static TokenSampling greedy() {
            return new TokenSampling(0, 0, 1, 0, 0);
        }
    }

    /**
     * What a step gave each of its sequences.
     *
     * @param tokens   the sampled token per sequence, or −1 where none was asked for or the sequence failed
     * @param failures per sequence: null, or why it got no result (its tenant was removed, or does not fit)
     */
    public record StepResult(int[] tokens, List<BitDeltaException> failures) {
    }

    private Decoder(ModelConfig config, ModelWeights weights, TensorBackend backend, boolean ownsBackend, DecoderOptions options) {
        this.config = config;
        this.weights = weights;
        this.backend = backend;
        this.ownsBackend = ownsBackend;
        DecoderSpec spec = ModelLoader.spec(config, weights, options);
        this.device = backend.openDecoder(spec);
        try {
            this.step = new DecoderStep(device);
            this.tenants = new TenantTable(config, device, options.tenantBudgetBytes());
            this.blocks = new KvBlockManager(spec.kvBlockSize(), spec.kvBlocks());
        } catch (RuntimeException e) {
            device.close();
            throw e;
        }
    }

    /**
     * Opens a Hugging Face model folder (config.json + safetensors, sharded or not), weights memory-mapped.
     *
     * @param ownsBackend whether {@link #close()} also closes the backend
     */
    public static Decoder load(Path folder, TensorBackend backend, boolean ownsBackend, DecoderOptions options) {
        ModelConfig config = ModelLoader.config(folder);
        ModelWeights weights = ModelWeights.open(folder);
        try {
            return new Decoder(config, weights, backend, ownsBackend, options);
        } catch (RuntimeException e) {
            weights.close();
            throw e;
        }
    }

    /** {@link #load(Path, TensorBackend, boolean, DecoderOptions)} with {@link DecoderOptions#defaults}. */
    public static Decoder load(Path folder, TensorBackend backend, boolean ownsBackend) {
        return load(folder, backend, ownsBackend, DecoderOptions.defaults(ModelLoader.config(folder).contextLength()));
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

    public DecoderSpec spec() {
        return device.spec();
    }

    // ---------------------------------------------------------------- tenants

    /** "base" first, then the loaded tenants in the order they were added. */
    public List<String> tenantNames() {
        lock.lock();
        try {
            return tenants.names();
        } finally {
            lock.unlock();
        }
    }

    public boolean hasTenant(String name) {
        lock.lock();
        try {
            return tenants.contains(name);
        } finally {
            lock.unlock();
        }
    }

    /** See {@link TenantTable#add}; the tenant is uploaded to the device on the first step that needs it. */
    public void addTenant(String name, String source, Map<String, BinaryDelta> deltas, Map<String, Tensor> replaced) {
        lock.lock();
        try {
            ensureOpen();
            tenants.add(name, source, deltas, replaced);
        } finally {
            lock.unlock();
        }
    }

    /** Adds the tenant of a compressed fine-tune: its 1-bit matrices by name, and the tensors it replaces whole. */
    public void addTenant(String name, String source, DeltaModel delta) {
        Map<String, BinaryDelta> deltas = new LinkedHashMap<>();
        for (BinaryDelta matrix : delta.matrices()) {
            deltas.put(matrix.name(), matrix);
        }
        addTenant(name, source, deltas, delta.tensors());
    }

    /** Removes a tenant between steps; its device memory is freed now, its sequences get no more results. */
    public void removeTenant(String name) {
        lock.lock();
        try {
            tenants.remove(name);
        } finally {
            lock.unlock();
        }
    }

    /** Per tenant (base excluded): bytes of its data, device bytes while resident, its slot (−1: not resident). */
    public record TenantMemory(String name, long bytes, long deviceBytes, int slot, int openSequences) {
    }

    public List<TenantMemory> tenantMemory() {
        lock.lock();
        try {
            List<TenantMemory> result = new ArrayList<>();
            for (TenantTable.Tenant tenant : tenants.tenants()) {
                result.add(new TenantMemory(tenant.name(), tenant.bytes(), tenant.deviceBytes(), tenant.slot(), tenant.openSequences()));
            }
            return result;
        } finally {
            lock.unlock();
        }
    }

    /** What the device holds, by purpose. */
    public MemoryUse memory() {
        lock.lock();
        try {
            ensureOpen();
            return device.memory();
        } finally {
            lock.unlock();
        }
    }

    /** KV cache blocks in use and in all. */
    public int[] kvBlockUse() {
        lock.lock();
        try {
            return new int[]{blocks.usedBlocks(), blocks.blockCount()};
        } finally {
            lock.unlock();
        }
    }

    // ---------------------------------------------------------------- sequences

    /** A new, empty sequence for the tenant named {@code tenantName}; close it to free its KV cache blocks. */
    public Sequence newSequence(String tenantName) {
        lock.lock();
        try {
            ensureOpen();
            TenantTable.Tenant tenant = tenants.get(tenantName);
            Sequence sequence = new Sequence(this, tenant);
            tenants.open(tenant);
            return sequence;
        } finally {
            lock.unlock();
        }
    }

    void release(Sequence sequence) {
        lock.lock();
        try {
            if (!sequence.closed) {
                sequence.closed = true;
                blocks.release(sequence.blockTable, sequence.blocks);
                sequence.blocks = 0;
                tenants.close(sequence.tenant());
            }
        } finally {
            lock.unlock();
        }
    }

    /** Whether the KV cache has room for {@code extraTokens} more tokens of {@code sequence}. */
    public boolean fits(Sequence sequence, int extraTokens) {
        lock.lock();
        try {
            return blocks.canGrow(sequence.blocks, sequence.length, extraTokens);
        } finally {
            lock.unlock();
        }
    }

    // ---------------------------------------------------------------- steps

    /**
     * Runs the next tokens of each sequence, appending them to the sequences' KV caches, and returns logits.
     * Work over {@code maxRows} rows runs as several steps.
     *
     * @param sequences    the batch; each at most once
     * @param tokens       tokens.get(i): the next tokens of sequences.get(i) (at least one)
     * @param allPositions true: logits for every new token ([n, vocab]); false: for the last one only ([1, vocab])
     * @return logits per sequence, row-major; null for a sequence whose tenant has been removed (its cache is
     * left as it was, and the others are computed as if it were not in the batch)
     */
    public List<float[]> forward(List<Sequence> sequences, List<int[]> tokens, boolean allPositions) {
        check(sequences, tokens);
        lock.lock();
        try {
            ensureOpen();
            int vocabulary = config.vocabularySize();
            float[][] logits = new float[sequences.size()][];
            int[] done = new int[sequences.size()];
            List<Integer> live = new ArrayList<>();
            for (int s = 0; s < sequences.size(); s++) {
                if (!sequences.get(s).tenant().removed()) {
                    live.add(s);
                    logits[s] = new float[(allPositions ? tokens.get(s).length : 1) * vocabulary];
                }
            }
            int maxRows = device.spec().maxRows();
            int next = 0;
            while (next < live.size()) {
                // Pack whole or partial chunks of consecutive sequences into one step of at most maxRows rows.
                List<Sequence> batch = new ArrayList<>();
                List<int[]> chunks = new ArrayList<>();
                List<Integer> owners = new ArrayList<>();
                List<Integer> offsets = new ArrayList<>();
                int rows = 0;
                while (next < live.size() && rows < maxRows) {
                    int s = live.get(next);
                    int[] all = tokens.get(s);
                    int count = Math.min(all.length - done[s], maxRows - rows);
                    batch.add(sequences.get(s));
                    chunks.add(Arrays.copyOfRange(all, done[s], done[s] + count));
                    owners.add(s);
                    offsets.add(done[s]);
                    done[s] += count;
                    rows += count;
                    if (done[s] == all.length) {
                        next++;
                    }
                }
                boolean[] wantAll = new boolean[batch.size()];
                boolean[] wantLast = new boolean[batch.size()];
                for (int b = 0; b < batch.size(); b++) {
                    int s = owners.get(b);
                    wantAll[b] = allPositions;
                    wantLast[b] = !allPositions && done[s] == tokens.get(s).length;
                }
                StepInputs inputs = prepare(batch, chunks, wantAll, wantLast, requireResident(batch));
                step.run(inputs);
                float[] values = new float[inputs.outputRows() * vocabulary];
                device.read(step.logits(), inputs.outputRows(), values);
                int outputRow = 0;
                for (int b = 0; b < batch.size(); b++) {
                    int s = owners.get(b);
                    if (wantAll[b]) {
                        int count = chunks.get(b).length;
                        System.arraycopy(values, outputRow * vocabulary, logits[s], offsets.get(b) * vocabulary, count * vocabulary);
                        outputRow += count;
                    } else if (wantLast[b]) {
                        System.arraycopy(values, outputRow * vocabulary, logits[s], 0, vocabulary);
                        outputRow++;
                    }
                }
                advance(batch, chunks);
            }
            return Arrays.asList(logits);
        } finally {
            lock.unlock();
        }
    }

    /**
     * One step for the serving loop: runs each sequence's next tokens (at most {@code maxRows} in all) and samples
     * one token for each sequence whose {@code sampling} entry is not null (from its last row). A sequence whose
     * tenant was removed, or cannot be made resident, fails alone: the step runs without it.
     */
    public StepResult step(List<Sequence> sequences, List<int[]> tokens, List<TokenSampling> sampling) {
        check(sequences, tokens);
        if (sampling.size() != sequences.size()) {
            throw new IllegalArgumentException(sequences.size() + " sequences but " + sampling.size() + " sampling entries");
        }
        int rows = tokens.stream().mapToInt(chunk -> chunk.length).sum();
        if (rows > device.spec().maxRows()) {
            throw new IllegalArgumentException(rows + " rows in one step, more than maxRows " + device.spec().maxRows());
        }
        lock.lock();
        try {
            ensureOpen();
            int[] sampled = new int[sequences.size()];
            Arrays.fill(sampled, -1);
            BitDeltaException[] failures = new BitDeltaException[sequences.size()];
            // Residency first: a tenant that cannot be loaded fails its own sequences, not the step.
            Set<TenantTable.Tenant> pinned = new LinkedHashSet<>();
            for (Sequence sequence : sequences) {
                pinned.add(sequence.tenant());
            }
            Map<TenantTable.Tenant, BitDeltaException> refused = new IdentityHashMap<>();
            for (TenantTable.Tenant tenant : pinned) {
                if (tenant.removed()) {
                    refused.put(tenant, new BitDeltaException("tenant '" + tenant.name() + "' was removed"));
                    continue;
                }
                try {
                    tenants.makeResident(tenant, pinned);
                } catch (BitDeltaException e) {
                    refused.put(tenant, e);
                }
            }
            List<Sequence> batch = new ArrayList<>();
            List<int[]> chunks = new ArrayList<>();
            List<Integer> owners = new ArrayList<>();
            for (int s = 0; s < sequences.size(); s++) {
                BitDeltaException failure = refused.get(sequences.get(s).tenant());
                if (failure != null) {
                    failures[s] = failure;
                } else {
                    batch.add(sequences.get(s));
                    chunks.add(tokens.get(s));
                    owners.add(s);
                }
            }
            if (!batch.isEmpty()) {
                boolean[] wantLast = new boolean[batch.size()];
                int outputs = 0;
                for (int b = 0; b < batch.size(); b++) {
                    wantLast[b] = sampling.get(owners.get(b)) != null;
                    outputs += wantLast[b] ? 1 : 0;
                }
                StepInputs inputs = prepare(batch, chunks, new boolean[batch.size()], wantLast, slotsOf(batch));
                step.run(inputs);
                if (outputs > 0) {
                    float[] temperature = new float[outputs];
                    int[] topK = new int[outputs];
                    float[] topP = new float[outputs];
                    long[] seed = new long[outputs];
                    int[] draw = new int[outputs];
                    for (int b = 0, o = 0; b < batch.size(); b++) {
                        if (wantLast[b]) {
                            TokenSampling each = sampling.get(owners.get(b));
                            temperature[o] = each.temperature();
                            topK[o] = each.topK();
                            topP[o] = each.topP();
                            seed[o] = each.seed();
                            draw[o] = each.draw();
                            o++;
                        }
                    }
                    int[] picked = new int[outputs];
                    device.sample(step.logits(), new Sampling(temperature, topK, topP, seed, draw), outputs, picked);
                    for (int b = 0, o = 0; b < batch.size(); b++) {
                        if (wantLast[b]) {
                            sampled[owners.get(b)] = picked[o++];
                        }
                    }
                }
                advance(batch, chunks);
            }
            return new StepResult(sampled, Arrays.asList(failures));
        } finally {
            lock.unlock();
        }
    }

    private void check(List<Sequence> sequences, List<int[]> tokens) {
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
            if (sequence.closed) {
                throw new IllegalArgumentException("sequence " + s + " (tenant '" + sequence.tenant().name() + "') is closed");
            }
            if (chunk.length == 0) {
                throw new IllegalArgumentException("sequence " + s + " (tenant '" + sequence.tenant().name() + "') has no tokens to run");
            }
            if ((long) sequence.length + chunk.length > config.contextLength()) {
                throw new BitDeltaException("sequence " + s + " (tenant '" + sequence.tenant().name() + "') would be "
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
    }

    /** Loads the batch's tenants (for {@link #forward}: a tenant that does not fit fails the call). */
    private int[] requireResident(List<Sequence> batch) {
        Set<TenantTable.Tenant> pinned = new LinkedHashSet<>();
        for (Sequence sequence : batch) {
            pinned.add(sequence.tenant());
        }
        for (TenantTable.Tenant tenant : pinned) {
            tenants.makeResident(tenant, pinned);
        }
        return slotsOf(batch);
    }

    private static int[] slotsOf(List<Sequence> batch) {
        int[] slots = new int[batch.size()];
        for (int b = 0; b < batch.size(); b++) {
            slots[b] = batch.get(b).tenant().slot();
        }
        return slots;
    }

    /**
     * The step's inputs: grows each sequence's block table for its chunk (nothing changes if the cache is full),
     * then lays out rows sequence after sequence.
     */
    private StepInputs prepare(List<Sequence> batch, List<int[]> chunks, boolean[] wantAll, boolean[] wantLast, int[] slotOfSequence) {
        int needed = 0;
        for (int b = 0; b < batch.size(); b++) {
            Sequence sequence = batch.get(b);
            needed += Math.max(0, blocks.blocksFor(sequence.length + chunks.get(b).length) - sequence.blocks);
        }
        if (needed > blocks.freeBlocks()) {
            throw new BitDeltaException("the KV cache is full: this step needs " + needed + " more blocks of " + blocks.blockSize()
                    + " tokens, " + blocks.freeBlocks() + " of " + blocks.blockCount() + " are free (raise the KV cache size)");
        }
        int rows = 0;
        int widest = 1;
        int outputs = 0;
        for (int b = 0; b < batch.size(); b++) {
            Sequence sequence = batch.get(b);
            int length = sequence.length + chunks.get(b).length;
            sequence.blockTable = blocks.grow(sequence.blockTable, sequence.blocks, length);
            sequence.blocks = blocks.blocksFor(length);
            widest = Math.max(widest, sequence.blocks);
            rows += chunks.get(b).length;
            outputs += wantAll[b] ? chunks.get(b).length : wantLast[b] ? 1 : 0;
        }
        int[] tokenIds = new int[rows];
        int[] slots = new int[rows];
        int[] positions = new int[rows];
        int[] sequenceOfRow = new int[rows];
        int[] cacheSlots = new int[rows];
        int[] blockTables = new int[batch.size() * widest];
        int[] outputRowIndex = new int[outputs];
        int blockSize = blocks.blockSize();
        for (int b = 0, row = 0, output = 0; b < batch.size(); b++) {
            Sequence sequence = batch.get(b);
            System.arraycopy(sequence.blockTable, 0, blockTables, b * widest, sequence.blocks);
            int[] chunk = chunks.get(b);
            for (int i = 0; i < chunk.length; i++, row++) {
                int position = sequence.length + i;
                tokenIds[row] = chunk[i];
                slots[row] = slotOfSequence[b];
                positions[row] = position;
                sequenceOfRow[row] = b;
                cacheSlots[row] = sequence.blockTable[position / blockSize] * blockSize + position % blockSize;
                if (wantAll[b] || (wantLast[b] && i == chunk.length - 1)) {
                    outputRowIndex[output++] = row;
                }
            }
        }
        return new StepInputs(rows, tokenIds, slots, positions, sequenceOfRow, cacheSlots, batch.size(), widest, blockTables,
                outputs, outputRowIndex);
    }

    private static void advance(List<Sequence> batch, List<int[]> chunks) {
        for (int b = 0; b < batch.size(); b++) {
            batch.get(b).length += chunks.get(b).length;
        }
    }

    private void ensureOpen() {
        if (closed) {
            throw new BitDeltaException("the decoder is closed");
        }
    }

    @Override
    public void close() {
        lock.lock();
        try {
            if (closed) {
                return;
            }
            closed = true;
            try {
                device.close();
            } finally {
                try {
                    weights.close();
                } finally {
                    if (ownsBackend) {
                        backend.close();
                    }
                }
            }
        } finally {
            lock.unlock();
        }
    }
}
