package org.bitdelta.inference;

import org.bitdelta.BitDeltaException;
import org.bitdelta.DeltaModel;
import org.bitdelta.internal.format.BitDeltaFormat;
import org.bitdelta.internal.format.Fingerprint;
import org.bitdelta.internal.model.Decoder;
import org.bitdelta.internal.model.ModelConfig;
import org.bitdelta.internal.model.Sequence;
import org.bitdelta.spi.MemoryUse;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.spi.TensorBackends;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A Llama or Mistral model loaded once from a Hugging Face folder (weights memory-mapped), serving many
 * tenants: the base itself (named {@link #BASE}) and any number of BitDelta fine-tunes added with
 * {@code addTenant}. Each sequence of a batch names its tenant; all tenants share the base weights.
 *
 * <p>Thread-safe: batches may run on several threads at once, and tenants may be added and removed while
 * they run (a removal waits for the forward pass in flight, and only that tenant's sequences stop).
 */
public final class DecoderModel implements AutoCloseable {
    /** The tenant name of the base model itself. */
    public static final String BASE = "base";

    private final Path folder;
    private final Decoder decoder;
    private final Object tokenizerLock = new Object();
    private Tokenizer tokenizer;
    private volatile String fingerprint;

    private DecoderModel(Path folder, Decoder decoder) {
        this.folder = folder;
        this.decoder = decoder;
    }

    /** Loads a model folder on the default backend ({@code -Dbitdelta.backend}, else the best available). */
    public static DecoderModel load(Path folder) {
        TensorBackend backend = TensorBackends.createDefault();
        try {
            return new DecoderModel(folder, Decoder.load(folder, backend, true));
        } catch (RuntimeException e) {
            backend.close();
            throw e;
        }
    }

    /** Loads a model folder on {@code backend}, which the caller keeps owning (closing the model leaves it open). */
    public static DecoderModel load(Path folder, TensorBackend backend) {
        return new DecoderModel(folder, Decoder.load(folder, backend, false));
    }

    public Path folder() {
        return folder;
    }

    /** "llama" or "mistral". */
    public String modelType() {
        return decoder.config().modelType();
    }

    public int vocabularySize() {
        return decoder.config().vocabularySize();
    }

    /** The longest sequence the model accepts (config max_position_embeddings). */
    public int contextLength() {
        return decoder.config().contextLength();
    }

    /** The config's bos_token_id, or −1. */
    public int bosTokenId() {
        return decoder.config().bosTokenId();
    }

    /** The config's eos_token_id(s); generation stops at any of them. */
    public int[] eosTokenIds() {
        return decoder.config().eosTokenIds();
    }

    /** {@link #BASE} first, then the loaded tenants in the order they were added. */
    public List<String> tenants() {
        return decoder.tenantNames();
    }

    public boolean hasTenant(String name) {
        return decoder.tenantNames().contains(name);
    }

    /**
     * Adds a fine-tune as tenant {@code name}: its 1-bit deltas on the projections, and its own embeddings,
     * norms and lm_head where it replaces the base's. The delta must have been compressed against this very
     * base (its base fingerprint is checked) and must stay open while it is a tenant: its signs and tensors are
     * read from it, not copied. A refused delta leaves the model and its tenants as they were.
     */
    public void addTenant(String name, DeltaModel delta) {
        String source = "delta '" + name + "' (" + delta.metadata().getOrDefault(BitDeltaFormat.KEY_FINETUNED_NAME, "unnamed fine-tune") + ")";
        Fingerprint.requireMadeFrom(baseFingerprint(), folder, delta, source);
        decoder.addTenant(name, source, delta);
    }

    /** The base model's fingerprint (as recorded in the deltas compressed against it); computed once, on first use. */
    public String baseFingerprint() {
        String value = fingerprint;
        if (value == null) {
            value = Fingerprint.of(decoder.weights());
            fingerprint = value;
        }
        return value;
    }

    /** Removes a tenant; sequences of it that are being generated stop, the others go on. */
    public void removeTenant(String name) {
        decoder.removeTenant(name);
    }

    /**
     * Logits of every position of {@code tokens} (a fresh sequence from position 0) for one tenant.
     *
     * @return float32 [tokens.length, vocabularySize()], row-major
     */
    public float[] logits(String tenant, int[] tokens) {
        return logits(List.of(tenant), List.of(tokens)).getFirst();
    }

    /**
     * Logits of every position of each sequence, all in one batch; sequence i runs as tenant {@code tenants.get(i)}.
     *
     * @return per sequence, float32 [length, vocabularySize()]
     */
    public List<float[]> logits(List<String> tenants, List<int[]> sequences) {
        if (tenants.size() != sequences.size()) {
            throw new IllegalArgumentException(tenants.size() + " tenants for " + sequences.size() + " sequences");
        }
        List<Sequence> states = new ArrayList<>();
        try {
            for (String tenant : tenants) {
                states.add(decoder.newSequence(tenant));
            }
            List<float[]> logits = decoder.forward(states, sequences, true);
            for (int i = 0; i < logits.size(); i++) {
                if (logits.get(i) == null) {
                    throw new BitDeltaException("tenant '" + tenants.get(i) + "' was removed while its sequence was running");
                }
            }
            return logits;
        } finally {
            states.forEach(Sequence::close);
        }
    }

    /**
     * What the backend's device holds for this model, by purpose: the base weights, each resident tenant (by
     * slot), the KV cache and the workspace, with the device's own total and free figures where it has them.
     */
    public MemoryUse memory() {
        return decoder.memory();
    }

    /**
     * Per loaded tenant (the base excluded, in the order added): the device bytes it holds while resident (0 when
     * it was never used or was evicted).
     */
    public Map<String, Long> tenantDeviceBytes() {
        Map<String, Long> bytes = new LinkedHashMap<>();
        for (Decoder.TenantMemory tenant : decoder.tenantMemory()) {
            bytes.put(tenant.name(), tenant.deviceBytes());
        }
        return bytes;
    }

    /** The folder's tokenizer.json, loaded on first use. */
    public Tokenizer tokenizer() {
        synchronized (tokenizerLock) {
            if (tokenizer == null) {
                tokenizer = Tokenizer.load(folder);
            }
            return tokenizer;
        }
    }

    Decoder decoder() {
        return decoder;
    }

    ModelConfig config() {
        return decoder.config();
    }

    @Override
    public void close() {
        synchronized (tokenizerLock) {
            if (tokenizer != null) {
                tokenizer.close();
                tokenizer = null;
            }
        }
        decoder.close();
    }

    @Override
    public String toString() {
        ModelConfig config = decoder.config();
        return "DecoderModel[" + folder + ", " + config.modelType() + " " + config.layerCount() + " layers, hidden "
                + config.hiddenSize() + ", vocab " + config.vocabularySize() + ", tenants " + tenants() + "]";
    }
}
