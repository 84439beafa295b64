package org.bitdelta;

import org.bitdelta.spi.TensorBackend;
import org.bitdelta.tensor.Tensor;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Objects;

/**
 * One base weight shared by many tenants, each with its own 1-bit delta: row r of a batch is multiplied by
 * {@code base + scale_t ⊙ S_t} where t is that row's tenant (−1: the base alone).
 *
 * <p>Tenants can be added and removed while other threads run {@link #forward}: each call works on a snapshot
 * of the tenant table, and a removed tenant's slot is never reused by another tenant while a call may still
 * refer to it by index.
 */
public final class DeltaLinear {
    /** The tenant index that means "base weights only". */
    public static final int BASE = -1;

    private final Tensor base;
    private final TensorBackend backend;
    private final int outputs;
    private final int inputs;
    private volatile List<BinaryDelta> tenants;

    private DeltaLinear(Tensor base, List<BinaryDelta> deltas, TensorBackend backend) {
        this.base = Objects.requireNonNull(base, "base weight");
        this.backend = Objects.requireNonNull(backend, "backend");
        if (base.rank() != 2 || !base.dtype().isFloatingPoint()) {
            throw new BitDeltaException(base.name() + ": a DeltaLinear base must be a 2-D float weight, got " + base);
        }
        this.outputs = Math.toIntExact(base.dimension(0));
        this.inputs = Math.toIntExact(base.dimension(1));
        List<BinaryDelta> initial = new ArrayList<>();
        for (BinaryDelta delta : deltas) {
            initial.add(checkShape(delta));
        }
        this.tenants = Collections.unmodifiableList(initial);
    }

    /** A layer over {@code baseWeight} ([out, in]) with tenants 0, 1, ... holding {@code deltas} in order. */
    public static DeltaLinear of(Tensor baseWeight, List<BinaryDelta> deltas, TensorBackend backend) {
        return new DeltaLinear(baseWeight, deltas, backend);
    }

    private BinaryDelta checkShape(BinaryDelta delta) {
        if (delta.rows() != outputs || delta.cols() != inputs) {
            throw new BitDeltaException(delta.name() + ": delta is " + delta.rows() + "x" + delta.cols()
                    + " but the base weight " + base.name() + " is " + outputs + "x" + inputs);
        }
        return delta;
    }

    /** Adds a tenant and returns its index. */
    public synchronized int addTenant(BinaryDelta delta) {
        checkShape(delta);
        List<BinaryDelta> next = new ArrayList<>(tenants);
        next.add(delta);
        tenants = Collections.unmodifiableList(next);
        return next.size() - 1;
    }

    /** Removes tenant {@code index}; later calls naming it fail, other tenants keep their indices. */
    public synchronized void removeTenant(int index) {
        List<BinaryDelta> current = tenants;
        if (index < 0 || index >= current.size() || current.get(index) == null) {
            throw new BitDeltaException("tenant " + index + " is not loaded in the layer over " + base.name());
        }
        List<BinaryDelta> next = new ArrayList<>(current);
        next.set(index, null);
        tenants = Collections.unmodifiableList(next);
    }

    /** Number of tenant slots (removed ones included). */
    public int tenantSlots() {
        return tenants.size();
    }

    public int inputs() {
        return inputs;
    }

    public int outputs() {
        return outputs;
    }

    public Tensor base() {
        return base;
    }

    /**
     * {@code y[r] = x[r] · (base + scale_t ⊙ S_t)ᵀ} with {@code t = tenantOfRow[r]}.
     *
     * @param x           F32 [rows, inputs], rows = tenantOfRow.length
     * @param tenantOfRow each {@link #BASE} or a loaded tenant index
     * @param y           F32 [rows, outputs], overwritten
     */
    public void forward(float[] x, int[] tenantOfRow, float[] y) {
        int rows = tenantOfRow.length;
        if (x.length < (long) rows * inputs || y.length < (long) rows * outputs) {
            throw new BitDeltaException(base.name() + ": forward with " + rows + " rows needs x of " + (long) rows * inputs
                    + " and y of " + (long) rows * outputs + " floats, got " + x.length + " and " + y.length);
        }
        List<BinaryDelta> snapshot = tenants;
        for (int r = 0; r < rows; r++) {
            int tenant = tenantOfRow[r];
            if (tenant != BASE && (tenant < 0 || tenant >= snapshot.size() || snapshot.get(tenant) == null)) {
                throw new BitDeltaException(base.name() + ": row " + r + " names tenant " + tenant
                        + ", which is not loaded (loaded: " + loadedIndices(snapshot) + ")");
            }
        }
        backend.deltaMatmul(x, rows, base, snapshot, tenantOfRow, y);
    }

    private static String loadedIndices(List<BinaryDelta> snapshot) {
        int[] loaded = new int[snapshot.size()];
        int count = 0;
        for (int i = 0; i < snapshot.size(); i++) {
            if (snapshot.get(i) != null) {
                loaded[count++] = i;
            }
        }
        return Arrays.toString(Arrays.copyOf(loaded, count));
    }
}
