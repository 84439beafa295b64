package org.bitdelta.cuda;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.cuda.internal.CudaLibrary;
import org.bitdelta.cuda.internal.DeviceBuffer;
import org.bitdelta.cuda.internal.DeviceScope;
import org.bitdelta.cuda.internal.WeakIdentityCache;
import org.bitdelta.spi.DecoderDevice;
import org.bitdelta.spi.DecoderSpec;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The CUDA backend: W1A16 kernels of libbitdelta_cuda through FFM. Weights are uploaded once per tensor (F16 and
 * BF16 as they are, F32 converted to F16, or to BF16 when a value exceeds the F16 range), each tenant's signs are
 * uploaded and repacked once per sign matrix, its scales once per {@link BinaryDelta}. Activations are converted
 * to the weight's 16-bit type on upload; results come back as F32.
 *
 * <p>{@link #compressMatrix} compresses F16/BF16 pairs on the GPU (bd_compress, bit-identical to the CPU compressor);
 * its uploads are freed when it returns, never cached.
 *
 * <p>Caches are keyed by the objects the data came from, weakly and by identity (a weight by its {@link Tensor}, signs
 * by their {@link MemorySegment}, scales by their {@link BinaryDelta}), never by a memory address that a later tensor
 * could reuse: an entry's device memory is freed once its key object is garbage (at the next product call), by
 * {@link #clearCaches()} or by {@link #close()}. The bytes of a cached tensor or delta must not change.
 * Calls are serialized on one stream per backend. All device memory is owned by one {@link DeviceScope} and
 * freed by {@link #close()}.
 *
 * <p>{@link #openDecoder} opens a {@link CudaDecoderDevice}: the whole decoder step on the GPU, with its own stream
 * and device memory (closed with this backend at the latest).
 */
public final class CudaBackend implements TensorBackend {
    /** Up to this many rows the fused decode kernel runs; above it the prefill kernel, when segments are long. */
    static final int DECODE_MAX_ROWS = 32;
    /** Prefill pays off when the runs of rows of one tenant are about this long (its tile is 128 rows). */
    static final int PREFILL_MIN_ROWS_PER_SEGMENT = 16;
    /** Rows per launch sequence, bounding the staging memory (and under the kernels' 65535 limits). */
    static final int MAX_ROWS_PER_CHUNK = 4096;
    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final float F16_MAX = 65504f;

    private final CudaLibrary library;
    private final int device;
    private final String deviceName;
    private final long stream;
    private final DeviceScope scope;
    private final WeakIdentityCache<Tensor, DeviceWeight> weights = new WeakIdentityCache<>();
    private final WeakIdentityCache<MemorySegment, DeviceBuffer> signs = new WeakIdentityCache<>();
    private final WeakIdentityCache<BinaryDelta, DeviceDelta> deltas = new WeakIdentityCache<>();
    /** Open decoder devices, closed with the backend. */
    private final Map<CudaDecoderDevice, Boolean> decoders = new IdentityHashMap<>();
    /** -Dbitdelta.cuda.graphs=false runs decode steps eagerly instead of as CUDA graphs (for comparison and debugging). */
    private final boolean graphs = !"false".equalsIgnoreCase(System.getProperty("bitdelta.cuda.graphs", "true"));
    private final KvCachePrecision kvCache;

    /**
     * How the decoder of a 16-bit model (F16 or BF16 projections) holds its KV cache; F32 models always hold F32.
     * {@code -Dbitdelta.cuda.kvCache=model|f32} sets the default of the constructors without this argument.
     */
    public enum KvCachePrecision {
        /**
         * Keys and values in the model's 16-bit dtype: half the bytes of F32 in memory and in every decode step's reads,
         * as 16-bit inference stacks keep them. Attention then reads keys and values rounded to 16 bits (relative error
         * 2^-12 for F16, 2^-9 for BF16), so results move off the CPU decoder's (which keeps F32) by more than F32
         * rounding. The default.
         */
        MODEL,
        /** F32, as the CPU decoder: the GPU's results stay within F32 rounding of the CPU's. */
        F32;

        static KvCachePrecision fromProperty() {
            String value = System.getProperty("bitdelta.cuda.kvCache", "model");
            return switch (value.toLowerCase(java.util.Locale.ROOT)) {
                case "model" -> MODEL;
                case "f32" -> F32;
                default -> throw new BitDeltaException("-Dbitdelta.cuda.kvCache=" + value + " is not one of model, f32");
            };
        }
    }
    /** Page-locked, so that the copies in and out of each call are DMA transfers without a staging copy. */
    private MemorySegment hostStaging;
    private MemorySegment hostOutput;
    private DeviceBuffer deviceStaging;
    private DeviceBuffer deviceOutput;
    private DeviceBuffer workspace;
    private boolean closed;

    /** A backend on device 0. */
    public CudaBackend() {
        this(0);
    }

    /** A backend on CUDA device {@code device} (the KV cache precision of -Dbitdelta.cuda.kvCache, default MODEL). */
    public CudaBackend(int device) {
        this(device, KvCachePrecision.fromProperty());
    }

    /** A backend on CUDA device {@code device} whose decoders keep a 16-bit model's KV cache as {@code kvCache} says. */
    public CudaBackend(int device, KvCachePrecision kvCache) {
        this.kvCache = java.util.Objects.requireNonNull(kvCache, "kvCache");
        this.library = CudaLibrary.load();
        int count = library.deviceCount();
        if (device < 0 || device >= count) {
            throw new BitDeltaException("CUDA device " + device + " does not exist (" + count + " visible)");
        }
        this.device = device;
        library.setDevice(device);
        this.deviceName = library.deviceName(device);
        this.scope = new DeviceScope(library);
        this.stream = library.streamCreate();
    }

    @Override
    public String name() {
        return CudaBackendProvider.NAME;
    }

    /** "NVIDIA H100 80GB HBM3 (device 0), library PATH". */
    public String describe() {
        return deviceName + " (device " + device + "), library " + library.path();
    }

    /** The loaded library, for tools and tests that call the ABI directly. */
    public CudaLibrary library() {
        return library;
    }

    int deviceIndex() {
        return device;
    }

    /** How this backend's decoders keep a 16-bit model's KV cache. */
    public KvCachePrecision kvCachePrecision() {
        return kvCache;
    }

    String deviceName() {
        return deviceName + " (device " + device + ")";
    }

    /** The decoder step on this GPU: see {@link CudaDecoderDevice}. */
    @Override
    public synchronized DecoderDevice openDecoder(DecoderSpec spec) {
        ensureOpen();
        CudaDecoderDevice decoder = new CudaDecoderDevice(this, spec, graphs, kvCache);
        decoders.put(decoder, Boolean.TRUE);
        return decoder;
    }

    /** Called by a decoder device as it closes. */
    synchronized void forget(CudaDecoderDevice decoder) {
        decoders.remove(decoder);
    }

    /** Device bytes held by this backend (cached weights, deltas and scratch). */
    public synchronized long deviceBytes() {
        return scope.liveBytes();
    }

    @Override
    public synchronized void matmul(float[] x, int rows, Tensor weight, float[] y) {
        int[] baseOnly = new int[Math.max(rows, 0)];
        Arrays.fill(baseOnly, -1);
        deltaMatmul(x, rows, weight, List.of(), baseOnly, y);
    }

    @Override
    public synchronized void deltaMatmul(float[] x, int rows, Tensor base, List<BinaryDelta> tenantDeltas, int[] tenantOfRow, float[] y) {
        ensureOpen();
        validate(x, rows, base, tenantDeltas, tenantOfRow, y);
        if (rows == 0) {
            return;
        }
        library.selectDevice(device);
        expungeCollected();
        DeviceWeight weight = deviceWeight(base);
        for (int start = 0; start < rows; start += MAX_ROWS_PER_CHUNK) {
            int count = Math.min(MAX_ROWS_PER_CHUNK, rows - start);
            runChunk(x, start, count, weight, tenantDeltas, tenantOfRow, y);
        }
    }

    /**
     * Compresses one F16 or BF16 pair on the GPU: uploads both matrices, runs bd_compress, fetches the packed signs
     * into {@code signs} and returns the scales (F32 [rows] per row, F32 [1] per matrix), bit-identical to the CPU
     * compressor (bitdelta_cuda.h states the arithmetic). The device memory is freed before returning. Returns null,
     * so that the caller compresses on the CPU, for pairs the kernel does not take (F32 or other dtypes, different
     * dtypes or shapes, not 2-D) and for pairs holding NaN or infinity (the CPU compressor then names the element).
     */
    @Override
    public synchronized float[] compressMatrix(Tensor base, Tensor finetuned, MemorySegment signs, boolean perRowScales) {
        ensureOpen();
        Objects.requireNonNull(signs, "signs");
        if (!compressible(base, finetuned)) {
            return null;
        }
        int rows = Math.toIntExact(base.dimension(0));
        int cols = Math.toIntExact(base.dimension(1));
        long signBytes = (long) rows * BinaryDelta.bytesPerRow(cols);
        if (signs.byteSize() != signBytes) {
            throw new IllegalArgumentException(base.name() + ": sign buffer of " + signs.byteSize() + " bytes for " + rows + "x" + cols
                    + ", needs rows * ceil(cols / 8) = " + signBytes);
        }
        library.selectDevice(device);
        long matrixBytes = 2L * rows * cols;
        int scaleCount = perRowScales ? rows : 1;
        String what = "bd_compress(" + base.name() + " [" + rows + ", " + cols + "] " + base.dtype() + ")";
        try (DeviceScope uploads = new DeviceScope(library); Arena host = Arena.ofConfined()) {
            DeviceBuffer deviceBase = uploads.allocate(matrixBytes, "base of " + what);
            DeviceBuffer deviceFinetuned = uploads.allocate(matrixBytes, "fine-tune of " + what);
            DeviceBuffer deviceSigns = uploads.allocate(signBytes, "signs of " + what);
            DeviceBuffer deviceScales = uploads.allocate(4L * scaleCount, "scales of " + what);
            long workspaceBytes = library.compressWorkspaceBytes(rows, cols);
            DeviceBuffer workspace = uploads.allocate(workspaceBytes, "workspace of " + what);
            upload(deviceBase, base.data(), matrixBytes, host, "uploading the base of " + what);
            upload(deviceFinetuned, finetuned.data(), matrixBytes, host, "uploading the fine-tune of " + what);
            library.check(library.compress(base.dtype() == DType.F16 ? CudaLibrary.DTYPE_F16 : CudaLibrary.DTYPE_BF16,
                    deviceBase.address(), deviceFinetuned.address(), rows, cols, deviceSigns.address(),
                    perRowScales ? deviceScales.address() : 0, perRowScales ? 0 : deviceScales.address(), 0,
                    workspace.address(), workspaceBytes, stream), what);
            library.check(library.streamSynchronize(stream), what);
            MemorySegment hostScales = host.allocate(4L * scaleCount, 4);
            library.check(library.copyDeviceToHost(hostScales, deviceScales.address(), 4L * scaleCount), "fetching the scales of " + what);
            float[] scales = new float[scaleCount];
            MemorySegment.copy(hostScales, FLOAT, 0, scales, 0, scaleCount);
            for (float scale : scales) {
                // A NaN or infinite |ft - base| sum: the CPU compressor rejects the pair and names the element.
                if (!Float.isFinite(scale)) {
                    return null;
                }
            }
            MemorySegment hostSigns = signs.isNative() ? signs : host.allocate(signBytes, 16);
            library.check(library.copyDeviceToHost(hostSigns, deviceSigns.address(), signBytes), "fetching the signs of " + what);
            if (hostSigns != signs) {
                MemorySegment.copy(hostSigns, 0, signs, 0, signBytes);
            }
            return scales;
        }
    }

    /** Whether bd_compress takes this pair: both 2-D, the same shape and dtype, F16 or BF16, each side below 2^31. */
    static boolean compressible(Tensor base, Tensor finetuned) {
        Objects.requireNonNull(base, "base");
        Objects.requireNonNull(finetuned, "finetuned");
        if (base.rank() != 2 || finetuned.rank() != 2 || base.dtype() != finetuned.dtype()
                || (base.dtype() != DType.F16 && base.dtype() != DType.BF16)) {
            return false;
        }
        long rows = base.dimension(0);
        long cols = base.dimension(1);
        return rows == finetuned.dimension(0) && cols == finetuned.dimension(1)
                && rows > 0 && cols > 0 && rows < Integer.MAX_VALUE && cols < Integer.MAX_VALUE
                && base.data().byteSize() >= 2 * rows * cols && finetuned.data().byteSize() >= 2 * rows * cols;
    }

    /** Copies {@code bytes} of {@code source} to the device, through a native copy when it lives on the Java heap. */
    private void upload(DeviceBuffer target, MemorySegment source, long bytes, Arena host, String what) {
        MemorySegment from = source.isNative() ? source : host.allocate(bytes, 64).copyFrom(source.asSlice(0, bytes));
        library.check(library.copyHostToDevice(target.address(), from, bytes), what);
    }

    /** Frees every cached weight and delta (scratch buffers stay). */
    public synchronized void clearCaches() {
        ensureOpen();
        for (DeviceWeight weight : weights.clear()) {
            scope.release(weight.buffer());
        }
        for (DeviceBuffer buffer : signs.clear()) {
            scope.release(buffer);
        }
        for (DeviceDelta delta : deltas.clear()) {
            scope.release(delta.scales());
        }
    }

    /** Frees the device copies of tensors and deltas that are garbage now. */
    private void expungeCollected() {
        weights.expunge(weight -> scope.release(weight.buffer()));
        deltas.expunge(delta -> scope.release(delta.scales()));
        signs.expunge(scope::release);
    }

    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        weights.clear();
        signs.clear();
        deltas.clear();
        RuntimeException decoderFailure = null;
        for (CudaDecoderDevice decoder : new ArrayList<>(decoders.keySet())) {
            try {
                decoder.close();
            } catch (RuntimeException e) {
                if (decoderFailure == null) {
                    decoderFailure = e;
                } else {
                    decoderFailure.addSuppressed(e);
                }
            }
        }
        decoders.clear();
        try {
            if (decoderFailure != null) {
                throw decoderFailure;
            }
            library.check(library.streamSynchronize(stream), "synchronizing the stream at close");
        } finally {
            try {
                scope.close();
            } finally {
                try {
                    library.check(library.streamDestroy(stream), "destroying the stream");
                } finally {
                    freePinned();
                }
            }
        }
    }

    // ---- validation: nothing malformed reaches a kernel ----

    private static void validate(float[] x, int rows, Tensor base, List<BinaryDelta> tenantDeltas, int[] tenantOfRow, float[] y) {
        Objects.requireNonNull(x, "x");
        Objects.requireNonNull(base, "base weight");
        Objects.requireNonNull(tenantDeltas, "deltas");
        Objects.requireNonNull(tenantOfRow, "tenantOfRow");
        Objects.requireNonNull(y, "y");
        if (base.rank() != 2) {
            throw new BitDeltaException(base.name() + ": the CUDA backend needs a 2-D weight [out, in], got " + base);
        }
        DType dtype = base.dtype();
        if (dtype != DType.F16 && dtype != DType.BF16 && dtype != DType.F32) {
            throw new BitDeltaException(base.name() + ": the CUDA backend multiplies F16, BF16 (and F32, converted to F16) weights, not " + dtype);
        }
        long outputs = base.dimension(0);
        long inputs = base.dimension(1);
        if (outputs <= 0 || inputs <= 0 || outputs >= Integer.MAX_VALUE || inputs >= Integer.MAX_VALUE) {
            throw new BitDeltaException(base.name() + ": shape " + Arrays.toString(base.shape()) + " must be positive and below 2^31");
        }
        if (rows < 0) {
            throw new BitDeltaException(base.name() + ": negative row count " + rows);
        }
        if (x.length < (long) rows * inputs) {
            throw new BitDeltaException(base.name() + ": x has " + x.length + " floats, needs rows * in = " + rows + " * " + inputs
                    + " for weight [" + outputs + ", " + inputs + "]");
        }
        if (y.length < (long) rows * outputs) {
            throw new BitDeltaException(base.name() + ": y has " + y.length + " floats, needs rows * out = " + rows + " * " + outputs
                    + " for weight [" + outputs + ", " + inputs + "]");
        }
        if (tenantOfRow.length < rows) {
            throw new BitDeltaException(base.name() + ": tenantOfRow has " + tenantOfRow.length + " entries for " + rows + " rows");
        }
        for (int row = 0; row < rows; row++) {
            int tenant = tenantOfRow[row];
            if (tenant == -1) {
                continue;
            }
            if (tenant < 0 || tenant >= tenantDeltas.size()) {
                throw new BitDeltaException(base.name() + ": row " + row + " names tenant " + tenant + ", outside [-1, "
                        + tenantDeltas.size() + ") (" + tenantDeltas.size() + " deltas given)");
            }
            BinaryDelta delta = tenantDeltas.get(tenant);
            if (delta == null) {
                throw new BitDeltaException(base.name() + ": row " + row + " names tenant " + tenant + ", whose delta is null");
            }
            if (delta.rows() != outputs || delta.cols() != inputs) {
                throw new BitDeltaException(base.name() + ": tenant " + tenant + "'s delta " + delta.name() + " is " + delta.rows() + "x"
                        + delta.cols() + " but the base weight is " + outputs + "x" + inputs);
            }
        }
    }

    // ---- one chunk of rows: stage, launch, fetch ----

    private void runChunk(float[] x, int firstRow, int rows, DeviceWeight weight, List<BinaryDelta> tenantDeltas, int[] tenantOfRow, float[] y) {
        int outputs = weight.outputs();
        int inputs = weight.inputs();
        // Compact tenant table: only the tenants these rows use, in order of first use.
        Map<Integer, Integer> compactOf = new HashMap<>();
        int[] compactRow = new int[rows];
        int segments = 0;
        for (int row = 0; row < rows; row++) {
            int tenant = tenantOfRow[firstRow + row];
            compactRow[row] = tenant < 0 ? -1 : compactOf.computeIfAbsent(tenant, unused -> compactOf.size());
            if (row == 0 || compactRow[row] != compactRow[row - 1]) {
                segments++;
            }
        }
        int tenantCount = compactOf.size();
        DeviceDelta[] used = new DeviceDelta[tenantCount];
        for (Map.Entry<Integer, Integer> entry : compactOf.entrySet()) {
            used[entry.getValue()] = deviceDelta(tenantDeltas.get(entry.getKey()));
        }
        boolean prefill = rows > DECODE_MAX_ROWS && rows >= (long) segments * PREFILL_MIN_ROWS_PER_SEGMENT;

        // Staging layout (host and device alike, one copy): signs pointers, scales pointers, int32 indices, x.
        long signsTableOffset = 0;
        long scalesTableOffset = 8L * tenantCount;
        long indexOffset = 16L * tenantCount;
        long indexBytes = prefill ? 4L * (2L * segments + 1) : 4L * rows;
        long xOffset = align(indexOffset + indexBytes, 256);
        long xBytes = 2L * rows * inputs;
        long stagingBytes = xOffset + xBytes;
        long outputBytes = 4L * rows * outputs;
        ensureStaging(stagingBytes, outputBytes);

        MemorySegment host = hostStaging;
        long device = deviceStaging.address();
        for (int tenant = 0; tenant < tenantCount; tenant++) {
            host.set(ValueLayout.JAVA_LONG, signsTableOffset + 8L * tenant, used[tenant].signsAddress());
            host.set(ValueLayout.JAVA_LONG, scalesTableOffset + 8L * tenant, used[tenant].scales().address());
        }
        long segmentTenantOffset = indexOffset + 4L * (segments + 1);
        if (prefill) {
            int segment = 0;
            for (int row = 0; row < rows; row++) {
                if (row == 0 || compactRow[row] != compactRow[row - 1]) {
                    host.set(ValueLayout.JAVA_INT, indexOffset + 4L * segment, row);
                    host.set(ValueLayout.JAVA_INT, segmentTenantOffset + 4L * segment, compactRow[row]);
                    segment++;
                }
            }
            host.set(ValueLayout.JAVA_INT, indexOffset + 4L * segments, rows);
        } else {
            MemorySegment.copy(compactRow, 0, host, ValueLayout.JAVA_INT, indexOffset, rows);
        }
        convertActivations(x, (long) firstRow * inputs, (long) rows * inputs, weight.dtype(), host, xOffset);

        long tableSigns = tenantCount == 0 ? 0 : device + signsTableOffset;
        long tableScales = tenantCount == 0 ? 0 : device + scalesTableOffset;
        String shapes = (prefill ? "bd_prefill" : "bd_decode") + "(" + weight.describe() + ", x [" + rows + ", " + inputs + "], "
                + tenantCount + " tenants, " + segments + " segments)";
        try {
            library.check(library.copyHostToDeviceAsync(device, host, stagingBytes, stream), "uploading activations for " + shapes);
            int status;
            if (prefill) {
                long workspaceBytes = library.prefillWorkspaceBytes(outputs, inputs, rows, segments);
                long workspaceAddress = ensureWorkspace(workspaceBytes);
                status = library.prefill(weight.code(), CudaLibrary.DTYPE_F32, weight.buffer().address(), device + xOffset, rows,
                        device + indexOffset, device + segmentTenantOffset, segments, tableSigns, tableScales, tenantCount,
                        CudaLibrary.SCALE_PER_ROW, 0, deviceOutput.address(), outputs, inputs, workspaceAddress, workspaceBytes, stream);
            } else {
                long workspaceBytes = library.decodeWorkspaceBytes(outputs, inputs, rows);
                long workspaceAddress = ensureWorkspace(workspaceBytes);
                status = library.decode(weight.code(), CudaLibrary.DTYPE_F32, weight.buffer().address(), device + xOffset, device + indexOffset,
                        rows, tableSigns, tableScales, tenantCount, CudaLibrary.SCALE_PER_ROW, deviceOutput.address(), outputs, inputs,
                        workspaceAddress, workspaceBytes, stream);
            }
            library.check(status, shapes);
            library.check(library.copyDeviceToHostAsync(hostOutput, deviceOutput.address(), outputBytes, stream), "fetching y of " + shapes);
            library.check(library.streamSynchronize(stream), shapes);
        } catch (RuntimeException failure) {
            // Copies already enqueued read the pinned staging buffers: let them finish before the next call reuses them.
            int synchronizeStatus = library.streamSynchronize(stream);
            if (synchronizeStatus != CudaLibrary.OK) {
                failure.addSuppressed(library.failure(synchronizeStatus, "synchronizing after the failure of " + shapes));
            }
            throw failure;
        }
        MemorySegment.copy(hostOutput, ValueLayout.JAVA_FLOAT, 0, y, firstRow * outputs, rows * outputs);
    }

    private static void convertActivations(float[] x, long start, long count, DType dtype, MemorySegment host, long offset) {
        int first = Math.toIntExact(start);
        int length = Math.toIntExact(count);
        if (dtype == DType.F16) {
            for (int i = 0; i < length; i++) {
                host.set(SHORT, offset + 2L * i, Float.floatToFloat16(x[first + i]));
            }
        } else {
            for (int i = 0; i < length; i++) {
                host.set(SHORT, offset + 2L * i, toBfloat16(x[first + i]));
            }
        }
    }

    /** Round to nearest even, NaN kept quiet. */
    static short toBfloat16(float value) {
        int bits = Float.floatToRawIntBits(value);
        if (Float.isNaN(value)) {
            return (short) ((bits >>> 16) | 0x0040);
        }
        return (short) ((bits + 0x7FFF + ((bits >>> 16) & 1)) >>> 16);
    }

    private static long align(long value, long alignment) {
        return (value + alignment - 1) / alignment * alignment;
    }

    // ---- scratch buffers (grow only) ----

    private void ensureStaging(long stagingBytes, long outputBytes) {
        if (hostStaging == null || hostStaging.byteSize() < stagingBytes || hostOutput.byteSize() < outputBytes) {
            long stagingCapacity = Math.max(stagingBytes, hostStaging == null ? 0 : hostStaging.byteSize());
            long outputCapacity = Math.max(outputBytes, hostOutput == null ? 0 : hostOutput.byteSize());
            freePinned();
            hostStaging = library.hostAlloc(stagingCapacity);
            hostOutput = library.hostAlloc(outputCapacity);
        }
        if (deviceStaging == null || deviceStaging.bytes() < stagingBytes) {
            DeviceBuffer next = scope.allocate(Math.max(stagingBytes, deviceStaging == null ? 0 : deviceStaging.bytes()), "activation staging");
            if (deviceStaging != null) {
                scope.release(deviceStaging);
            }
            deviceStaging = next;
        }
        if (deviceOutput == null || deviceOutput.bytes() < outputBytes) {
            DeviceBuffer next = scope.allocate(Math.max(outputBytes, deviceOutput == null ? 0 : deviceOutput.bytes()), "output y");
            if (deviceOutput != null) {
                scope.release(deviceOutput);
            }
            deviceOutput = next;
        }
    }

    /** Frees both pinned buffers (the stream is idle whenever this runs: every call ends synchronized). */
    private void freePinned() {
        MemorySegment staging = hostStaging;
        MemorySegment output = hostOutput;
        hostStaging = null;
        hostOutput = null;
        try {
            if (staging != null) {
                library.check(library.hostFree(staging), "freeing pinned activation staging");
            }
        } finally {
            if (output != null) {
                library.check(library.hostFree(output), "freeing pinned output staging");
            }
        }
    }

    private long ensureWorkspace(long bytes) {
        if (bytes == 0) {
            return 0;
        }
        if (workspace == null || workspace.bytes() < bytes) {
            DeviceBuffer next = scope.allocate(bytes, "kernel workspace");
            if (workspace != null) {
                scope.release(workspace);
            }
            workspace = next;
        }
        return workspace.address();
    }

    // ---- caches: weights and deltas are uploaded once per object ----

    private record DeviceWeight(DeviceBuffer buffer, DType dtype, int outputs, int inputs, DType sourceDtype) {
        int code() {
            return dtype == DType.F16 ? CudaLibrary.DTYPE_F16 : CudaLibrary.DTYPE_BF16;
        }

        String describe() {
            return "W [" + outputs + ", " + inputs + "] " + dtype + (sourceDtype != dtype ? " (from " + sourceDtype + ")" : "");
        }
    }

    private record DeviceDelta(long signsAddress, DeviceBuffer scales) {
    }

    private DeviceWeight deviceWeight(Tensor base) {
        DeviceWeight cached = weights.get(base);
        if (cached != null) {
            return cached;
        }
        int outputs = Math.toIntExact(base.dimension(0));
        int inputs = Math.toIntExact(base.dimension(1));
        DType deviceDtype = base.dtype();
        long bytes = 2L * outputs * inputs;
        try (Arena temporary = Arena.ofConfined()) {
            MemorySegment source;
            if (base.dtype() == DType.F32) {
                float[] values = base.toFloatArray();
                boolean fitsF16 = true;
                for (float value : values) {
                    if (Math.abs(value) > F16_MAX) {
                        fitsF16 = false;
                        break;
                    }
                }
                deviceDtype = fitsF16 ? DType.F16 : DType.BF16;
                source = temporary.allocate(bytes, 64);
                for (int i = 0; i < values.length; i++) {
                    source.set(SHORT, 2L * i, fitsF16 ? Float.floatToFloat16(values[i]) : toBfloat16(values[i]));
                }
            } else if (base.data().isNative()) {
                source = base.data();
            } else {
                // Heap memory cannot be handed to a native call: copy it off the heap first.
                source = temporary.allocate(bytes, 64);
                MemorySegment.copy(base.data(), 0, source, 0, bytes);
            }
            DeviceBuffer buffer = scope.allocate(bytes, "weight " + base.name() + " [" + outputs + ", " + inputs + "] " + deviceDtype);
            int status = library.copyHostToDevice(buffer.address(), source, bytes);
            if (status != CudaLibrary.OK) {
                scope.release(buffer);
                throw library.failure(status, "uploading weight " + base);
            }
            DeviceWeight weight = new DeviceWeight(buffer, deviceDtype, outputs, inputs, base.dtype());
            weights.put(base, weight);
            return weight;
        }
    }

    private DeviceDelta deviceDelta(BinaryDelta delta) {
        DeviceDelta cached = deltas.get(delta);
        if (cached != null) {
            return cached;
        }
        long signsAddress = deviceSigns(delta);
        float[] scales = delta.scales();
        float[] perRow = new float[delta.rows()];
        // The kernels take one scale granularity for all tenants of a launch: per-matrix scales are expanded to rows.
        for (int row = 0; row < perRow.length; row++) {
            perRow[row] = scales.length == 1 ? scales[0] : scales[row];
        }
        DeviceBuffer buffer = scope.allocate(4L * perRow.length, "scales of " + delta.name());
        try (Arena temporary = Arena.ofConfined()) {
            MemorySegment host = temporary.allocate(4L * perRow.length, 16);
            MemorySegment.copy(perRow, 0, host, FLOAT, 0, perRow.length);
            library.check(library.copyHostToDevice(buffer.address(), host, 4L * perRow.length), "uploading scales of " + delta);
        } catch (RuntimeException e) {
            scope.release(buffer);
            throw e;
        }
        DeviceDelta uploaded = new DeviceDelta(signsAddress, buffer);
        deltas.put(delta, uploaded);
        return uploaded;
    }

    private long deviceSigns(BinaryDelta delta) {
        // Keyed by the signs' segment object: deltas that share their signs (withScales) share one upload.
        DeviceBuffer cached = signs.get(delta.signs());
        long deviceBytes = library.signsDeviceBytes(delta.rows(), delta.cols());
        if (cached != null && cached.bytes() == deviceBytes) {
            return cached.address();
        }
        long packedBytes = delta.signs().byteSize();
        DeviceBuffer packed = scope.allocate(packedBytes, "packed signs of " + delta.name());
        try {
            DeviceBuffer repacked = scope.allocate(deviceBytes, "signs of " + delta.name() + " [" + delta.rows() + ", " + delta.cols() + "]");
            try (Arena temporary = Arena.ofConfined()) {
                MemorySegment source = delta.signs();
                if (!source.isNative()) {
                    source = temporary.allocate(packedBytes, 64).copyFrom(delta.signs());
                }
                library.check(library.copyHostToDevice(packed.address(), source, packedBytes), "uploading signs of " + delta);
                library.check(library.repackSigns(packed.address(), repacked.address(), delta.rows(), delta.cols(), stream),
                        "bd_repack_signs(" + delta + ")");
                library.check(library.streamSynchronize(stream), "bd_repack_signs(" + delta + ")");
            } catch (RuntimeException e) {
                scope.release(repacked);
                throw e;
            }
            if (cached != null) {
                scope.release(cached); // the same signs read as another shape: replaced
            }
            signs.put(delta.signs(), repacked);
            return repacked.address();
        } finally {
            scope.release(packed);
        }
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("the CUDA backend is closed");
        }
    }
}
