package org.bitdelta.internal.model;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.spi.DecoderDevice;
import org.bitdelta.spi.Projection;
import org.bitdelta.spi.TenantWeights;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The tenants of one decoder: what each replaces (its {@link TenantWeights}), and which are resident in a device
 * slot. Slot 0 is the base model. A tenant is uploaded on the first step that needs it; when its bytes would
 * exceed the budget (or no slot is free), the least recently used resident tenants that no open sequence uses
 * are evicted first; if that is not enough the step refuses that tenant's sequences with a clear error.
 *
 * <p>Not thread-safe: the decoder calls it under its lock.
 */
public final class TenantTable {
    public static final String BASE = "base";
    private static final Pattern LAYER_TENSOR = Pattern.compile("model\\.layers\\.(\\d+)\\.(.+)\\.weight");

    private final ModelConfig config;
    private final DecoderDevice device;
    private final long budgetBytes;
    private final Tenant base;
    private final Map<String, Tenant> tenants = new LinkedHashMap<>();
    private final Tenant[] residentInSlot;
    private long clock;

    /** One tenant: its weights, its slot while resident, and the open sequences that use it. */
    public static final class Tenant {
        private final String name;
        private final String source;
        private final TenantWeights weights;
        private final long bytes;
        private int slot;
        private long deviceBytes;
        private int openSequences;
        private long lastUse;
        private boolean removed;

        private Tenant(String name, String source, TenantWeights weights, long bytes, int slot) {
            this.name = name;
            this.source = source;
            this.weights = weights;
            this.bytes = bytes;
            this.slot = slot;
        }

        public String name() {
            return name;
        }

        /** Whether it was removed; its open sequences get no more results. */
        public boolean removed() {
            return removed;
        }

        /** Its device slot, or −1 while not resident. */
        public int slot() {
            return slot;
        }

        /** Bytes of its own data (packed signs, scales, replaced tensors). */
        public long bytes() {
            return bytes;
        }

        /** Device bytes it holds while resident (0 otherwise). */
        public long deviceBytes() {
            return deviceBytes;
        }

        public int openSequences() {
            return openSequences;
        }
    }

    /**
     * @param budgetBytes device bytes the resident tenants may hold together (Long.MAX_VALUE: no limit)
     */
    public TenantTable(ModelConfig config, DecoderDevice device, long budgetBytes) {
        this.config = config;
        this.device = device;
        this.budgetBytes = budgetBytes;
        this.base = new Tenant(BASE, "the base model", null, 0, 0);
        this.residentInSlot = new Tenant[device.spec().tenantSlots()];
        residentInSlot[0] = base;
    }

    public Tenant base() {
        return base;
    }

    /** The tenant named {@code name}: {@link #BASE} or a loaded one. */
    public Tenant get(String name) {
        if (BASE.equals(name)) {
            return base;
        }
        Tenant tenant = tenants.get(name);
        if (tenant == null) {
            throw new BitDeltaException("tenant '" + name + "' is not loaded (loaded: " + names() + ")");
        }
        return tenant;
    }

    public boolean contains(String name) {
        return BASE.equals(name) || tenants.containsKey(name);
    }

    /** {@link #BASE} first, then the tenants in the order they were added. */
    public List<String> names() {
        List<String> names = new ArrayList<>();
        names.add(BASE);
        names.addAll(tenants.keySet());
        return names;
    }

    public Collection<Tenant> tenants() {
        return List.copyOf(tenants.values());
    }

    public long budgetBytes() {
        return budgetBytes;
    }

    /** Device bytes the resident tenants hold. */
    public long residentBytes() {
        long total = 0;
        for (Tenant tenant : tenants.values()) {
            total += tenant.deviceBytes;
        }
        return total;
    }

