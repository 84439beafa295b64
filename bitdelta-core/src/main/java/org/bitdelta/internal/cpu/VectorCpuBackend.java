package org.bitdelta.internal.cpu;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.internal.cpu.VectorKernels.WeightType;
import org.bitdelta.spi.DecoderDevice;
import org.bitdelta.spi.DecoderSpec;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ForkJoinTask;
import java.util.concurrent.ForkJoinWorkerThread;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The CPU backend ({@code -Dbitdelta.backend=cpu}): Vector API kernels ({@link VectorKernels}) and a small
 * fork-join pool it owns, splitting every product over output rows.
 *
 * <p>Dense products: for a few activation rows (decode) each weight tile is read in place and widened in
 * registers, so the weight streams from memory once; for more rows (prefill) a 4-row x 512-column tile of the
 * weight is converted to floats once and reused by every activation row in 4 x 4 register tiles.
 *
 * <p>Binary products, decode batches (from {@link #LOOKUP_ROWS_MIN} to {@link #DIRECT_ROWS_LIMIT} rows): table
 * lookup over a private re-laid-out copy of each delta's signs ({@link SignBlocks}, cached per delta, as large as
 * the packed signs): per activation row, the 16 signed sums of every group of 4 inputs; per 16 output rows and
 * 4 inputs, a shift, an and, one permute and one add ({@link VectorKernels#lookup16x1}). Other batches: rows are
 * grouped by tenant so that each tenant's packed signs are read once per call, and the sign bits become lane
 * masks directly (see {@link VectorKernels#positiveSum4x1}).
 *
 * <p>{@link #batchInvariant()} is the same backend with one summation order for every row count
 * ({@link OrderedKernels}); the decoder's device ({@link #openDecoder}) runs on it.
 */
public final class VectorCpuBackend implements TensorBackend {
    /**
     * Below this many rows a product with deltas streams weight and signs together ({@link #fusedDecode}); from it
     * on, the 4 x 4 tiles' saving on weight conversion is worth a second pass for the signs.
     */
    static final int FUSED_ROWS_LIMIT = 4;
    /**
     * From this many rows (and below {@link #DIRECT_ROWS_LIMIT}) a product with deltas uses the table-lookup sign
     * kernel: below it the fused pass hides the masked-add sign work under the weight stream (measured: at one
     * tenant, lookup after a separate dense pass was no faster than the fused pass).
     */
    static final int LOOKUP_ROWS_MIN = FUSED_ROWS_LIMIT;
    /** Below this many activation rows the weight is read in place (decode); from it on, converted tiles. */
    static final int DIRECT_ROWS_LIMIT = 32;
    /** Columns of a converted weight tile (4 rows x 512 floats = 8 KiB, kept in L1), and of the activation block
     *  every tile meets (256 rows x 512 floats = 512 KiB, kept in L2). */
    static final int K_BLOCK = 512;
    /** Multiply-adds below which a product runs on the calling thread: a fork-join round trip costs more. */
    static final long PARALLEL_WORK_THRESHOLD = 1L << 18;
    /** Output-row chunks per thread, so an uneven chunk does not leave a core idle. */
    static final int CHUNKS_PER_THREAD = 4;
    private static final AtomicInteger POOL_NUMBER = new AtomicInteger();

    private final ForkJoinPool pool;
    private final int threads;
    private final boolean signLookup;
    /** Whether every product runs the {@link OrderedKernels} (see {@link #batchInvariant()}). */
    private final boolean ordered;
    /** This backend's batch-invariant form (itself when {@link #ordered}); it shares the pool. */
    private final VectorCpuBackend batchInvariant;
    /** The backend that owns the pool: this one, or the fast one a batch-invariant form came from. */
    private final VectorCpuBackend owner;
    /** Re-laid-out sign copies for the lookup kernel, per delta (weakly held; dropped on close). */
    private final SignBlocks signBlocks;
    private volatile boolean closed;

    /** A backend using every available processor. */
    public VectorCpuBackend() {
        this(Runtime.getRuntime().availableProcessors());
    }

    /** A backend with {@code threads} worker threads (1: everything on the calling thread). */
    public VectorCpuBackend(int threads) {
        this(threads, true);
    }

    /**
     * A backend with {@code threads} worker threads; {@code signLookup} false keeps decode batches on the
     * masked-add sign kernels (for comparison: the benchmark measures both).
     */
    public VectorCpuBackend(int threads, boolean signLookup) {
        this.signLookup = signLookup && VectorKernels.LOOKUP_SUPPORTED;
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        }
        this.threads = threads;
        int poolNumber = POOL_NUMBER.incrementAndGet();
        AtomicInteger threadNumber = new AtomicInteger();
        this.pool = threads == 1 ? null : new ForkJoinPool(threads, forkJoinPool -> {
            ForkJoinWorkerThread thread = ForkJoinPool.defaultForkJoinWorkerThreadFactory.newThread(forkJoinPool);
            thread.setName("bitdelta-cpu-" + poolNumber + "-" + threadNumber.incrementAndGet());
            return thread;
        }, null, false);
        this.ordered = false;
        this.owner = this;
        this.signBlocks = new SignBlocks();
        this.batchInvariant = new VectorCpuBackend(this);
    }

    /** The batch-invariant form of {@code fast}: same threads, ordered kernels, closed with it. */
    private VectorCpuBackend(VectorCpuBackend fast) {
        this.pool = fast.pool;
        this.threads = fast.threads;
        this.signLookup = false;
        this.ordered = true;
        this.batchInvariant = this;
        this.owner = fast;
        this.signBlocks = fast.signBlocks;
    }

    /**
     * This backend with batch-invariant products (sharing its threads; closing this backend ends both): every
     * output row is bitwise the same whatever the other rows of the call, their number, the thread split and the
     * JIT tier, because every row count runs the same kernels with one fixed summation order: the dense part on
     * converted weight tiles ({@link OrderedKernels}), the sign sums by table lookup where the lanes allow it
     * (16 floats: AVX-512; its sums are per row by construction), else by ordered masked adds. The fast kernels pick
     * a kernel by row count (fused below 4 rows, sign table lookup for 4 to 31, tiles from 32), each with its own
     * order, and sum vector lanes with {@code reduceLanes}, whose order differs between the interpreter and C2. The decoder's device uses this form
     * ({@link #openDecoder}) so that a greedy request's tokens do not depend on the batch it runs in.
     */
    public TensorBackend batchInvariant() {
        return batchInvariant;
    }

    /** The decoder runs on the batch-invariant products (see {@link #batchInvariant()}). */
    @Override
    public DecoderDevice openDecoder(DecoderSpec spec) {
        return new CpuDecoderDevice(spec, batchInvariant, true);
    }

    @Override
    public String name() {
        return "cpu";
    }

    /** Worker threads this backend splits a product over. */
    public int threads() {
        return threads;
    }

    @Override
    public void matmul(float[] x, int rows, Tensor weight, float[] y) {
        Shape shape = Shape.of(weight, x, rows, y);
        WeightType type = shape.type;
        MemorySegment data = weight.data();
        forEachOutputRange(shape.outputs, (long) rows * shape.outputs * shape.inputs, 4,
                (start, end) -> dense(x, rows, data, type, shape.inputs, shape.outputs, start, end, y, ordered));
    }

    @Override
    public void deltaMatmul(float[] x, int rows, Tensor base, List<BinaryDelta> deltas, int[] tenantOfRow, float[] y) {
        Shape shape = Shape.of(base, x, rows, y);
        int inputs = shape.inputs;
        int outputs = shape.outputs;
        if (tenantOfRow.length < rows) {
            throw new BitDeltaException(base.name() + ": tenantOfRow has " + tenantOfRow.length + " entries for " + rows + " rows");
        }
        TenantGroups groups = TenantGroups.of(base, deltas, tenantOfRow, rows, outputs, inputs);
        MemorySegment data = base.data();
        WeightType type = shape.type;
        long work = (long) rows * outputs * inputs * 2;
        if (ordered && VectorKernels.LOOKUP_SUPPORTED) {
            // The lookup kernel's sign sums are per row already (lanes are output rows, no lane reduction), so
            // only the dense part needs the ordered kernels.
            lookupDecode(x, rows, data, type, inputs, outputs, deltas, tenantOfRow, y, work);
            return;
        }
        if (signLookup && rows >= LOOKUP_ROWS_MIN && rows < DIRECT_ROWS_LIMIT) {
            lookupDecode(x, rows, data, type, inputs, outputs, deltas, tenantOfRow, y, work);
            return;
        }
        // Per-token Σ_k x_k, shared by every output row of that token (see the positive-sum identity).
        float[] scratch = ordered ? new float[OrderedKernels.SCRATCH_FLOATS] : null;
        float[] rowSums = new float[rows];
        for (int r = 0; r < rows; r++) {
            if (tenantOfRow[r] >= 0) {
                rowSums[r] = ordered ? OrderedKernels.sum(x, r * inputs, inputs, scratch) : VectorKernels.sum(x, r * inputs, inputs);
            }
        }
        // The fused pass reads the weight in place, in its own summation order: never for the batch-invariant form.
        if (!ordered && rows < FUSED_ROWS_LIMIT && type != WeightType.F16) {
            BinaryDelta[] deltaOfRow = new BinaryDelta[rows];
            for (int r = 0; r < rows; r++) {
                deltaOfRow[r] = tenantOfRow[r] >= 0 ? deltas.get(tenantOfRow[r]) : null;
            }
            forEachOutputRange(outputs, work, 4,
                    (start, end) -> fusedDecode(x, rows, data, type, inputs, outputs, start, end, deltaOfRow, rowSums, y));
            return;
        }
        forEachOutputRange(outputs, work, 4, (start, end) -> {
            dense(x, rows, data, type, inputs, outputs, start, end, y, ordered);
            for (int group = 0; group < groups.count(); group++) {
                binary(x, groups.delta(group), groups.rows(group), rowSums, inputs, outputs, start, end, y, ordered);
            }
        });
    }

    /** Re-laid-out sign copies held now (for tests). */
    int cachedSignCopies() {
        return signBlocks.size();
    }

    @Override
    public void close() {
        if (owner != this) {
            return; // a batch-invariant form closes with the backend it came from
        }
        closed = true;
        signBlocks.clear();
        if (pool != null) {
            pool.shutdown();
        }
    }

    // -------------------------------------------------------------------------------------------------------------

    /**
     * Dense product for output rows [start, end). {@code ordered}: the batch-invariant product, {@link #denseTiled}
     * with the {@link OrderedKernels} for every row count (the weight read in place would sum in another order).
     */
    private static void dense(float[] x, int rows, MemorySegment weight, WeightType type, int inputs, int outputs,
                              int start, int end, float[] y, boolean ordered) {
        if (!ordered && rows < DIRECT_ROWS_LIMIT && type != WeightType.F16) {
            denseDirect(x, rows, weight, type, inputs, outputs, start, end, y);
        } else {
            denseTiled(x, rows, weight, type, inputs, outputs, start, end, y, ordered);
        }
    }

    /** Few rows: each weight row is read in place and widened in registers, once per activation row. */
    private static void denseDirect(float[] x, int rows, MemorySegment weight, WeightType type, int inputs, int outputs,
                                    int start, int end, float[] y) {
        long elementBytes = type == WeightType.F32 ? 4 : 2;
        long rowBytes = inputs * elementBytes;
        int m = start;
        for (; m + 4 <= end; m += 4) {
            long rowByte = m * rowBytes;
            int r = 0;
            for (; r + 4 <= rows; r += 4) {
                int x0 = r * inputs;
                int y0 = r * outputs + m;
                if (type == WeightType.F32) {
                    VectorKernels.dot4x4F32(weight, rowByte, rowBytes, inputs,
                            x, x0, x0 + inputs, x0 + 2 * inputs, x0 + 3 * inputs, y, y0, y0 + outputs, y0 + 2 * outputs, y0 + 3 * outputs);
                } else {
                    VectorKernels.dot4x4Bf16(weight, rowByte, rowBytes, inputs,
                            x, x0, x0 + inputs, x0 + 2 * inputs, x0 + 3 * inputs, y, y0, y0 + outputs, y0 + 2 * outputs, y0 + 3 * outputs);
                }
            }
            for (; r < rows; r++) {
                if (type == WeightType.F32) {
                    VectorKernels.dot4x1F32(weight, rowByte, rowBytes, inputs, x, r * inputs, y, r * outputs + m);
                } else {
                    VectorKernels.dot4x1Bf16(weight, rowByte, rowBytes, inputs, x, r * inputs, y, r * outputs + m);
                }
            }
        }
        denseLastRows(x, rows, weight, type, inputs, outputs, m, end, y);
    }

    /**
     * Output rows [first, end), fewer than a 4-row tile: each weight row is converted to floats once, then one dot
     * product per activation row.
     */
    private static void denseLastRows(float[] x, int rows, MemorySegment weight, WeightType type, int inputs, int outputs,
                                      int first, int end, float[] y) {
        if (first == end) {
            return;
        }
        float[] converted = new float[inputs];
        for (int m = first; m < end; m++) {
            VectorKernels.convertRow(weight, type, (long) m * inputs, 0, inputs, converted, 0);
            for (int r = 0; r < rows; r++) {
                y[r * outputs + m] = VectorKernels.dot1x1(converted, 0, inputs, x, r * inputs);
            }
        }
    }

    /**
     * Many rows: a 4-row x K_BLOCK tile of the weight is converted to floats once, then every activation row
     * uses it in 4 x 4 register tiles; partial sums of later K blocks are added into y. {@code ordered}: the tiles
     * of the {@link OrderedKernels} (one summation order per element), else of the {@link VectorKernels}.
     */
    private static void denseTiled(float[] x, int rows, MemorySegment weight, WeightType type, int inputs, int outputs,
                                   int start, int end, float[] y, boolean ordered) {
        int block = Math.min(K_BLOCK, inputs);
        float[] tile = new float[4 * block];
        float[] scratch = ordered ? new float[OrderedKernels.SCRATCH_FLOATS] : null;
        for (int k0 = 0; k0 < inputs; k0 += block) {
            int length = Math.min(block, inputs - k0);
            boolean accumulate = k0 > 0;
            for (int m = start; m < end; m += 4) {
                int tileRows = Math.min(4, end - m);
                for (int j = 0; j < tileRows; j++) {
                    VectorKernels.convertRow(weight, type, (long) (m + j) * inputs, k0, length, tile, j * block);
                }
                if (tileRows == 4) {
                    int r = 0;
                    for (; r + 4 <= rows; r += 4) {
                        int x0 = r * inputs + k0;
                        int y0 = r * outputs + m;
                        if (ordered) {
                            OrderedKernels.tile4x4(tile, block, length, x, x0, x0 + inputs, x0 + 2 * inputs, x0 + 3 * inputs,
                                    y, y0, y0 + outputs, y0 + 2 * outputs, y0 + 3 * outputs, accumulate, scratch);
                        } else {
                            VectorKernels.tile4x4(tile, block, length, x, x0, x0 + inputs, x0 + 2 * inputs, x0 + 3 * inputs,
                                    y, y0, y0 + outputs, y0 + 2 * outputs, y0 + 3 * outputs, accumulate);
                        }
                    }
                    for (; r < rows; r++) {
                        if (ordered) {
                            OrderedKernels.tile4x1(tile, block, length, x, r * inputs + k0, y, r * outputs + m, accumulate, scratch);
                        } else {
                            VectorKernels.tile4x1(tile, block, length, x, r * inputs + k0, y, r * outputs + m, accumulate);
                        }
                    }
                } else {
                    for (int j = 0; j < tileRows; j++) {
                        for (int r = 0; r < rows; r++) {
                            float partial = ordered ? OrderedKernels.dot1x1(tile, j * block, length, x, r * inputs + k0, scratch)
                                    : VectorKernels.dot1x1(tile, j * block, length, x, r * inputs + k0);
                            int index = r * outputs + m + j;
                            y[index] = accumulate ? y[index] + partial : partial;
                        }
                    }
                }
            }
        }
    }

    /**
     * Decode with deltas in one pass (fewer than {@link #FUSED_ROWS_LIMIT} rows): each 4-row weight tile and the
     * matching sign rows of the row's tenant are read together, so the sign work overlaps the weight stream.
     */
    private static void fusedDecode(float[] x, int rows, MemorySegment weight, WeightType type, int inputs, int outputs,
                                    int start, int end, BinaryDelta[] deltaOfRow, float[] rowSums, float[] y) {
        boolean f32 = type == WeightType.F32;
        long elementBytes = f32 ? 4 : 2;
        long rowBytes = inputs * elementBytes;
        int bound = inputs - inputs % VectorKernels.BITS_PER_WORD;
        float[] positive = new float[4];
        float[] tail = new float[4];
        int m = start;
        for (; m + 4 <= end; m += 4) {
            long rowByte = m * rowBytes;
            for (int r = 0; r < rows; r++) {
                int xOffset = r * inputs;
                int yIndex = r * outputs + m;
                BinaryDelta delta = deltaOfRow[r];
                if (delta == null) {
                    if (f32) {
                        VectorKernels.dot4x1F32(weight, rowByte, rowBytes, inputs, x, xOffset, y, yIndex);
                    } else {
                        VectorKernels.dot4x1Bf16(weight, rowByte, rowBytes, inputs, x, xOffset, y, yIndex);
                    }
                    continue;
                }
                MemorySegment signs = delta.signs();
                long bytesPerRow = delta.bytesPerRow();
                long signRow = m * bytesPerRow;
                if (f32) {
                    VectorKernels.fused4x1F32(weight, rowByte, rowBytes, inputs, x, xOffset, signs, signRow, bytesPerRow, y, yIndex, positive);
                } else {
                    VectorKernels.fused4x1Bf16(weight, rowByte, rowBytes, inputs, x, xOffset, signs, signRow, bytesPerRow, y, yIndex, positive);
                }
                if (bound < inputs) {
                    // The last inputs % 32 columns: the tail kernels on the suffix (a whole number of sign bytes in).
                    int rest = inputs - bound;
                    if (f32) {
                        VectorKernels.dot4x1F32(weight, rowByte + bound * elementBytes, rowBytes, rest, x, xOffset + bound, tail, 0);
                    } else {
                        VectorKernels.dot4x1Bf16(weight, rowByte + bound * elementBytes, rowBytes, rest, x, xOffset + bound, tail, 0);
                    }
                    for (int j = 0; j < 4; j++) {
                        y[yIndex + j] += tail[j];
                    }
                    VectorKernels.positiveSum4x1(signs, signRow + (bound >>> 3), bytesPerRow, rest, x, xOffset + bound, tail, 0);
                    for (int j = 0; j < 4; j++) {
                        positive[j] += tail[j];
                    }
                }
                applyDelta(delta, r, m, 4, positive, 0, rowSums, outputs, y);
            }
        }
        // The last rows: the dense products, then each delta added to its element (the same sums as in one pass).
        denseLastRows(x, rows, weight, type, inputs, outputs, m, end, y);
        for (; m < end; m++) {
            for (int r = 0; r < rows; r++) {
                BinaryDelta delta = deltaOfRow[r];
                if (delta != null) {
                    positive[0] = VectorKernels.positiveSum1x1(delta.signs(), m * delta.bytesPerRow(), inputs, x, r * inputs);
                    applyDelta(delta, r, m, 1, positive, 0, rowSums, outputs, y);
                }
            }
        }
    }

    /**
     * Decode batch with deltas, sign product by table lookup: the lookup tables of every row with a tenant are
     * built once (16 floats per 4 inputs per row, rows split over the pool), then each output chunk gets its dense
     * product and its sign sums ({@link #lookupRange}).
     */
    private void lookupDecode(float[] x, int rows, MemorySegment data, WeightType type, int inputs, int outputs,
                              List<BinaryDelta> deltas, int[] tenantOfRow, float[] y, long work) {
        int words = SignBlocks.words(inputs);
        int groups = 8 * words;
        int tableFloats = groups * VectorKernels.TABLE_FLOATS;
        int count = 0;
        for (int r = 0; r < rows; r++) {
            if (tenantOfRow[r] >= 0) {
                count++;
            }
        }
        int[] deltaRows = new int[count];
        BinaryDelta[] deltaOf = new BinaryDelta[count];
        MemorySegment[] blocksOf = new MemorySegment[count];
        for (int r = 0, i = 0; r < rows; r++) {
            if (tenantOfRow[r] >= 0) {
                deltaRows[i] = r;
                deltaOf[i] = deltas.get(tenantOfRow[r]);
                blocksOf[i] = signBlocks.of(deltaOf[i]);
                i++;
            }
        }
        float[] tables = new float[Math.multiplyExact(count, tableFloats)];
        // 16 floats per 4 inputs and row (about 55 µs for 16 rows of 4096 on one thread): split over the pool.
        forEachOutputRange(count, (long) count * inputs * 4, 1, (start, end) -> {
            for (int i = start; i < end; i++) {
                VectorKernels.buildTables(x, deltaRows[i] * inputs, inputs, groups, tables, i * tableFloats);
            }
        });
        forEachOutputRange(outputs, work, SignBlocks.BLOCK_ROWS, (start, end) -> {
            dense(x, rows, data, type, inputs, outputs, start, end, y, ordered);
            lookupRange(deltaRows, deltaOf, blocksOf, tables, tableFloats, words, outputs, start, end, y);
        });
    }

    /**
     * Adds the deltas of output rows [start, end) ({@code start} a multiple of 16) to their rows of y, by table
     * lookup: y[r, m] += scale(m) · Σ_k s(m, k) · x[r, k]. Row by row, two 16-row blocks at a time over all inputs
     * (each table load serves both; measured about 20% faster than one block at a time with the signs in DRAM): a
     * row's signs stream in order, and its tables (64 B per 4 inputs: 64 KiB for K = 4096) stay in L2. (Blocking
     * over K to keep the tables in L1 measured 1.4x to 2x slower: the sign stream then jumps every 2 KiB.)
     */
    private static void lookupRange(int[] deltaRows, BinaryDelta[] deltaOf, MemorySegment[] blocksOf, float[] tables, int tableFloats,
                                    int words, int outputs, int start, int end, float[] y) {
        int count = deltaRows.length;
        int firstBlock = start / SignBlocks.BLOCK_ROWS;
        int blocks = SignBlocks.blocks(end - start);
        int blockFloats = blocks * SignBlocks.BLOCK_ROWS;
        float[] sums = new float[count * blockFloats];
        for (int i = 0; i < count; i++) {
            MemorySegment signBlocks = blocksOf[i];
            long blockBytes = (long) words * SignBlocks.BLOCK_ROWS * 4;
            int b = 0;
            for (; b + 2 <= blocks; b += 2) {
                long first = (firstBlock + b) * blockBytes;
                VectorKernels.lookup32x1(signBlocks, first, first + blockBytes, words, tables, i * tableFloats,
                        sums, i * blockFloats + b * SignBlocks.BLOCK_ROWS, i * blockFloats + (b + 1) * SignBlocks.BLOCK_ROWS);
            }
            if (b < blocks) {
                VectorKernels.lookup16x1(signBlocks, (firstBlock + b) * blockBytes, words,
                        tables, i * tableFloats, sums, i * blockFloats + b * SignBlocks.BLOCK_ROWS);
            }
        }
        for (int i = 0; i < count; i++) {
            BinaryDelta delta = deltaOf[i];
            int yBase = deltaRows[i] * outputs;
            int sumBase = i * blockFloats - start;
            if (delta.perRowScales()) {
                for (int m = start; m < end; m++) {
                    y[yBase + m] += delta.scale(m) * sums[sumBase + m];
                }
            } else {
                float scale = delta.scale(0);
                for (int m = start; m < end; m++) {
                    y[yBase + m] += scale * sums[sumBase + m];
                }
            }
        }
    }

    /**
     * Adds one tenant's delta for output rows [start, end) to its activation rows:
     * y[r, m] += scale(m) · (2 · Σ_{k: s = +1} x[r, k] − Σ_k x[r, k]). {@code ordered}: the sign sums of the
     * {@link OrderedKernels}, the same per row whatever the rows' grouping.
     */
    private static void binary(float[] x, BinaryDelta delta, int[] tenantRows, float[] rowSums, int inputs, int outputs,
                               int start, int end, float[] y, boolean ordered) {
        MemorySegment signs = delta.signs();
        long bytesPerRow = delta.bytesPerRow();
        int count = tenantRows.length;
        float[] positive = new float[16];
        float[] scratch = ordered ? new float[OrderedKernels.SCRATCH_FLOATS] : null;
        int m = start;
        for (; m + 4 <= end; m += 4) {
            long signRow = m * bytesPerRow;
            int i = 0;
            for (; i + 4 <= count; i += 4) {
                int r0 = tenantRows[i], r1 = tenantRows[i + 1], r2 = tenantRows[i + 2], r3 = tenantRows[i + 3];
                if (ordered) {
                    OrderedKernels.positiveSum4x4(signs, signRow, bytesPerRow, inputs, x,
                            r0 * inputs, r1 * inputs, r2 * inputs, r3 * inputs, positive, 0, 4, 8, 12, scratch);
                } else {
                    VectorKernels.positiveSum4x4(signs, signRow, bytesPerRow, inputs, x,
                            r0 * inputs, r1 * inputs, r2 * inputs, r3 * inputs, positive, 0, 4, 8, 12);
                }
                for (int row = 0; row < 4; row++) {
                    applyDelta(delta, tenantRows[i + row], m, 4, positive, row * 4, rowSums, outputs, y);
                }
            }
            for (; i < count; i++) {
                int r = tenantRows[i];
                if (ordered) {
                    OrderedKernels.positiveSum4x1(signs, signRow, bytesPerRow, inputs, x, r * inputs, positive, 0, scratch);
                } else {
                    VectorKernels.positiveSum4x1(signs, signRow, bytesPerRow, inputs, x, r * inputs, positive, 0);
                }
                applyDelta(delta, r, m, 4, positive, 0, rowSums, outputs, y);
            }
        }
        for (; m < end; m++) {
            for (int r : tenantRows) {
                positive[0] = ordered ? OrderedKernels.positiveSum1x1(signs, m * bytesPerRow, inputs, x, r * inputs, scratch)
                        : VectorKernels.positiveSum1x1(signs, m * bytesPerRow, inputs, x, r * inputs);
                applyDelta(delta, r, m, 1, positive, 0, rowSums, outputs, y);
            }
        }
    }

    private static void applyDelta(BinaryDelta delta, int row, int firstOutput, int count, float[] positive, int offset,
                                   float[] rowSums, int outputs, float[] y) {
        float rowSum = rowSums[row];
        int base = row * outputs + firstOutput;
        for (int j = 0; j < count; j++) {
            y[base + j] += delta.scale(firstOutput + j) * (2 * positive[offset + j] - rowSum);
        }
    }

    /** A body over output rows [start, end). */
    @FunctionalInterface
    private interface OutputRange {
        void run(int start, int end);
    }

    /**
     * Runs {@code body} over [0, outputs) split into chunks of whole {@code unit}-row tiles on the pool, or on the
     * calling thread when the work is too small to be worth a fork.
     */
    private void forEachOutputRange(int outputs, long work, int unit, OutputRange body) {
        if (owner.closed) {
            throw new IllegalStateException("the cpu backend is closed");
        }
        int tiles = (outputs + unit - 1) / unit;
        int chunks = Math.min(tiles, threads * CHUNKS_PER_THREAD);
        if (pool == null || work < PARALLEL_WORK_THRESHOLD || chunks < 2) {
            body.run(0, outputs);
            return;
        }
        List<ForkJoinTask<?>> tasks = new ArrayList<>(chunks);
        for (int chunk = 0; chunk < chunks; chunk++) {
            int start = Math.min(outputs, (int) ((long) tiles * chunk / chunks) * unit);
            int end = Math.min(outputs, (int) ((long) tiles * (chunk + 1) / chunks) * unit);
            if (start < end) {
                tasks.add(ForkJoinTask.adapt(() -> body.run(start, end)));
            }
        }
        // invoke() rethrows a task's exception on this thread, with its stack.
        pool.invoke(ForkJoinTask.adapt(() -> ForkJoinTask.invokeAll(tasks)));
    }

    /** A checked product shape: weight [outputs, inputs] of a supported type, x and y big enough. */
    private record Shape(int outputs, int inputs, WeightType type) {
        static Shape of(Tensor weight, float[] x, int rows, float[] y) {
            if (weight.rank() != 2) {
                throw new BitDeltaException(weight.name() + ": a weight must be 2-D [out, in], got " + weight);
            }
            WeightType type = switch (weight.dtype()) {
                case F32 -> WeightType.F32;
                case F16 -> WeightType.F16;
                case BF16 -> WeightType.BF16;
                default -> throw new BitDeltaException(weight.name() + ": the cpu backend multiplies F32/F16/BF16 weights, got " + weight.dtype());
            };
            int outputs = Math.toIntExact(weight.dimension(0));
            int inputs = Math.toIntExact(weight.dimension(1));
            if (rows < 0) {
                throw new BitDeltaException(weight.name() + ": negative row count " + rows);
            }
            if (x.length < (long) rows * inputs || y.length < (long) rows * outputs) {
                throw new BitDeltaException(weight.name() + " [" + outputs + ", " + inputs + "] with " + rows + " rows needs x of "
                        + (long) rows * inputs + " and y of " + (long) rows * outputs + " floats, got " + x.length + " and " + y.length);
            }
            return new Shape(outputs, inputs, type);
        }
    }

    /** The batch's rows grouped by tenant, so each tenant's signs are read once per call. */
    private record TenantGroups(BinaryDelta[] deltas, int[][] rowsOf) {
        static TenantGroups of(Tensor base, List<BinaryDelta> deltas, int[] tenantOfRow, int rows, int outputs, int inputs) {
            int[] counts = new int[deltas.size()];
            for (int r = 0; r < rows; r++) {
                int tenant = tenantOfRow[r];
                if (tenant < -1 || tenant >= deltas.size() || (tenant >= 0 && deltas.get(tenant) == null)) {
                    throw new BitDeltaException(base.name() + ": row " + r + " names tenant " + tenant + ", which is not among the "
                            + deltas.size() + " tenant slots (or was removed)");
                }
                if (tenant >= 0) {
                    counts[tenant]++;
                }
            }
            List<BinaryDelta> used = new ArrayList<>();
            List<int[]> rowLists = new ArrayList<>();
            int[] slot = new int[deltas.size()];
            for (int tenant = 0; tenant < counts.length; tenant++) {
                if (counts[tenant] > 0) {
                    BinaryDelta delta = deltas.get(tenant);
                    if (delta.rows() != outputs || delta.cols() != inputs) {
                        throw new BitDeltaException(delta.name() + ": delta is " + delta.rows() + "x" + delta.cols()
                                + " but the base weight " + base.name() + " is " + outputs + "x" + inputs);
                    }
                    slot[tenant] = used.size();
                    used.add(delta);
                    rowLists.add(new int[counts[tenant]]);
                }
            }
            int[] filled = new int[used.size()];
            for (int r = 0; r < rows; r++) {
                int tenant = tenantOfRow[r];
                if (tenant >= 0) {
                    int group = slot[tenant];
                    rowLists.get(group)[filled[group]++] = r;
                }
            }
            return new TenantGroups(used.toArray(BinaryDelta[]::new), rowLists.toArray(int[][]::new));
        }

        int count() {
            return deltas.length;
        }

        BinaryDelta delta(int group) {
            return deltas[group];
        }

        int[] rows(int group) {
            return rowsOf[group];
        }
    }
}
