package org.bitdelta.spi;

import org.bitdelta.internal.model.Sampler;

/**
 * The device side of one loaded decoder: the buffers a step uses (activations, the paged KV cache, scratch) and
 * the few operations a Llama/Mistral step needs, each over a batch whose rows belong to different tenants.
 * Opened by {@link TensorBackend#openDecoder}; the model code ({@code DecoderStep}) calls these operations in
 * order, written once for every backend.
 *
 * <p>Rows and tenants: every operation works on the rows of the current {@link StepInputs} (set by
 * {@link #run}); row r belongs to tenant slot {@code slots[r]}. Slot 0 is the base model; a loaded tenant's slot
 * replaces what its {@link TenantWeights} name (deltas on projections, embeddings, lm_head, norms).
 *
 * <p>KV cache: {@code kvBlocks} blocks of {@code kvBlockSize} tokens per layer, for keys and for values.
 * {@link #rotaryAndCache} writes row r's key and value at {@code cacheSlots[r]}; {@link #attention} reads, for row
 * r, the positions its sequence's block table covers up to {@code positions[r]} (within the sliding window).
 *
 * <p>Not thread-safe: one step at a time. Results reach the host only through {@link #read} and {@link #sample}.
 */
public interface DecoderDevice extends AutoCloseable {

    /** Which RMSNorm weight an {@link #rmsNorm} applies (per row, its tenant's where it replaces the base's). */
    enum Norm {
        /** Before attention: {@code model.layers.L.input_layernorm}. */
        INPUT,
        /** Before the feed-forward: {@code model.layers.L.post_attention_layernorm}. */
        POST_ATTENTION,
        /** After the last layer, on the output rows: {@code model.norm}. */
        FINAL
    }

    DecoderSpec spec();

    /** Bytes held, by purpose. */
    MemoryUse memory();

    /**
     * Makes slot {@code slot} (1 .. tenantSlots − 1) hold {@code weights}, uploading what the device needs; the
     * slot must be empty. Returns the device bytes it now holds for the slot.
     */
    long loadTenant(int slot, TenantWeights weights);

    /** Frees slot {@code slot}; no later step may name it until it is loaded again. */
    void unloadTenant(int slot);

    /** A buffer of [rows, columns] activations (rows at most maxRows), owned by this device and freed with it. */
    Activations allocate(String name, int rows, int columns);

    /**
     * Runs one step: makes {@code inputs} current and calls {@code operations}, which issues this device's
     * operations for it. A device may record the operations of a step shape once and replay them for later
     * steps of the same shape (a CUDA graph): {@code operations} must then issue the same sequence for every
     * step of a shape, reading everything that varies from the inputs.
     */
    void run(StepInputs inputs, Runnable operations);

    // ---- operations of a step (called from inside run) ----

    /** out[r] = embedding of row r's tenant [tokens[r]]. */
    void embed(Activations out);

    /**
     * out[r] = weight ⊙ in[r] / sqrt(mean(in[r]²) + eps), with the weight of row r's tenant ({@code layer} ignored
     * for {@link Norm#FINAL}, which runs over the output rows: in and out are then [outputRows, hidden]).
     */
    void rmsNorm(Activations in, Norm norm, int layer, Activations out);

    /**
     * out[r] (+)= in[r] · (W + a_t ⊙ S_t)ᵀ for every matrix of the group, stacked along the outputs, where t is row
     * r's tenant (no delta term for a matrix it has no delta for).
     *
     * @param accumulate add to out instead of overwriting it (the residual stream)
     */
    void project(int layer, Projection.Group group, Activations in, Activations out, boolean accumulate);

    /**
     * Rotates the query and key parts of {@code qkv} ([rows, q | k | v]) in place by each row's position (RoPE,
     * HF's rotate_half pairing), then writes each row's key and value into the KV cache of {@code layer}.
     */
    void rotaryAndCache(int layer, Activations qkv);

    /**
     * out[r] = causal grouped-query attention of row r's query over its sequence's cached keys and values
     * (positions max(0, p − window + 1) .. p), scaled by 1/sqrt(headDimension), softmax in F32.
     */
    void attention(int layer, Activations qkv, Activations out);

    /** out[r] = silu(gate[r]) ⊙ up[r] from {@code gateUp} ([rows, gate | up]). */
    void swiGlu(Activations gateUp, Activations out);

    /** out[i] = in[outputRowIndex[i]]: the rows whose logits are wanted. */
    void gatherOutputRows(Activations in, Activations out);

    /** logits[i] = in[i] · lm_headᵀ of output row i's tenant ([outputRows, vocab]). */
    void lmHead(Activations in, Activations logits);

    // ---- host transfers (between steps: the logits after a step, or any buffer in tests and tools) ----

    /** Copies the first {@code rows} rows of {@code source} to the host: [rows, columns] as floats, row-major. */
    void read(Activations source, int rows, float[] destination);

    /** Copies [rows, columns] floats from the host into the first {@code rows} rows of {@code target}. */
    void write(float[] source, int rows, Activations target);

    /**
     * Picks each output row's next token ({@link Sampling}); the host reads only the tokens. The default reads
     * the logits and samples on the host.
     */
    default void sample(Activations logits, Sampling sampling, int outputRows, int[] tokens) {
        int vocabulary = spec().vocabularySize();
        float[] values = new float[outputRows * vocabulary];
        read(logits, outputRows, values);
        for (int row = 0; row < outputRows; row++) {
            tokens[row] = Sampler.sample(values, row * vocabulary, vocabulary, sampling.temperature()[row], sampling.topK()[row],
                    sampling.topP()[row], Sampling.uniform(sampling.seed()[row], sampling.draw()[row]));
        }
    }

    /** Frees everything the device holds. */
    @Override
    void close();
}