    /**
     * Adds a tenant (not yet resident). Everything is checked before anything changes, so a refused tenant leaves
     * the table as it was.
     *
     * @param source   where the tenant comes from, for error messages (a file name)
     * @param deltas   projection weight name → its 1-bit delta; projections not named use the base weight
     * @param replaced tensor name → the tenant's own tensor (embeddings, norms, lm_head)
     */
    public Tenant add(String name, String source, Map<String, BinaryDelta> deltas, Map<String, Tensor> replaced) {
        if (name == null || name.isBlank()) {
            throw new BitDeltaException("a tenant needs a non-blank name");
        }
        if (name.equals(BASE)) {
            throw new BitDeltaException("'" + name + "' names the base model itself and cannot be a tenant's name");
        }
        if (tenants.containsKey(name)) {
            throw new BitDeltaException("a tenant named '" + name + "' is already loaded; remove it first");
        }
        int layers = config.layerCount();
        BinaryDelta[][] deltaOf = new BinaryDelta[layers][Projection.values().length];
        for (Map.Entry<String, BinaryDelta> entry : deltas.entrySet()) {
            int[] place = projectionOf(entry.getKey());
            if (place == null) {
                throw new BitDeltaException(source + ": has a delta for '" + entry.getKey() + "', which is not a projection of this "
                        + layers + "-layer " + config.modelType() + " model");
            }
            BinaryDelta delta = entry.getValue();
            long[] shape = ModelLoader.projectionShape(config, Projection.values()[place[1]]);
            if (delta.rows() != shape[0] || delta.cols() != shape[1]) {
                throw new BitDeltaException(source + ": delta '" + entry.getKey() + "' is " + delta.rows() + "x" + delta.cols()
                        + " but the base weight is " + shape[0] + "x" + shape[1]);
            }
            deltaOf[place[0]][place[1]] = delta;
        }
        int hidden = config.hiddenSize();
        Tensor embedding = null;
        Tensor lmHead = null;
        Tensor finalNorm = null;
        Tensor[] inputNorms = new Tensor[layers];
        Tensor[] postAttentionNorms = new Tensor[layers];
        for (Map.Entry<String, Tensor> entry : replaced.entrySet()) {
            String tensorName = entry.getKey();
            Tensor tensor = entry.getValue().withName(tensorName);
            Matcher matcher = LAYER_TENSOR.matcher(tensorName);
            if (tensorName.equals(ModelLoader.EMBEDDING)) {
                checkTensor(tensor, source, config.vocabularySize(), hidden);
                embedding = tensor;
            } else if (tensorName.equals(ModelLoader.LM_HEAD)) {
                if (config.tiedEmbeddings()) {
                    throw new BitDeltaException(source + ": replaces '" + ModelLoader.LM_HEAD + "' but the base ties it to the embeddings ("
                            + config.configFile() + ": tie_word_embeddings); replace '" + ModelLoader.EMBEDDING + "' instead");
                }
                checkTensor(tensor, source, config.vocabularySize(), hidden);
                lmHead = tensor;
            } else if (tensorName.equals(ModelLoader.FINAL_NORM)) {
                checkTensor(tensor, source, hidden);
                finalNorm = tensor;
            } else if (matcher.matches() && isLayerIndex(matcher.group(1))
                    && (matcher.group(2).equals("input_layernorm") || matcher.group(2).equals("post_attention_layernorm"))) {
                checkTensor(tensor, source, hidden);
                int layer = Integer.parseInt(matcher.group(1));
                (matcher.group(2).equals("input_layernorm") ? inputNorms : postAttentionNorms)[layer] = tensor;
            } else if (projectionOf(tensorName) != null) {
                throw new BitDeltaException(source + ": holds projection '" + tensorName + "' as a full tensor; only 1-bit deltas"
                        + " of projections can be served from a shared base");
            } else {
                throw new BitDeltaException(source + ": replaces tensor '" + tensorName + "', which this decoder does not use"
                        + " (it uses the embeddings, norms, lm_head and the seven projections of each layer)");
            }
        }
        if (config.tiedEmbeddings()) {
            lmHead = embedding;
        }
        TenantWeights weights = new TenantWeights(name, deltaOf, embedding, lmHead, finalNorm, inputNorms, postAttentionNorms);
        long bytes = weights.bytes();
        if (bytes > budgetBytes) {
            throw new BitDeltaException(source + ": needs " + bytes + " bytes on the device, more than the whole tenant budget of "
                    + budgetBytes + " bytes");
        }
        Tenant tenant = new Tenant(name, source, weights, bytes, -1);
        tenants.put(name, tenant);
        return tenant;
    }

    /** Removes a tenant: its slot is freed now; its open sequences get no more results. */
    public void remove(String name) {
        Tenant tenant = tenants.get(name);
        if (tenant == null) {
            throw new BitDeltaException(BASE.equals(name) ? "the base model cannot be removed"
                    : "tenant '" + name + "' is not loaded (loaded: " + names() + ")");
        }
        tenant.removed = true;
        evict(tenant);
        tenants.remove(name);
    }

    /** Counts an open sequence of {@code tenant}: it cannot be evicted while one is open. */
    void open(Tenant tenant) {
        tenant.openSequences++;
    }

    void close(Tenant tenant) {
        tenant.openSequences--;
    }

    /**
     * Makes {@code tenant} resident, evicting least recently used idle tenants (never one in {@code pinned} or one
     * with open sequences) when its bytes or a slot are lacking; returns its slot.
     */
    int makeResident(Tenant tenant, Collection<Tenant> pinned) {
        tenant.lastUse = ++clock;
        if (tenant.slot >= 0) {
            return tenant.slot;
        }
        while (residentBytes() + tenant.bytes > budgetBytes || freeSlot() < 0) {
            Tenant victim = null;
            for (Tenant candidate : tenants.values()) {
                if (candidate.slot > 0 && candidate.openSequences == 0 && !pinned.contains(candidate)
                        && (victim == null || candidate.lastUse < victim.lastUse)) {
                    victim = candidate;
                }
            }
            if (victim == null) {
                throw new BitDeltaException("tenant '" + tenant.name + "' (" + tenant.bytes + " bytes) does not fit: the tenant budget is "
                        + budgetBytes + " bytes, " + residentBytes() + " are held by tenants in use ("
                        + residentSummary() + "), " + (freeSlot() < 0 ? "and all " + (residentInSlot.length - 1) + " tenant slots are taken" : "")
                        + "; retry when they finish, or raise the budget");
            }
            evict(victim);
        }
        int slot = freeSlot();
        tenant.deviceBytes = device.loadTenant(slot, tenant.weights);
        tenant.slot = slot;
        residentInSlot[slot] = tenant;
        return slot;
    }

    private void evict(Tenant tenant) {
        if (tenant.slot > 0) {
            device.unloadTenant(tenant.slot);
            residentInSlot[tenant.slot] = null;
            tenant.slot = -1;
            tenant.deviceBytes = 0;
        }
    }

    private int freeSlot() {
        for (int slot = 1; slot < residentInSlot.length; slot++) {
            if (residentInSlot[slot] == null) {
                return slot;
            }
        }
        return -1;
    }

    private String residentSummary() {
        List<String> parts = new ArrayList<>();
        for (Tenant tenant : tenants.values()) {
            if (tenant.slot > 0) {
                parts.add(tenant.name + " " + tenant.deviceBytes + " B, " + tenant.openSequences + " open sequences");
            }
        }
        return String.join("; ", parts);
    }

    private boolean isLayerIndex(String digits) {
        return digits.length() < 10 && Integer.parseInt(digits) < config.layerCount();
    }

    /** [layer, projection ordinal] of a projection weight's name, or null. */
    private int[] projectionOf(String tensorName) {
        Matcher matcher = LAYER_TENSOR.matcher(tensorName);
        if (!matcher.matches() || !isLayerIndex(matcher.group(1))) {
            return null;
        }
        int layer = Integer.parseInt(matcher.group(1));
        for (Projection projection : Projection.values()) {
            if (projection.weightName(layer).equals(tensorName)) {
                return new int[]{layer, projection.ordinal()};
            }
        }
        return null;
    }

    static void checkTensor(Tensor tensor, String where, long... shape) {
        if (tensor.dtype() != DType.F32 && tensor.dtype() != DType.F16 && tensor.dtype() != DType.BF16) {
            throw new BitDeltaException(where + ": tensor '" + tensor.name() + "' is " + tensor.dtype() + "; weights must be F32, F16 or BF16");
        }
        if (!Arrays.equals(tensor.shape(), shape)) {
            throw new BitDeltaException(where + ": tensor '" + tensor.name() + "' has shape " + Arrays.toString(tensor.shape())
                    + " but the config asks for " + Arrays.toString(shape));
        }
    }
}
