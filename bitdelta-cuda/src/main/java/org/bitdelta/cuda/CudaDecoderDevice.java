package org.bitdelta.cuda;

import org.bitdelta.BinaryDelta;
import org.bitdelta.BitDeltaException;
import org.bitdelta.cuda.internal.CudaException;
import org.bitdelta.cuda.internal.CudaLibrary;
import org.bitdelta.cuda.internal.DeviceBuffer;
import org.bitdelta.cuda.internal.DeviceScope;
import org.bitdelta.cuda.internal.StepLibrary;
import org.bitdelta.spi.Activations;
import org.bitdelta.spi.DecoderDevice;
import org.bitdelta.spi.DecoderSpec;
import org.bitdelta.spi.MemoryUse;
import org.bitdelta.spi.Projection;
import org.bitdelta.spi.Sampling;
import org.bitdelta.spi.StepInputs;
import org.bitdelta.spi.TenantWeights;
import org.bitdelta.tensor.DType;
import org.bitdelta.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.ToLongFunction;

/**
 * The decoder step on the GPU: activations, the paged KV cache, scratch and every weight live in device memory, and
 * each operation of {@link DecoderDevice} is a kernel of bitdelta_step.h launched on this device's own stream.
 *
 * <p>Weights. The base's projections are uploaded at open in their dtype (F32, F16, BF16), q|k|v stacked into one
 * [q + k + v, hidden] matrix and gate|up into one [2 intermediate, hidden] matrix, so each is one product; norms and
 * the rotary tables as F32. A tenant ({@link #loadTenant}) is one device allocation: for each product group with a
 * delta, its sign matrices stacked the same way (device sign layout) with per-row F32 scales (a per-matrix scale
 * repeated, zeros for a member without delta), and its replaced embeddings, lm_head and norms. Per-slot pointer
 * tables (slot 0 the base) let every kernel find each row's tenant's tensors without the host.
 *
 * <p>Two paths (bitdelta_step.h, PRECISION and TENSOR-CORE PATH), chosen once per model at open:
 * <ul>
 * <li>the exact path, for every model whose projections are not all of one 16-bit dtype (F32 models: the tiny test
 * models): every operation in F32 from weights widened in registers, in the CPU decoder's operation order where it
 * has one, so greedy generations match the CPU's token for token;</li>
 * <li>the tensor-core path, for models whose projections are all F16 or all BF16 (inputs a multiple of 8 up to
 * 98304): activations and the residual stream stay F32; each projection input is split into 16-bit parts (the base
 * product on f16/bf16 tensor cores) and 24 bit-planes (the delta on the binary tensor cores), which keeps the
 * products within about F32 rounding of the exact ones while each weight and sign is read from memory once per
 * step (decode: a block takes 16 rows and two m16 tiles of W, which share the block's copy of x, and the blocks of
 * more rows on the same tiles share W through L2; prefill: once per GEMM tile); RMSNorm and SwiGLU write that split
 * form as they write their output; decode attention splits the positions
 * over blocks that serve all query heads of a KV head, prefill attention is flash-style; lm_head reads each tenant's
 * head once for all of its rows. The KV cache holds the model's dtype or F32 ({@link CudaBackend.KvCachePrecision}).</li>
 * </ul>
 *
 * <p>Steps. {@link #run} uploads the step's per-row values (tokens, slots, positions, KV slots, block tables, output
 * rows) in one copy; a decode step (one row per sequence) is captured as a CUDA graph per batch-size bucket (rows
 * rounded up to a power of two, the padding rows skipped by every kernel) and the operation sequence, keyed by what
 * the model code issues, replayed for later steps. Other steps launch eagerly. The host waits only in
 * {@link #read} and {@link #sample}.
 *
 * <p>Failures: arguments are checked before anything is launched; an allocation that does not fit throws a
 * {@link BitDeltaException} and leaves the device as it was; any other CUDA failure makes this device refuse further
 * work with the message of the first failure (the JVM never sees a bad pointer). Not thread-safe.
 */
public final class CudaDecoderDevice implements DecoderDevice {
    /** Steps with at most this many graphs kept instantiated (least recently used replaced). */
    static final int MAX_GRAPHS = 16;
    /** Pinned transfer buffer for uploads and host reads. */
    static final long TRANSFER_BYTES = 8L << 20;
    /** Rows sampled per bd_step_sample launch: its workspace is 16 bytes x rows x vocabulary (33 MB at 16 x 128K). */
    static final int SAMPLE_ROWS_PER_LAUNCH = 16;
    private static final int HEADER_INTS = 16;
    private static final int GROUPS = Projection.Group.values().length;

    private final CudaBackend backend;
    private final CudaLibrary cuda;
    private final StepLibrary step;
    private final int device;
    private final DecoderSpec spec;
    private final boolean graphsEnabled;
    private final long stream;
    private final DeviceScope scope;
    private MemorySegment transfer;
    private MemorySegment inputsHost;
    private MemorySegment sampleHost;
    private long uploadEvent;

    // Base weights: one allocation.
    private final DeviceBuffer baseBuffer;
    private final GroupWeight[][] groupWeights;
    private final long[] baseInputNorms;
    private final long[] basePostAttentionNorms;
    private final long baseEmbedding;
    private final int baseEmbeddingDtype;
    private final long baseLmHead;
    private final int baseLmHeadDtype;
    private final long baseFinalNorm;
    private final long rotaryCos;
    private final long rotarySin;

    // KV cache: one allocation, per layer keys then values, each kvDtype [blocks, kvHeads, blockSize, headDim].
    private final DeviceBuffer kvBuffer;
    private final long layerCacheBytes;
    private final int kvDtype;

    // The tensor-core path (16-bit models): the weights' dtype; one split form per width of a product's input (hidden,
    // query width, intermediate), holding the split of one activation at a time; attention and prefill workspaces. All
    // allocated at open: a step allocates nothing.
    private final boolean tensorCores;
    private final int weightDtype;
    private final boolean groupedLmHead;
    private final boolean flashPrefill;
    private final int decodeAttentionRows;
    private final DeviceBuffer attentionWorkspace;
    private final DeviceBuffer prefillWorkspace;
    private final Map<Integer, DeviceBuffer> splitForms = new HashMap<>();
    /** Width -> the activation whose values the split form of that width holds, within the present pass over a step. */
    private final Map<Integer, Integer> splitHolder = new HashMap<>();

    // Per-slot pointer tables (device) and their host mirror.
    private final TableLayout tables;
    private final DeviceBuffer tablesBuffer;
    private final long[] tablePointers;
    private final int[] tableDtypes;

    // Step inputs (device): header, per-row arrays of maxRows entries, block tables.
    private final InputLayout inputLayout;
    private final DeviceBuffer inputsBuffer;

    // Sampling: parameters and tokens, and the sort workspace.
    private final DeviceBuffer sampleParameters;
    private final DeviceBuffer sampleWorkspace;
    private final int sampleRowsPerLaunch;

    private final TenantSlot[] tenants;
    private final List<DeviceActivations> activations = new ArrayList<>();
    private final LinkedHashMap<GraphKey, Long> graphs = new LinkedHashMap<>(16, 0.75f, true);

    private Mode mode = Mode.IDLE;
    private StepInputs current;
    private int launchRows;
    private int launchOutputRows;
    /** This step's products run the decode kernel (planes in the split forms) rather than the prefill GEMMs. */
    private boolean decodeProducts;
    /** Decode products of this pass read F32 activations directly (bd_step_project_vector): no split forms. */
    private boolean vectorProducts;
    private int segmentCount;
    private int tileCount;
    private List<Op> issued;
    private String failure;
    private boolean closed;

    private enum Mode { IDLE, EAGER, RECORD, CAPTURE }

    /** One operation as issued by the model code: what a captured graph replays. */
    private record Op(int code, int layer, int first, int second, int third, boolean flag) {
    }

    private record GraphKey(int bucket, List<Op> operations) {
    }

    /** A stacked product weight of one layer: device address, dtype code, [outputs, inputs]. */
    private record GroupWeight(long address, int dtype, int outputs, int inputs) {
    }

    /** Activations: F32 [rows, columns] row-major in device memory. */
    record DeviceActivations(CudaDecoderDevice owner, int id, String name, int rows, int columns, DeviceBuffer buffer)
            implements Activations {
        long address() {
            return buffer.address();
        }
    }

    /** A loaded tenant: its one allocation. */
    private record TenantSlot(String name, DeviceBuffer buffer) {
    }

    /** Rows of a decode step up to which attention runs the split decode kernel (its workspace is sized for them). */
    static final int DECODE_ATTENTION_ROWS = 256;
    /** Eager steps of at most this many rows run the decode products; longer runs of one tenant run the prefill GEMMs. */
    static final int DECODE_PRODUCT_ROWS = 16;
    /** Rows per prefill attention tile (bd_step_attention_prefill). */
    static final int ATTENTION_TILE_ROWS = 32;

    CudaDecoderDevice(CudaBackend backend, DecoderSpec spec, boolean graphsEnabled) {
        this(backend, spec, graphsEnabled, backend.kvCachePrecision());
    }

    CudaDecoderDevice(CudaBackend backend, DecoderSpec spec, boolean graphsEnabled, CudaBackend.KvCachePrecision kvCache) {
        this.backend = backend;
        this.cuda = backend.library();
        this.step = StepLibrary.load(cuda);
        this.device = backend.deviceIndex();
        this.spec = spec;
        this.graphsEnabled = graphsEnabled;
        checkSpec(spec);
        this.weightDtype = tensorCoreDtype(spec);
        this.tensorCores = weightDtype >= 0;
        this.kvDtype = tensorCores && kvCache == CudaBackend.KvCachePrecision.MODEL ? weightDtype : CudaLibrary.DTYPE_F32;
        this.groupedLmHead = tensorCores && spec.hiddenSize() % 8 == 0;
        this.decodeAttentionRows = Math.min(spec.maxRows(), DECODE_ATTENTION_ROWS);
        cuda.selectDevice(device);
        step.check(step.prepare(), "preparing the decoder-step kernels on " + backend.deviceName());
        step.check(step.setProgrammaticDependentLaunch(programmaticDependentLaunchRequested()), "setting programmatic dependent launch");
        this.flashPrefill = tensorCores && step.attentionPrefillFits(spec.headDimension());
        this.stream = cuda.streamCreate();
        this.scope = new DeviceScope(cuda);
        int layers = spec.layerCount();
        int slots = spec.tenantSlots();
        try {
            this.transfer = cuda.hostAlloc(TRANSFER_BYTES);
            this.uploadEvent = step.eventCreate();

            // ---- base weights ----
            Planner plan = new Planner();
            long[][] groupOffsets = new long[layers][GROUPS];
            int[][] groupDtypes = new int[layers][GROUPS];
            long[] inputNormOffsets = new long[layers];
            long[] postNormOffsets = new long[layers];
            for (int layer = 0; layer < layers; layer++) {
                DecoderSpec.LayerWeights weights = spec.layers().get(layer);
                for (Projection.Group group : Projection.Group.values()) {
                    DType dtype = commonDtype(weights, group);
                    groupDtypes[layer][group.ordinal()] = dtypeCode(dtype);
                    groupOffsets[layer][group.ordinal()] = plan.add((long) spec.width(group) * inputsOf(group) * dtype.byteSize());
                }
                inputNormOffsets[layer] = plan.add(4L * spec.hiddenSize());
                postNormOffsets[layer] = plan.add(4L * spec.hiddenSize());
            }
            long embeddingOffset = plan.add(spec.embedding().byteSize());
            boolean tied = spec.lmHead() == spec.embedding();
            long lmHeadOffset = tied ? embeddingOffset : plan.add(spec.lmHead().byteSize());
            long finalNormOffset = plan.add(4L * spec.hiddenSize());
            long cosOffset = plan.add(4L * spec.rotaryCos().length);
            long sinOffset = plan.add(4L * spec.rotarySin().length);
            this.baseBuffer = allocateOrExplain(plan.size, "the base model's weights");
            long base = baseBuffer.address();
            this.groupWeights = new GroupWeight[layers][GROUPS];
            this.baseInputNorms = new long[layers];
            this.basePostAttentionNorms = new long[layers];
            for (int layer = 0; layer < layers; layer++) {
                DecoderSpec.LayerWeights weights = spec.layers().get(layer);
                for (Projection.Group group : Projection.Group.values()) {
                    int g = group.ordinal();
                    long address = base + groupOffsets[layer][g];
                    uploadStacked(weights, group, address, groupDtypes[layer][g]);
                    groupWeights[layer][g] = new GroupWeight(address, groupDtypes[layer][g], spec.width(group), inputsOf(group));
                }
                baseInputNorms[layer] = base + inputNormOffsets[layer];
                basePostAttentionNorms[layer] = base + postNormOffsets[layer];
                uploadAsFloats(weights.inputNorm(), baseInputNorms[layer]);
                uploadAsFloats(weights.postAttentionNorm(), basePostAttentionNorms[layer]);
            }
            this.baseEmbedding = base + embeddingOffset;
            this.baseEmbeddingDtype = dtypeCode(spec.embedding().dtype());
            uploadBytes(spec.embedding().data(), baseEmbedding, "embedding " + spec.embedding());
            this.baseLmHead = base + lmHeadOffset;
            this.baseLmHeadDtype = dtypeCode(spec.lmHead().dtype());
            if (!tied) {
                uploadBytes(spec.lmHead().data(), baseLmHead, "lm_head " + spec.lmHead());
            }
            this.baseFinalNorm = base + finalNormOffset;
            uploadAsFloats(spec.finalNorm(), baseFinalNorm);
            this.rotaryCos = base + cosOffset;
            this.rotarySin = base + sinOffset;
            uploadFloats(spec.rotaryCos(), rotaryCos);
            uploadFloats(spec.rotarySin(), rotarySin);

            // ---- KV cache ----
            this.layerCacheBytes = (long) bytesOf(kvDtype) * spec.kvBlocks() * spec.keyValueHeadCount() * spec.kvBlockSize()
                    * spec.headDimension();
            this.kvBuffer = allocateOrExplain(2L * layers * layerCacheBytes, "the KV cache (" + spec.kvBlocks() + " blocks of "
                    + spec.kvBlockSize() + " tokens, " + layers + " layers, " + dtypeName(kvDtype) + " keys and values)");
            // Never read before written by a step, but zeroed so that a bug reads zeros rather than old data.
            cuda.check(cuda.memset(kvBuffer.address(), 0, kvBuffer.bytes(), stream), "clearing the KV cache");

            // ---- tenant tables: slot 0 (and every empty slot) points at the base ----
            this.tables = new TableLayout(layers, slots);
            this.tablesBuffer = allocateOrExplain(tables.bytes(), "the tenant slot tables");
            this.tablePointers = new long[tables.pointerCount()];
            this.tableDtypes = new int[tables.dtypeCount()];
            this.tenants = new TenantSlot[slots];
            for (int slot = 0; slot < slots; slot++) {
                resetSlot(slot);
            }
            uploadTables();

            // ---- step inputs ----
            this.inputLayout = new InputLayout(spec.maxRows(), tableWidth(spec));
            this.inputsBuffer = allocateOrExplain(inputLayout.bytes(), "the step inputs");
            this.inputsHost = cuda.hostAlloc(inputLayout.bytes());

            // ---- sampling ----
            this.sampleRowsPerLaunch = (int) Math.max(1, Math.min(Math.min(SAMPLE_ROWS_PER_LAUNCH, spec.maxRows()),
                    (Integer.MAX_VALUE - 1L) / spec.vocabularySize()));
            this.sampleParameters = allocateOrExplain(Sample.bytes(spec.maxRows()), "the sampling parameters");
            this.sampleHost = cuda.hostAlloc(Sample.bytes(spec.maxRows()));
            long workspaceBytes = step.sampleWorkspaceBytes(sampleRowsPerLaunch, spec.vocabularySize());
            if (workspaceBytes <= 0) {
                throw new BitDeltaException("bd_step_sample_workspace_bytes(" + sampleRowsPerLaunch + ", " + spec.vocabularySize()
                        + ") gave no size: " + step.lastError());
            }
            this.sampleWorkspace = allocateOrExplain(workspaceBytes, "the sampling workspace");
            this.attentionWorkspace = tensorCores ? allocateOrExplain(step.attentionWorkspaceBytes(decodeAttentionRows, spec.headCount(),
                    spec.headDimension()), "the attention workspace") : null;
            this.prefillWorkspace = tensorCores ? allocateOrExplain(step.projectPrefillWorkspaceBytes(spec.maxRows(), spec.maxRows(),
                    maxProductOutputs()), "the prefill product workspace") : null;
            if (tensorCores) {
                for (int width : new int[]{spec.hiddenSize(), spec.queryWidth(), spec.intermediateSize()}) {
                    if (!splitForms.containsKey(width)) {
                        long bytes = step.splitBytes(spec.maxRows(), width, weightDtype);
                        if (bytes <= 0) {
                            throw new BitDeltaException("bd_step_split_bytes(" + spec.maxRows() + ", " + width + ") gave no size: "
                                    + step.lastError());
                        }
                        splitForms.put(width, allocateOrExplain(bytes, "the split form of products' inputs [" + spec.maxRows() + ", "
                                + width + "]"));
                    }
                }
            }
            cuda.check(cuda.streamSynchronize(stream), "opening the CUDA decoder");
        } catch (RuntimeException e) {
            release(e);
            throw e;
        }
    }

    // ---------------------------------------------------------------- spec checks and layouts

    private static void checkSpec(DecoderSpec spec) {
        if (spec.headDimension() > 512) {
            throw new BitDeltaException("the CUDA decoder supports head dimensions up to 512, this model has " + spec.headDimension());
        }
        if ((long) spec.maxRows() * Math.max(spec.width(Projection.Group.GATE_UP), spec.vocabularySize()) > Integer.MAX_VALUE) {
            throw new BitDeltaException("maxRows " + spec.maxRows() + " x the widest activation is more than 2^31 elements; use fewer rows per step");
        }
        for (int layer = 0; layer < spec.layerCount(); layer++) {
            for (Projection projection : Projection.values()) {
                DType dtype = spec.layers().get(layer).weight(projection).dtype();
                if (dtype != DType.F32 && dtype != DType.F16 && dtype != DType.BF16) {
                    throw new BitDeltaException(projection.weightName(layer) + " is " + dtype + "; the CUDA decoder takes F32, F16 and BF16 weights");
                }
            }
        }
    }

    /**
     * The weights' dtype code when the model takes the tensor-core path: every projection F16, or every one BF16, and
     * every product's input width a multiple of 8 up to 98304; else -1 (the exact path).
     */
    static int tensorCoreDtype(DecoderSpec spec) {
        DType common = null;
        for (DecoderSpec.LayerWeights layer : spec.layers()) {
            for (Projection projection : Projection.values()) {
                DType dtype = layer.weight(projection).dtype();
                if (dtype != DType.F16 && dtype != DType.BF16 || (common != null && dtype != common)) {
                    return -1;
                }
                common = dtype;
            }
        }
        for (int width : new int[]{spec.hiddenSize(), spec.queryWidth(), spec.intermediateSize()}) {
            if (width % 8 != 0 || width > TENSOR_CORE_MAX_INPUTS) {
                return -1;
            }
        }
        return common == null ? -1 : dtypeCode(common);
    }

    /** BD_STEP_TC_MAX_K of bitdelta_step.h. */
    static final int TENSOR_CORE_MAX_INPUTS = 98304;

    private static int bytesOf(int dtypeCode) {
        return dtypeCode == CudaLibrary.DTYPE_F32 ? 4 : 2;
    }

    private static String dtypeName(int dtypeCode) {
        return switch (dtypeCode) {
            case CudaLibrary.DTYPE_F32 -> "F32";
            case CudaLibrary.DTYPE_F16 -> "F16";
            default -> "BF16";
        };
    }

    /** Whether this device runs the tensor-core path (for tests and benchmarks). */
    boolean tensorCores() {
        return tensorCores;
    }

    /** The KV cache's dtype name (for tests and benchmarks). */
    String kvCacheDtype() {
        return dtypeName(kvDtype);
    }

    /** The most blocks a sequence's table holds: its context in blocks, at most the whole cache. */
    private static int tableWidth(DecoderSpec spec) {
        return (int) Math.min(spec.kvBlocks(), ((long) spec.contextLength() + spec.kvBlockSize() - 1) / spec.kvBlockSize());
    }

    private int inputsOf(Projection.Group group) {
        return switch (group) {
            case QKV, GATE_UP -> spec.hiddenSize();
            case ATTENTION_OUTPUT -> spec.queryWidth();
            case FEED_FORWARD_OUTPUT -> spec.intermediateSize();
        };
    }

    /** The members' dtype where they share one, else F32 (the stacked matrix has one dtype). */
    private static DType commonDtype(DecoderSpec.LayerWeights weights, Projection.Group group) {
        DType dtype = null;
        for (Projection member : group.members()) {
            DType each = weights.weight(member).dtype();
            if (dtype == null) {
                dtype = each;
            } else if (dtype != each) {
                return DType.F32;
            }
        }
        return dtype;
    }

    static int dtypeCode(DType dtype) {
        return switch (dtype) {
            case F32 -> CudaLibrary.DTYPE_F32;
            case F16 -> CudaLibrary.DTYPE_F16;
            case BF16 -> CudaLibrary.DTYPE_BF16;
            default -> throw new BitDeltaException("the CUDA decoder takes F32, F16 and BF16 tensors, not " + dtype);
        };
    }

    /** Offsets of sub-allocations in one device allocation, each 256-byte aligned. */
    private static final class Planner {
        long size;

        long add(long bytes) {
            long at = (size + 255) / 256 * 256;
            size = at + bytes;
            return at;
        }
    }

    /**
     * The slot tables, in one allocation: pointers (int64) [embedding | lm_head | final norm] [slots], input norm and
     * post-attention norm [layers][slots], signs and scales [layers][groups][slots]; then dtype codes (int32) of the
     * embedding and lm_head [slots], at the indices of their pointers ({@link #embedding}, {@link #lmHead}).
     */
    private record TableLayout(int layers, int slots) {
        int embedding() {
            return 0;
        }

        int lmHead() {
            return slots;
        }

        int finalNorm() {
            return 2 * slots;
        }

        int inputNorm(int layer) {
            return 3 * slots + layer * slots;
        }

        int postAttentionNorm(int layer) {
            return 3 * slots + layers * slots + layer * slots;
        }

        int signs(int layer, int group) {
            return 3 * slots + 2 * layers * slots + (layer * GROUPS + group) * slots;
        }

        int scales(int layer, int group) {
            return 3 * slots + 2 * layers * slots + layers * GROUPS * slots + (layer * GROUPS + group) * slots;
        }

        int pointerCount() {
            return 3 * slots + 2 * layers * slots + 2 * layers * GROUPS * slots;
        }

        int dtypeCount() {
            return 2 * slots;  // the embedding's and lm_head's
        }

        long dtypeOffset() {
            return 8L * pointerCount();
        }

        long bytes() {
            return dtypeOffset() + 4L * dtypeCount();
        }
    }

    /**
     * The step-input arrays (I32) after the header ints, in their order in the buffer: six per-row arrays [capacity];
     * the runs of rows of one slot (segments: offsets [capacity + 1], slots); the attention tiles (first row and rows
     * of each tile of up to 32 consecutive rows of one sequence); the output rows ordered by slot (rows, offsets
     * [capacity + 1], slots); the block tables [capacity, tableWidth].
     */
    private enum Input {
        TOKENS, SLOTS, POSITIONS, SEQUENCE_OF_ROW, CACHE_SLOTS, OUTPUT_ROW_INDEX,
        SEGMENT_OFFSETS, SEGMENT_SLOTS, TILE_FIRST, TILE_ROWS, GROUP_ROWS, GROUP_OFFSETS, GROUP_SLOTS,
        BLOCK_TABLES
    }

    /**
     * Step inputs: header ints (rows, outputRows, sequences, blocksPerSequence, lm_head groups), then the {@link Input}s;
     * their offsets computed once (uploadInputs looks them up per row).
     */
    private static final class InputLayout {
        static final int ROWS = 0;
        static final int OUTPUT_ROWS = 1;
        static final int SEQUENCES = 2;
        static final int BLOCKS_PER_SEQUENCE = 3;
        static final int LM_HEAD_GROUPS = 4;
        private final int capacity;
        private final int tableWidth;
        private final long[] offsets = new long[Input.values().length];

        InputLayout(int capacity, int tableWidth) {
            this.capacity = capacity;
            this.tableWidth = tableWidth;
            for (Input array : Input.values()) {
                offsets[array.ordinal()] = packedOffset(4L * HEADER_INTS, array, before -> 4L * entries(before));
            }
        }

        int tableWidth() {
            return tableWidth;
        }

        long header(int field) {
            return 4L * field;
        }

        long entries(Input array) {
            return switch (array) {
                case SEGMENT_OFFSETS, GROUP_OFFSETS -> capacity + 1;
                case BLOCK_TABLES -> (long) capacity * tableWidth;
                default -> capacity;
            };
        }

        long offset(Input array) {
            return offsets[array.ordinal()];
        }

        long bytes() {
            return offset(Input.BLOCK_TABLES) + 4L * entries(Input.BLOCK_TABLES);
        }
    }

    /** The sampling parameters and the sampled tokens of up to {@code capacity} rows, one array after another. */
    private enum Sample {
        SEED(8), TEMPERATURE(4), TOP_K(4), TOP_P(4), DRAW(4), TOKENS(4);

        final int bytesPerRow;

        Sample(int bytesPerRow) {
            this.bytesPerRow = bytesPerRow;
        }

        long offset(int capacity) {
            return packedOffset(0, this, before -> (long) before.bytesPerRow * capacity);
        }

        /** The address of row {@code row}'s entry in a buffer at {@code base}. */
        long row(long base, int capacity, int row) {
            return base + offset(capacity) + (long) bytesPerRow * row;
        }

        static long bytes(int capacity) {
            return TOKENS.offset(capacity) + (long) TOKENS.bytesPerRow * capacity;
        }
    }

    /** Byte offset of {@code array} among its enum's arrays stored in declaration order from {@code start}. */
    private static <E extends Enum<E>> long packedOffset(long start, E array, ToLongFunction<E> bytes) {
        long offset = start;
        for (E before : array.getDeclaringClass().getEnumConstants()) {
            if (before == array) {
                break;
            }
            offset += bytes.applyAsLong(before);
        }
        return offset;
    }

    // ---------------------------------------------------------------- uploads

    private DeviceBuffer allocateOrExplain(long bytes, String purpose) {
        try {
            return scope.allocate(bytes, purpose);
        } catch (CudaException e) {
            throw new CudaException(purpose + " (" + bytes + " bytes) does not fit on " + backend.deviceName() + ": " + freeMemoryText()
                    + "; " + e.getMessage(), e.status());
        }
    }

    private String freeMemoryText() {
        try {
            long[] info = cuda.memoryInfo();
            return info[0] + " of " + info[1] + " bytes are free";
        } catch (CudaException e) {
            return "free memory unknown (" + e.getMessage() + ")";
        }
    }

    /** Copies {@code source} to the device through the pinned transfer buffer, in stream order (waits for the copies). */
    private void uploadBytes(MemorySegment source, long deviceAddress, String what) {
        long bytes = source.byteSize();
        for (long done = 0; done < bytes; ) {
            long count = Math.min(TRANSFER_BYTES, bytes - done);
            MemorySegment.copy(source, done, transfer, 0, count);
            cuda.check(cuda.copyHostToDeviceAsync(deviceAddress + done, transfer, count, stream), "uploading " + what);
            cuda.check(cuda.streamSynchronize(stream), "uploading " + what);
            done += count;
        }
    }

    private void uploadFloats(float[] values, long deviceAddress) {
        uploadBytes(MemorySegment.ofArray(values), deviceAddress, values.length + " floats");
    }

    /** Uploads a tensor as F32 (widening F16/BF16), chunk by chunk. */
    private void uploadAsFloats(Tensor tensor, long deviceAddress) {
        if (tensor.dtype() == DType.F32) {
            uploadBytes(tensor.data(), deviceAddress, tensor.toString());
            return;
        }
        long count = tensor.elementCount();
        long perChunk = TRANSFER_BYTES / 4;
        for (long start = 0; start < count; start += perChunk) {
            long n = Math.min(perChunk, count - start);
            for (long i = 0; i < n; i++) {
                transfer.set(ValueLayout.JAVA_FLOAT, 4 * i, tensor.getFloat(start + i));
            }
            cuda.check(cuda.copyHostToDeviceAsync(deviceAddress + 4 * start, transfer, 4 * n, stream), "uploading " + tensor + " as F32");
            cuda.check(cuda.streamSynchronize(stream), "uploading " + tensor + " as F32");
        }
    }

    /** The members of {@code group} one after another along the outputs, in dtype {@code dtypeCode}. */
    private void uploadStacked(DecoderSpec.LayerWeights weights, Projection.Group group, long address, int dtypeCode) {
        long offset = 0;
        for (Projection member : group.members()) {
            Tensor tensor = weights.weight(member);
            if (dtypeCode(tensor.dtype()) == dtypeCode) {
                uploadBytes(tensor.data(), address + offset, tensor.toString());
                offset += tensor.byteSize();
            } else {
                uploadAsFloats(tensor, address + offset);
                offset += 4 * tensor.elementCount();
            }
        }
    }

    private void uploadTables() {
        MemorySegment host = MemorySegment.ofArray(new byte[(int) tables.bytes()]);
        MemorySegment.copy(tablePointers, 0, host, ValueLayout.JAVA_LONG_UNALIGNED, 0, tablePointers.length);
        MemorySegment.copy(tableDtypes, 0, host, ValueLayout.JAVA_INT_UNALIGNED, tables.dtypeOffset(), tableDtypes.length);
        uploadBytes(host, tablesBuffer.address(), "the tenant slot tables");
    }

    /** Slot {@code slot}'s table entries: the base's tensors, no deltas. */
    private void resetSlot(int slot) {
        tablePointers[tables.embedding() + slot] = baseEmbedding;
        tablePointers[tables.lmHead() + slot] = baseLmHead;
        tablePointers[tables.finalNorm() + slot] = baseFinalNorm;
        tableDtypes[tables.embedding() + slot] = baseEmbeddingDtype;
        tableDtypes[tables.lmHead() + slot] = baseLmHeadDtype;
        for (int layer = 0; layer < spec.layerCount(); layer++) {
            tablePointers[tables.inputNorm(layer) + slot] = baseInputNorms[layer];
            tablePointers[tables.postAttentionNorm(layer) + slot] = basePostAttentionNorms[layer];
            for (int group = 0; group < GROUPS; group++) {
                tablePointers[tables.signs(layer, group) + slot] = 0;
                tablePointers[tables.scales(layer, group) + slot] = 0;
            }
        }
    }

    // ---------------------------------------------------------------- DecoderDevice: state

    @Override
    public DecoderSpec spec() {
        return spec;
    }

    @Override
    public MemoryUse memory() {
        ensureUsable();
        cuda.selectDevice(device);
        Map<Integer, Long> tenantBytes = new HashMap<>();
        long tenantTotal = 0;
        for (int slot = 1; slot < tenants.length; slot++) {
            if (tenants[slot] != null) {
                tenantBytes.put(slot, tenants[slot].buffer().bytes());
                tenantTotal += tenants[slot].buffer().bytes();
            }
        }
        long workspace = scope.liveBytes() - baseBuffer.bytes() - kvBuffer.bytes() - tenantTotal;
        long[] info = cuda.memoryInfo();
        return new MemoryUse(baseBuffer.bytes(), tenantBytes, kvBuffer.bytes(), workspace, info[1], info[0]);
    }

    @Override
    public long loadTenant(int slot, TenantWeights weights) {
        ensureUsable();
        requireIdle("loadTenant");
        if (slot < 1 || slot >= tenants.length || tenants[slot] != null) {
            throw new IllegalArgumentException("slot " + slot + " is not an empty tenant slot (1 .. " + (tenants.length - 1) + ")");
        }
        cuda.selectDevice(device);
        int layers = spec.layerCount();
        checkTenant(weights);
        // Plan the tenant's one allocation.
        Planner plan = new Planner();
        long[][] signsOffset = new long[layers][GROUPS];
        long[][] scalesOffset = new long[layers][GROUPS];
        long stagingBytes = 0;
        for (int layer = 0; layer < layers; layer++) {
            for (Projection.Group group : Projection.Group.values()) {
                int g = group.ordinal();
                signsOffset[layer][g] = -1;
                if (hasDelta(weights, layer, group)) {
                    long rows = spec.width(group);
                    long columns = inputsOf(group);
                    signsOffset[layer][g] = plan.add(cuda.signsDeviceBytes(rows, columns));
                    scalesOffset[layer][g] = plan.add(4L * rows);
                    stagingBytes = Math.max(stagingBytes, rows * ((columns + 7) / 8));
                }
            }
        }
        long embeddingOffset = weights.embedding() != null ? plan.add(weights.embedding().byteSize()) : -1;
        boolean sharedHead = weights.lmHead() != null && weights.lmHead() == weights.embedding();
        long lmHeadOffset = weights.lmHead() == null ? -1 : sharedHead ? embeddingOffset : plan.add(weights.lmHead().byteSize());
        long finalNormOffset = weights.finalNorm() != null ? plan.add(4L * spec.hiddenSize()) : -1;
        long[] inputNormOffset = new long[layers];
        long[] postNormOffset = new long[layers];
        for (int layer = 0; layer < layers; layer++) {
            inputNormOffset[layer] = weights.inputNorms()[layer] != null ? plan.add(4L * spec.hiddenSize()) : -1;
            postNormOffset[layer] = weights.postAttentionNorms()[layer] != null ? plan.add(4L * spec.hiddenSize()) : -1;
        }
        String what = "tenant '" + weights.name() + "'";
        DeviceBuffer buffer;
        try {
            buffer = scope.allocate(Math.max(1, plan.size), what + " (slot " + slot + ")");
        } catch (CudaException e) {
            throw new CudaException(what + " does not fit on " + backend.deviceName() + ": it needs " + plan.size + " bytes, "
                    + freeMemoryText() + " (" + e.getMessage() + ")", e.status());
        }
        DeviceBuffer staging = null;
        try {
            if (stagingBytes > 0) {
                try {
                    staging = scope.allocate(stagingBytes, "packed signs of " + what + " before repacking");
                } catch (CudaException e) {
                    throw new CudaException(what + " does not fit on " + backend.deviceName() + ": repacking its signs needs "
                            + stagingBytes + " more bytes beside its " + plan.size + ", " + freeMemoryText() + " (" + e.getMessage()
                            + ")", e.status());
                }
            }
            long base = buffer.address();
            long[] pointers = tablePointers.clone();
            int[] dtypes = tableDtypes.clone();
            for (int layer = 0; layer < layers; layer++) {
                for (Projection.Group group : Projection.Group.values()) {
                    int g = group.ordinal();
                    if (signsOffset[layer][g] < 0) {
                        continue;
                    }
                    uploadDeltaGroup(weights, layer, group, staging, base + signsOffset[layer][g], base + scalesOffset[layer][g]);
                    pointers[tables.signs(layer, g) + slot] = base + signsOffset[layer][g];
                    pointers[tables.scales(layer, g) + slot] = base + scalesOffset[layer][g];
                }
                if (inputNormOffset[layer] >= 0) {
                    uploadAsFloats(weights.inputNorms()[layer], base + inputNormOffset[layer]);
                    pointers[tables.inputNorm(layer) + slot] = base + inputNormOffset[layer];
                }
                if (postNormOffset[layer] >= 0) {
                    uploadAsFloats(weights.postAttentionNorms()[layer], base + postNormOffset[layer]);
                    pointers[tables.postAttentionNorm(layer) + slot] = base + postNormOffset[layer];
                }
            }
            if (embeddingOffset >= 0) {
                uploadBytes(weights.embedding().data(), base + embeddingOffset, what + "'s embedding");
                pointers[tables.embedding() + slot] = base + embeddingOffset;
                dtypes[tables.embedding() + slot] = dtypeCode(weights.embedding().dtype());
            }
            if (lmHeadOffset >= 0) {
                if (!sharedHead) {
                    uploadBytes(weights.lmHead().data(), base + lmHeadOffset, what + "'s lm_head");
                }
                pointers[tables.lmHead() + slot] = base + lmHeadOffset;
                dtypes[tables.lmHead() + slot] = dtypeCode(weights.lmHead().dtype());
            }
            if (finalNormOffset >= 0) {
                uploadAsFloats(weights.finalNorm(), base + finalNormOffset);
                pointers[tables.finalNorm() + slot] = base + finalNormOffset;
            }
            System.arraycopy(pointers, 0, tablePointers, 0, pointers.length);
            System.arraycopy(dtypes, 0, tableDtypes, 0, dtypes.length);
            uploadTables();
        } catch (RuntimeException e) {
            resetSlot(slot);
            try {
                scope.release(buffer);
            } catch (RuntimeException suppressed) {
                e.addSuppressed(suppressed);
            }
            if (!isOutOfMemory(e)) {
                markFailed(e);
            }
            throw e;
        } finally {
            if (staging != null) {
                scope.release(staging);
            }
        }
        tenants[slot] = new TenantSlot(weights.name(), buffer);
        return buffer.bytes();
    }

    private static boolean isOutOfMemory(RuntimeException e) {
        return e instanceof CudaException cuda && cuda.getMessage().contains("does not fit on");
    }

    private boolean hasDelta(TenantWeights weights, int layer, Projection.Group group) {
        for (Projection member : group.members()) {
            if (weights.delta(layer, member) != null) {
                return true;
            }
        }
        return false;
    }

    private void checkTenant(TenantWeights weights) {
        if (weights.deltas().length != spec.layerCount()) {
            throw new IllegalArgumentException("tenant '" + weights.name() + "' has " + weights.deltas().length + " layers, the model "
                    + spec.layerCount());
        }
        for (int layer = 0; layer < spec.layerCount(); layer++) {
            for (Projection projection : Projection.values()) {
                BinaryDelta delta = weights.delta(layer, projection);
                Tensor weight = spec.layers().get(layer).weight(projection);
                if (delta != null && (delta.rows() != weight.dimension(0) || delta.cols() != weight.dimension(1))) {
                    throw new IllegalArgumentException("tenant '" + weights.name() + "': delta " + delta.name() + " is " + delta.rows()
                            + "x" + delta.cols() + ", the base weight " + weight);
                }
            }
        }
        checkVector(weights, weights.finalNorm(), spec.hiddenSize());
        for (int layer = 0; layer < spec.layerCount(); layer++) {
            checkVector(weights, weights.inputNorms()[layer], spec.hiddenSize());
            checkVector(weights, weights.postAttentionNorms()[layer], spec.hiddenSize());
        }
        for (Tensor table : new Tensor[]{weights.embedding(), weights.lmHead()}) {
            if (table != null) {
                dtypeCode(table.dtype());
                if (table.rank() != 2 || table.dimension(0) != spec.vocabularySize() || table.dimension(1) != spec.hiddenSize()) {
                    throw new IllegalArgumentException("tenant '" + weights.name() + "': " + table + " is not [" + spec.vocabularySize()
                            + ", " + spec.hiddenSize() + "]");
                }
            }
        }
    }

    private static void checkVector(TenantWeights weights, Tensor tensor, int length) {
        if (tensor != null && tensor.elementCount() != length) {
            throw new IllegalArgumentException("tenant '" + weights.name() + "': " + tensor + " is not [" + length + "]");
        }
        if (tensor != null) {
            dtypeCode(tensor.dtype());
        }
    }

    /**
     * One group's stacked signs and per-row scales: the members' packed signs copied into their rows of a zeroed
     * packed matrix, repacked into the device layout; scales per row, 0 for a member without delta.
     */
    private void uploadDeltaGroup(TenantWeights weights, int layer, Projection.Group group, DeviceBuffer staging, long signs,
                                  long scales) {
        int rows = spec.width(group);
        int columns = inputsOf(group);
        long rowBytes = (columns + 7) / 8;
        String what = "tenant '" + weights.name() + "' layer " + layer + " " + group;
        cuda.check(cuda.memset(staging.address(), 0, rows * rowBytes, stream), "clearing the packed signs of " + what);
        float[] rowScales = new float[rows];
        int row = 0;
        for (Projection member : group.members()) {
            Tensor weight = spec.layers().get(layer).weight(member);
            int memberRows = Math.toIntExact(weight.dimension(0));
            BinaryDelta delta = weights.delta(layer, member);
            if (delta != null) {
                uploadBytes(delta.signs(), staging.address() + row * rowBytes, "signs of " + delta);
                for (int m = 0; m < memberRows; m++) {
                    rowScales[row + m] = delta.scale(m);
                }
            }
            row += memberRows;
        }
        cuda.check(cuda.repackSigns(staging.address(), signs, rows, columns, stream), "bd_repack_signs of " + what + " [" + rows + ", "
                + columns + "]");
        uploadFloats(rowScales, scales);
    }

    @Override
    public void unloadTenant(int slot) {
        ensureUsable();
        requireIdle("unloadTenant");
        if (slot < 1 || slot >= tenants.length || tenants[slot] == null) {
            throw new IllegalArgumentException("slot " + slot + " holds no tenant");
        }
        cuda.selectDevice(device);
        try {
            resetSlot(slot);
            uploadTables(); // in stream order: steps enqueued before still read the old entries, later ones the base's
            cuda.check(cuda.streamSynchronize(stream), "waiting for the steps of tenant '" + tenants[slot].name() + "' to finish");
            scope.release(tenants[slot].buffer());
            tenants[slot] = null;
        } catch (RuntimeException e) {
            markFailed(e);
            throw e;
        }
    }

    @Override
    public Activations allocate(String name, int rows, int columns) {
        ensureUsable();
        requireIdle("allocate");
        if (rows < 1 || rows > spec.maxRows() || columns < 1) {
            throw new IllegalArgumentException(name + ": [" + rows + ", " + columns + "] (rows at most " + spec.maxRows() + ")");
        }
        cuda.selectDevice(device);
        // Graphs replay fixed row counts up to the bucket: every buffer holds maxRows rows whatever it was asked for.
        DeviceBuffer buffer = allocateOrExplain(4L * spec.maxRows() * columns, "activations '" + name + "' [" + rows + ", " + columns + "]");
        DeviceActivations activation = new DeviceActivations(this, activations.size(), name, rows, columns, buffer);
        activations.add(activation);
        return activation;
    }

    // ---------------------------------------------------------------- steps

    @Override
    public void run(StepInputs inputs, Runnable operations) {
        ensureUsable();
        requireIdle("run");
        cuda.selectDevice(device);
        validate(inputs);
        boolean captured = graphsEnabled && inputs.isDecode();
        int bucket = captured ? bucketFor(inputs.rows()) : inputs.rows();
        try {
            uploadInputs(inputs);
            current = inputs;
            decodeProducts = inputs.isDecode() || inputs.rows() <= DECODE_PRODUCT_ROWS
                    || (long) segmentCount * DECODE_PRODUCT_ROWS > inputs.rows();
            if (!captured) {
                begin(Mode.EAGER, inputs.rows(), inputs.outputRows());
                operations.run();
            } else {
                begin(Mode.RECORD, bucket, bucket);
                operations.run();
                GraphKey key = new GraphKey(bucket, List.copyOf(issued));
                Long graph = graphs.get(key);
                if (graph == null) {
                    graph = capture(key, operations);
                }
                step.check(step.graphLaunch(graph, stream), "replaying the step graph of bucket " + bucket + " (" + inputs.rows() + " rows)");
            }
        } catch (CudaException e) {
            markFailed(e);
            throw e;
        } finally {
            mode = Mode.IDLE;
            issued = null;
        }
    }

    private void begin(Mode newMode, int rows, int outputRows) {
        mode = newMode;
        launchRows = rows;
        launchOutputRows = outputRows;
        // One or two rows: each product is bound by reading W, which the vector kernel streams without the split form's
        // launches and reads. The same for an eager step and its bucket's graph (both at most VECTOR_ROWS, a power of two).
        vectorProducts = tensorCores && decodeProducts && rows <= StepLibrary.VECTOR_ROWS;
        issued = new ArrayList<>();
        // Split forms are tracked within one pass over the step's operations: a recorded, a captured and an eager pass
        // of the same operations launch the same kernels.
        splitHolder.clear();
    }

    /**
     * Destroys the captured step graphs: the next decode step of each bucket captures its graph again (benchmarks, after
     * a library setting that changes how kernels are launched, such as programmatic dependent launch).
     */
    void releaseGraphs() {
        ensureUsable();
        requireIdle("releaseGraphs");
        cuda.selectDevice(device);
        try {
            cuda.check(cuda.streamSynchronize(stream), "waiting for the stream before releasing the step graphs");
            List<RuntimeException> failures = new ArrayList<>();
            destroyGraphs(failures);  // one that fails to go stays for close() to try again
            throwFirst(failures);
        } catch (CudaException e) {
            markFailed(e);
            throw e;
        }
    }

    /**
     * Whether the step's kernels launch with programmatic dependent launch: yes unless -Dbitdelta.cuda.pdl=false
     * (process-wide; for comparison and diagnosis).
     */
    static boolean programmaticDependentLaunchRequested() {
        return !"false".equalsIgnoreCase(System.getProperty("bitdelta.cuda.pdl", "true"));
    }

    /** Rows rounded up to a power of two, at most maxRows: the batch sizes a graph is captured for. */
    private int bucketFor(int rows) {
        int bucket = Integer.highestOneBit(rows);
        if (bucket < rows) {
            bucket <<= 1;
        }
        return Math.min(bucket, spec.maxRows());
    }

    private long capture(GraphKey key, Runnable operations) {
        begin(Mode.CAPTURE, key.bucket(), key.bucket());
        step.check(step.graphBegin(stream), "starting the capture of a step graph");
        long graph;
        try {
            operations.run();
        } catch (RuntimeException e) {
            int status = step.graphAbort(stream);
            if (status != CudaLibrary.OK) {
                e.addSuppressed(step.failure(status, "aborting the capture of a step graph"));
            }
            throw e;
        }
        graph = step.graphEnd(stream);
        if (!issued.equals(key.operations())) {
            step.graphDestroy(graph);
            throw new IllegalStateException("the step's operations issued a different sequence when run again ("
                    + issued.size() + " vs " + key.operations().size() + " operations): a captured step must issue the same"
                    + " operations for every step of a shape");
        }
        graphs.put(key, graph);
        if (graphs.size() > MAX_GRAPHS) {
            Map.Entry<GraphKey, Long> eldest = graphs.entrySet().iterator().next();
            graphs.remove(eldest.getKey());
            step.check(step.graphDestroy(eldest.getValue()), "destroying a step graph");
        }
        return graph;
    }

    private void validate(StepInputs inputs) {
        int rows = inputs.rows();
        if (rows < 1 || rows > spec.maxRows()) {
            throw new IllegalArgumentException(rows + " rows: a step runs 1 .. maxRows " + spec.maxRows() + " rows");
        }
        if (inputs.tokens().length < rows || inputs.slots().length < rows || inputs.positions().length < rows
                || inputs.sequenceOfRow().length < rows || inputs.cacheSlots().length < rows) {
            throw new IllegalArgumentException("a per-row array of the step inputs is shorter than its " + rows + " rows");
        }
        int sequences = inputs.sequences();
        int width = inputs.blocksPerSequence();
        if (sequences < 1 || sequences > rows) {
            throw new IllegalArgumentException(sequences + " sequences for " + rows + " rows");
        }
        if (width < 1 || width > inputLayout.tableWidth() || inputs.blockTables().length < (long) sequences * width) {
            throw new IllegalArgumentException("block tables of width " + width + " (1 .. " + inputLayout.tableWidth() + ") for " + sequences
                    + " sequences, " + inputs.blockTables().length + " entries given");
        }
        int outputs = inputs.outputRows();
        if (outputs < 0 || outputs > rows || inputs.outputRowIndex().length < outputs) {
            throw new IllegalArgumentException(outputs + " output rows for " + rows + " rows (" + inputs.outputRowIndex().length + " indices)");
        }
        long cacheTokens = (long) spec.kvBlocks() * spec.kvBlockSize();
        for (int row = 0; row < rows; row++) {
            int token = inputs.tokens()[row];
            int slot = inputs.slots()[row];
            int position = inputs.positions()[row];
            int sequence = inputs.sequenceOfRow()[row];
            int cacheSlot = inputs.cacheSlots()[row];
            if (token < 0 || token >= spec.vocabularySize()) {
                throw new IllegalArgumentException("row " + row + ": token " + token + " outside the vocabulary [0, " + spec.vocabularySize() + ")");
            }
            if (slot < 0 || slot >= tenants.length || (slot > 0 && tenants[slot] == null)) {
                throw new IllegalArgumentException("row " + row + " names tenant slot " + slot + ", which holds no tenant");
            }
            if (position < 0 || position >= spec.contextLength()) {
                throw new IllegalArgumentException("row " + row + ": position " + position + " outside the context [0, " + spec.contextLength() + ")");
            }
            if (sequence < 0 || sequence >= sequences) {
                throw new IllegalArgumentException("row " + row + ": sequence " + sequence + " of " + sequences);
            }
            if (cacheSlot < 0 || cacheSlot >= cacheTokens) {
                throw new IllegalArgumentException("row " + row + ": KV cache slot " + cacheSlot + " outside [0, " + cacheTokens + ")");
            }
            int lastBlock = position / spec.kvBlockSize();
            if (lastBlock >= width) {
                throw new IllegalArgumentException("row " + row + ": position " + position + " needs block table entry " + lastBlock
                        + " but the tables are " + width + " wide");
            }
            for (int entry = 0; entry <= lastBlock; entry++) {
                int block = inputs.blockTables()[sequence * width + entry];
                if (block < 0 || block >= spec.kvBlocks()) {
                    throw new IllegalArgumentException("sequence " + sequence + ": block table entry " + entry + " is " + block
                            + ", outside [0, " + spec.kvBlocks() + ")");
                }
            }
        }
        for (int i = 0; i < outputs; i++) {
            int index = inputs.outputRowIndex()[i];
            if (index < 0 || index >= rows) {
                throw new IllegalArgumentException("output row " + i + " names row " + index + " of " + rows);
            }
        }
    }

    /** One copy of the step's values into the device inputs (the previous copy has left the pinned buffer first). */
    private void uploadInputs(StepInputs inputs) {
        step.check(step.eventSynchronize(uploadEvent), "waiting for the previous step's upload");
        MemorySegment host = inputsHost;
        int rows = inputs.rows();
        host.set(ValueLayout.JAVA_INT, inputLayout.header(InputLayout.ROWS), rows);
        host.set(ValueLayout.JAVA_INT, inputLayout.header(InputLayout.OUTPUT_ROWS), inputs.outputRows());
        host.set(ValueLayout.JAVA_INT, inputLayout.header(InputLayout.SEQUENCES), inputs.sequences());
        host.set(ValueLayout.JAVA_INT, inputLayout.header(InputLayout.BLOCKS_PER_SEQUENCE), inputs.blocksPerSequence());
        MemorySegment.copy(inputs.tokens(), 0, host, ValueLayout.JAVA_INT, inputLayout.offset(Input.TOKENS), rows);
        MemorySegment.copy(inputs.slots(), 0, host, ValueLayout.JAVA_INT, inputLayout.offset(Input.SLOTS), rows);
        MemorySegment.copy(inputs.positions(), 0, host, ValueLayout.JAVA_INT, inputLayout.offset(Input.POSITIONS), rows);
        MemorySegment.copy(inputs.sequenceOfRow(), 0, host, ValueLayout.JAVA_INT, inputLayout.offset(Input.SEQUENCE_OF_ROW), rows);
        MemorySegment.copy(inputs.cacheSlots(), 0, host, ValueLayout.JAVA_INT, inputLayout.offset(Input.CACHE_SLOTS), rows);
        MemorySegment.copy(inputs.outputRowIndex(), 0, host, ValueLayout.JAVA_INT, inputLayout.offset(Input.OUTPUT_ROW_INDEX),
                inputs.outputRows());
        // Runs of rows of one slot (the prefill products' segments) and of one sequence in tiles of 32 (prefill attention).
        segmentCount = 0;
        tileCount = 0;
        for (int row = 0; row < rows; row++) {
            if (row == 0 || inputs.slots()[row] != inputs.slots()[row - 1]) {
                host.set(ValueLayout.JAVA_INT, inputLayout.offset(Input.SEGMENT_OFFSETS) + 4L * segmentCount, row);
                host.set(ValueLayout.JAVA_INT, inputLayout.offset(Input.SEGMENT_SLOTS) + 4L * segmentCount, inputs.slots()[row]);
                segmentCount++;
            }
            if (row == 0 || inputs.sequenceOfRow()[row] != inputs.sequenceOfRow()[row - 1]
                    || row - host.get(ValueLayout.JAVA_INT, inputLayout.offset(Input.TILE_FIRST) + 4L * (tileCount - 1))
                    == ATTENTION_TILE_ROWS) {
                host.set(ValueLayout.JAVA_INT, inputLayout.offset(Input.TILE_FIRST) + 4L * tileCount, row);
                tileCount++;
            }
        }
        host.set(ValueLayout.JAVA_INT, inputLayout.offset(Input.SEGMENT_OFFSETS) + 4L * segmentCount, rows);
        for (int tile = 0; tile < tileCount; tile++) {
            int first = host.get(ValueLayout.JAVA_INT, inputLayout.offset(Input.TILE_FIRST) + 4L * tile);
            int end = tile + 1 < tileCount ? host.get(ValueLayout.JAVA_INT, inputLayout.offset(Input.TILE_FIRST) + 4L * (tile + 1)) : rows;
            host.set(ValueLayout.JAVA_INT, inputLayout.offset(Input.TILE_ROWS) + 4L * tile, end - first);
        }
        // The output rows grouped by slot (slots in order of first appearance), for the grouped lm_head.
        int outputs = inputs.outputRows();
        int[] order = new int[outputs];
        int groups = 0;
        boolean[] placed = new boolean[outputs];
        int filled = 0;
        for (int i = 0; i < outputs; i++) {
            if (placed[i]) {
                continue;
            }
            int slot = inputs.outputSlot(i);
            host.set(ValueLayout.JAVA_INT, inputLayout.offset(Input.GROUP_OFFSETS) + 4L * groups, filled);
            host.set(ValueLayout.JAVA_INT, inputLayout.offset(Input.GROUP_SLOTS) + 4L * groups, slot);
            for (int j = i; j < outputs; j++) {
                if (!placed[j] && inputs.outputSlot(j) == slot) {
                    placed[j] = true;
                    order[filled++] = j;
                }
            }
            groups++;
        }
        host.set(ValueLayout.JAVA_INT, inputLayout.offset(Input.GROUP_OFFSETS) + 4L * groups, filled);
        MemorySegment.copy(order, 0, host, ValueLayout.JAVA_INT, inputLayout.offset(Input.GROUP_ROWS), outputs);
        host.set(ValueLayout.JAVA_INT, inputLayout.header(InputLayout.LM_HEAD_GROUPS), groups);
        int tableEntries = inputs.sequences() * inputs.blocksPerSequence();
        MemorySegment.copy(inputs.blockTables(), 0, host, ValueLayout.JAVA_INT, inputLayout.offset(Input.BLOCK_TABLES), tableEntries);
        long bytes = inputLayout.offset(Input.BLOCK_TABLES) + 4L * tableEntries;
        cuda.check(cuda.copyHostToDeviceAsync(inputsBuffer.address(), host, bytes, stream), "uploading the step inputs");
        step.check(step.eventRecord(uploadEvent, stream), "recording the step-input upload");
    }

    // ---------------------------------------------------------------- operations

    private static final int OP_EMBED = 1;
    private static final int OP_NORM = 2;
    private static final int OP_PROJECT = 3;
    private static final int OP_ROTARY = 4;
    private static final int OP_ATTENTION = 5;
    private static final int OP_SWIGLU = 6;
    private static final int OP_GATHER = 7;
    private static final int OP_LM_HEAD = 8;

    /** Records the operation; true when its kernels are to be launched now (eager or capturing). */
    private boolean issue(Op op) {
        if (mode == Mode.IDLE) {
            throw new IllegalStateException("decoder operations run only inside run()");
        }
        issued.add(op);
        return mode != Mode.RECORD;
    }

    private DeviceActivations own(Activations activations, int columns, String role) {
        if (!(activations instanceof DeviceActivations mine) || mine.owner() != this) {
            throw new IllegalArgumentException(role + " '" + activations.name() + "' was not allocated by this CUDA decoder device");
        }
        if (columns >= 0 && mine.columns() != columns) {
            throw new IllegalArgumentException(role + " '" + mine.name() + "' has " + mine.columns() + " columns, the operation needs " + columns);
        }
        return mine;
    }

    private long input(long offset) {
        return inputsBuffer.address() + offset;
    }

    private long input(Input array) {
        return input(inputLayout.offset(array));
    }

    private long activeRows() {
        return input(inputLayout.header(InputLayout.ROWS));
    }

    private long activeOutputRows() {
        return input(inputLayout.header(InputLayout.OUTPUT_ROWS));
    }

    private long table(int entry) {
        return tablesBuffer.address() + 8L * entry;
    }

    private long dtypeTable(int entry) {
        return tablesBuffer.address() + tables.dtypeOffset() + 4L * entry;
    }

    /** The buffer holds at least the step's rows (or output rows) as the model code asked for them. */
    private DeviceActivations rows(DeviceActivations buffer, boolean outputRows) {
        int needed = outputRows ? current.outputRows() : current.rows();
        if (buffer.rows() < needed) {
            throw new IllegalArgumentException("'" + buffer.name() + "' has " + buffer.rows() + " rows, this step needs " + needed);
        }
        return buffer;
    }

    // ---- split forms (the tensor-core path) ----

    /** The split form of the width of {@code activations} (one of the products' input widths). */
    private DeviceBuffer splitForm(DeviceActivations activations) {
        DeviceBuffer buffer = splitForms.get(activations.columns());
        if (buffer == null) {
            throw new IllegalArgumentException("'" + activations.name() + "' has " + activations.columns() + " columns, not the input width "
                    + "of a product (" + splitForms.keySet() + ")");
        }
        return buffer;
    }

    /** Records that the split form of its width holds {@code activations}' present values, or that they were written since. */
    private void splitHolds(DeviceActivations activations, boolean current) {
        if (current) {
            splitHolder.put(activations.columns(), activations.id());
        } else {
            splitHolder.remove(activations.columns(), activations.id());
        }
    }

    /** Whether this pass's products read split forms (the tensor-core path but for vector products). */
    private boolean splitForms() {
        return tensorCores && !vectorProducts;
    }

    private boolean splitIsCurrent(DeviceActivations activations) {
        Integer holder = splitHolder.get(activations.columns());
        return holder != null && holder == activations.id();
    }

    // ---- operations ----

    @Override
    public void embed(Activations out) {
        DeviceActivations target = rows(own(out, spec.hiddenSize(), "embedding output"), false);
        splitHolds(target, false);
        if (!issue(new Op(OP_EMBED, 0, target.id(), 0, 0, false))) {
            return;
        }
        step.check(step.embed(activeRows(), launchRows, input(Input.TOKENS), input(Input.SLOTS), table(tables.embedding()),
                dtypeTable(tables.embedding()), spec.hiddenSize(), target.address(), stream), "embed of " + launchRows + " rows");
    }

    @Override
    public void rmsNorm(Activations in, Norm norm, int layer, Activations out) {
        boolean outputRows = norm == Norm.FINAL;
        DeviceActivations source = rows(own(in, spec.hiddenSize(), "RMSNorm input"), outputRows);
        DeviceActivations target = rows(own(out, spec.hiddenSize(), "RMSNorm output"), outputRows);
        if (source == target) {
            throw new IllegalArgumentException("RMSNorm in place ('" + source.name() + "') is not supported");
        }
        if (!outputRows) {
            checkLayer(layer);
        }
        // On the tensor-core path the norm before a product also writes its output's split form (not for vector products).
        boolean split = splitForms() && !outputRows;
        DeviceBuffer splitForm = split ? splitForm(target) : null;
        splitHolds(target, split);
        if (!issue(new Op(OP_NORM, outputRows ? 0 : layer, source.id(), target.id(), norm.ordinal(), false))) {
            return;
        }
        int rows = outputRows ? launchOutputRows : launchRows;
        if (rows == 0) {
            return;
        }
        long weights = switch (norm) {
            case INPUT -> table(tables.inputNorm(layer));
            case POST_ATTENTION -> table(tables.postAttentionNorm(layer));
            case FINAL -> table(tables.finalNorm());
        };
        String what = "RMSNorm " + norm + " layer " + layer + " of " + rows + " rows";
        if (split) {
            step.check(step.rmsNormSplit(activeRows(), rows, input(Input.SLOTS), weights, source.address(), target.address(),
                    spec.hiddenSize(), spec.normEpsilon(), weightDtype, decodeProducts, splitForm.address(), spec.maxRows(), stream), what
                    + " with its split form");
            return;
        }
        step.check(step.rmsNorm(outputRows ? activeOutputRows() : activeRows(), rows, input(Input.SLOTS),
                outputRows ? input(Input.OUTPUT_ROW_INDEX) : 0, weights, source.address(), target.address(), spec.hiddenSize(),
                spec.normEpsilon(), stream), what);
    }

    @Override
    public void project(int layer, Projection.Group group, Activations in, Activations out, boolean accumulate) {
        checkLayer(layer);
        DeviceActivations source = rows(own(in, inputsOf(group), group + " input"), false);
        DeviceActivations target = rows(own(out, spec.width(group), group + " output"), false);
        if (source == target) {
            throw new IllegalArgumentException(group + ": input and output are the same buffer '" + source.name() + "'");
        }
        GroupWeight weight = groupWeights[layer][group.ordinal()];
        DeviceBuffer splitForm = splitForms() ? splitForm(source) : null;
        boolean splitNeeded = splitForms() && !splitIsCurrent(source);
        if (splitForms()) {
            splitHolds(source, true);
        }
        splitHolds(target, false);
        if (!issue(new Op(OP_PROJECT, layer, source.id(), target.id(), group.ordinal(), accumulate))) {
            return;
        }
        String what = "layer " + layer + " " + group + " product W [" + weight.outputs() + ", " + weight.inputs() + "] of " + launchRows
                + " rows";
        if (!tensorCores) {
            step.check(step.project(activeRows(), launchRows, input(Input.SLOTS), weight.dtype(), weight.address(),
                    table(tables.signs(layer, group.ordinal())), table(tables.scales(layer, group.ordinal())), source.address(),
                    target.address(), weight.outputs(), weight.inputs(), accumulate, stream), what);
            return;
        }
        if (vectorProducts) {
            step.check(step.projectVector(activeRows(), launchRows, input(Input.SLOTS), weight.dtype(), weight.address(),
                    table(tables.signs(layer, group.ordinal())), table(tables.scales(layer, group.ordinal())), source.address(),
                    target.address(), weight.outputs(), weight.inputs(), accumulate, stream), what + " (vector kernel)");
            return;
        }
        if (splitNeeded) {
            step.check(step.split(activeRows(), launchRows, source.address(), source.columns(), weightDtype, decodeProducts,
                    splitForm.address(), spec.maxRows(), stream), "the split form of '" + source.name() + "' for " + what);
        }
        if (decodeProducts) {
            step.check(step.projectTc(activeRows(), launchRows, input(Input.SLOTS), weight.dtype(), weight.address(),
                    table(tables.signs(layer, group.ordinal())), table(tables.scales(layer, group.ordinal())), splitForm.address(),
                    spec.maxRows(), target.address(), weight.outputs(), weight.inputs(), accumulate, stream), what + " (tensor cores)");
            return;
        }
        step.check(step.projectPrefill(launchRows, input(Input.SEGMENT_OFFSETS), input(Input.SEGMENT_SLOTS), segmentCount,
                weight.dtype(), weight.address(), table(tables.signs(layer, group.ordinal())), table(tables.scales(layer, group.ordinal())),
                spec.tenantSlots(), splitForm.address(), spec.maxRows(), target.address(), weight.outputs(), weight.inputs(), accumulate,
                prefillWorkspace.address(), prefillWorkspace.bytes(), stream), what + " (prefill GEMMs over " + segmentCount + " segments)");
    }

    private int maxProductOutputs() {
        int widest = 0;
        for (Projection.Group group : Projection.Group.values()) {
            widest = Math.max(widest, spec.width(group));
        }
        return widest;
    }

    @Override
    public void rotaryAndCache(int layer, Activations qkv) {
        checkLayer(layer);
        DeviceActivations buffer = rows(own(qkv, spec.width(Projection.Group.QKV), "q|k|v"), false);
        splitHolds(buffer, false);
        if (!issue(new Op(OP_ROTARY, layer, buffer.id(), 0, 0, false))) {
            return;
        }
        long keys = kvBuffer.address() + 2L * layer * layerCacheBytes;
        step.check(step.rotaryCache(activeRows(), launchRows, input(Input.POSITIONS), input(Input.CACHE_SLOTS), rotaryCos,
                rotarySin, buffer.address(), spec.headCount(), spec.keyValueHeadCount(), spec.headDimension(), kvDtype, keys,
                keys + layerCacheBytes, spec.kvBlockSize(), stream), "RoPE and KV write, layer " + layer + ", " + launchRows + " rows");
    }

    @Override
    public void attention(int layer, Activations qkv, Activations out) {
        checkLayer(layer);
        DeviceActivations source = rows(own(qkv, spec.width(Projection.Group.QKV), "q|k|v"), false);
        DeviceActivations target = rows(own(out, spec.queryWidth(), "attention output"), false);
        splitHolds(target, false);
        if (!issue(new Op(OP_ATTENTION, layer, source.id(), target.id(), 0, false))) {
            return;
        }
        long keys = kvBuffer.address() + 2L * layer * layerCacheBytes;
        float scale = (float) (1.0 / Math.sqrt(spec.headDimension()));
        String what = "attention, layer " + layer + ", " + launchRows + " rows";
        // Decode steps launch the split kernel for their bucket's rows, eager or captured: the splits of the positions depend
        // on the launch's rows, so an eager step computes exactly what the graph of its bucket does.
        int bucket = current.isDecode() ? bucketFor(current.rows()) : launchRows;
        if (tensorCores && current.isDecode() && bucket <= decodeAttentionRows) {
            long maxPositions = spec.slidingWindow() > 0 ? Math.min(spec.slidingWindow(), spec.contextLength()) : spec.contextLength();
            step.check(step.attentionDecode(activeRows(), bucket, input(Input.POSITIONS), input(Input.SEQUENCE_OF_ROW),
                    input(Input.BLOCK_TABLES), input(inputLayout.header(InputLayout.BLOCKS_PER_SEQUENCE)), source.address(), kvDtype,
                    keys, keys + layerCacheBytes, spec.kvBlockSize(), spec.headCount(), spec.keyValueHeadCount(), spec.headDimension(),
                    spec.slidingWindow(), scale, maxPositions, target.address(), attentionWorkspace.address(), attentionWorkspace.bytes(),
                    stream), what + " (split decode kernel)");
            return;
        }
        if (tensorCores && flashPrefill && mode == Mode.EAGER) {
            step.check(step.attentionPrefill(tileCount, input(Input.TILE_FIRST), input(Input.TILE_ROWS),
                    input(Input.POSITIONS), input(Input.SEQUENCE_OF_ROW), input(Input.BLOCK_TABLES),
                    input(inputLayout.header(InputLayout.BLOCKS_PER_SEQUENCE)), source.address(), kvDtype, keys, keys + layerCacheBytes,
                    spec.kvBlockSize(), spec.headCount(), spec.keyValueHeadCount(), spec.headDimension(), spec.slidingWindow(), scale,
                    target.address(), stream), what + " (flash prefill kernel, " + tileCount + " tiles)");
            return;
        }
        step.check(step.attention(activeRows(), launchRows, input(Input.POSITIONS), input(Input.SEQUENCE_OF_ROW),
                input(Input.BLOCK_TABLES), input(inputLayout.header(InputLayout.BLOCKS_PER_SEQUENCE)), source.address(), kvDtype,
                keys, keys + layerCacheBytes, spec.kvBlockSize(), spec.headCount(), spec.keyValueHeadCount(), spec.headDimension(),
                spec.slidingWindow(), scale, target.address(), stream), what);
    }

    @Override
    public void swiGlu(Activations gateUp, Activations out) {
        DeviceActivations source = rows(own(gateUp, 2 * spec.intermediateSize(), "gate|up"), false);
        DeviceActivations target = rows(own(out, spec.intermediateSize(), "SwiGLU output"), false);
        boolean split = splitForms();
        DeviceBuffer splitForm = split ? splitForm(target) : null;
        splitHolds(target, split);
        if (!issue(new Op(OP_SWIGLU, 0, source.id(), target.id(), 0, false))) {
            return;
        }
        if (split) {
            step.check(step.swiGluSplit(activeRows(), launchRows, source.address(), target.address(), spec.intermediateSize(), weightDtype,
                    decodeProducts, splitForm.address(), spec.maxRows(), stream), "SwiGLU of " + launchRows + " rows with its split form");
            return;
        }
        step.check(step.swiGlu(activeRows(), launchRows, source.address(), target.address(), spec.intermediateSize(), stream),
                "SwiGLU of " + launchRows + " rows");
    }

    @Override
    public void gatherOutputRows(Activations in, Activations out) {
        DeviceActivations source = rows(own(in, -1, "gather input"), false);
        DeviceActivations target = rows(own(out, source.columns(), "gather output"), true);
        if (source == target) {
            throw new IllegalArgumentException("gathering rows in place ('" + source.name() + "') is not supported");
        }
        splitHolds(target, false);
        if (!issue(new Op(OP_GATHER, 0, source.id(), target.id(), 0, false)) || launchOutputRows == 0) {
            return;
        }
        step.check(step.gatherRows(activeOutputRows(), launchOutputRows, input(Input.OUTPUT_ROW_INDEX), source.address(),
                target.address(), source.columns(), stream), "gathering " + launchOutputRows + " output rows");
    }

    @Override
    public void lmHead(Activations in, Activations logits) {
        DeviceActivations source = rows(own(in, spec.hiddenSize(), "lm_head input"), true);
        DeviceActivations target = rows(own(logits, spec.vocabularySize(), "logits"), true);
        splitHolds(target, false);
        if (!issue(new Op(OP_LM_HEAD, 0, source.id(), target.id(), 0, false)) || launchOutputRows == 0) {
            return;
        }
        String what = "lm_head of " + launchOutputRows + " output rows, vocab " + spec.vocabularySize();
        if (groupedLmHead) {
            step.check(step.lmHeadGrouped(input(inputLayout.header(InputLayout.LM_HEAD_GROUPS)), launchOutputRows,
                    input(Input.GROUP_SLOTS), input(Input.GROUP_OFFSETS), input(Input.GROUP_ROWS), table(tables.lmHead()),
                    dtypeTable(tables.lmHead()), source.address(), target.address(), spec.vocabularySize(), spec.hiddenSize(), stream),
                    what + " (grouped by tenant)");
            return;
        }
        step.check(step.lmHead(activeOutputRows(), launchOutputRows, input(Input.SLOTS), input(Input.OUTPUT_ROW_INDEX),
                table(tables.lmHead()), dtypeTable(tables.lmHead()), source.address(), target.address(), spec.vocabularySize(),
                spec.hiddenSize(), stream), what);
    }

    private void checkLayer(int layer) {
        if (layer < 0 || layer >= spec.layerCount()) {
            throw new IllegalArgumentException("layer " + layer + " of " + spec.layerCount());
        }
    }

    // ---------------------------------------------------------------- host transfers

    @Override
    public void read(Activations source, int rows, float[] destination) {
        ensureUsable();
        requireIdle("read");
        DeviceActivations buffer = own(source, -1, "read source");
        checkTransfer(buffer, rows, destination.length, "read");
        cuda.selectDevice(device);
        long bytes = 4L * rows * buffer.columns();
        try {
            for (long done = 0; done < bytes; ) {
                long count = Math.min(TRANSFER_BYTES, bytes - done);
                cuda.check(cuda.copyDeviceToHostAsync(transfer, buffer.address() + done, count, stream), "reading '" + buffer.name() + "'");
                cuda.check(cuda.streamSynchronize(stream), "reading '" + buffer.name() + "' (a fault of the step before surfaces here)");
                MemorySegment.copy(transfer, ValueLayout.JAVA_FLOAT, 0, destination, (int) (done / 4), (int) (count / 4));
                done += count;
            }
        } catch (CudaException e) {
            markFailed(e);
            throw e;
        }
    }

    @Override
    public void write(float[] source, int rows, Activations target) {
        ensureUsable();
        requireIdle("write");
        DeviceActivations buffer = own(target, -1, "write target");
        checkTransfer(buffer, rows, source.length, "write");
        cuda.selectDevice(device);
        try {
            uploadBytes(MemorySegment.ofArray(source).asSlice(0, 4L * rows * buffer.columns()), buffer.address(), "'" + buffer.name() + "'");
        } catch (CudaException e) {
            markFailed(e);
            throw e;
        }
    }

    private void checkTransfer(DeviceActivations buffer, int rows, int hostLength, String what) {
        if (rows < 0 || rows > buffer.rows()) {
            throw new IllegalArgumentException(what + " of " + rows + " rows of '" + buffer.name() + "' [" + buffer.rows() + ", " + buffer.columns() + "]");
        }
        if (hostLength < (long) rows * buffer.columns()) {
            throw new IllegalArgumentException(what + ": the host array has " + hostLength + " floats, " + rows + " rows of '" + buffer.name()
                    + "' need " + (long) rows * buffer.columns());
        }
    }

    @Override
    public void sample(Activations logits, Sampling sampling, int outputRows, int[] tokens) {
        ensureUsable();
        requireIdle("sample");
        DeviceActivations buffer = own(logits, spec.vocabularySize(), "logits");
        if (outputRows < 0 || outputRows > buffer.rows() || tokens.length < outputRows || sampling.temperature().length < outputRows
                || sampling.topK().length < outputRows || sampling.topP().length < outputRows || sampling.seed().length < outputRows
                || sampling.draw().length < outputRows) {
            throw new IllegalArgumentException("sampling " + outputRows + " rows: a parameter or the token array is too short");
        }
        if (outputRows == 0) {
            return;
        }
        cuda.selectDevice(device);
        int capacity = spec.maxRows();
        boolean greedy = true;
        for (int row = 0; row < outputRows; row++) {
            float temperature = sampling.temperature()[row];
            if (!(temperature >= 0) || Float.isInfinite(temperature)) {
                throw new IllegalArgumentException("row " + row + ": temperature " + temperature + " (must be finite and >= 0)");
            }
            greedy &= temperature == 0;
        }
        MemorySegment host = sampleHost;
        MemorySegment.copy(sampling.seed(), 0, host, ValueLayout.JAVA_LONG, Sample.SEED.offset(capacity), outputRows);
        MemorySegment.copy(sampling.temperature(), 0, host, ValueLayout.JAVA_FLOAT, Sample.TEMPERATURE.offset(capacity), outputRows);
        MemorySegment.copy(sampling.topK(), 0, host, ValueLayout.JAVA_INT, Sample.TOP_K.offset(capacity), outputRows);
        MemorySegment.copy(sampling.topP(), 0, host, ValueLayout.JAVA_FLOAT, Sample.TOP_P.offset(capacity), outputRows);
        MemorySegment.copy(sampling.draw(), 0, host, ValueLayout.JAVA_INT, Sample.DRAW.offset(capacity), outputRows);
        long parameters = sampleParameters.address();
        long vocabulary = spec.vocabularySize();
        try {
            cuda.check(cuda.copyHostToDeviceAsync(parameters, host, Sample.TOKENS.offset(capacity), stream),
                    "uploading the sampling parameters");
            if (greedy) {
                step.check(step.argmax(outputRows, buffer.address(), vocabulary, parameters + Sample.TOKENS.offset(capacity), stream),
                        "greedy sampling of " + outputRows + " rows");
            } else {
                for (int first = 0; first < outputRows; first += sampleRowsPerLaunch) {
                    int count = Math.min(sampleRowsPerLaunch, outputRows - first);
                    step.check(step.sample(count, buffer.address() + 4L * first * vocabulary, vocabulary,
                            Sample.TEMPERATURE.row(parameters, capacity, first), Sample.TOP_K.row(parameters, capacity, first),
                            Sample.TOP_P.row(parameters, capacity, first), Sample.SEED.row(parameters, capacity, first),
                            Sample.DRAW.row(parameters, capacity, first), Sample.TOKENS.row(parameters, capacity, first),
                            sampleWorkspace.address(), sampleWorkspace.bytes(), stream), "sampling rows " + first + " .. " + (first + count - 1));
                }
            }
            cuda.check(cuda.copyDeviceToHostAsync(host.asSlice(Sample.TOKENS.offset(capacity)), parameters + Sample.TOKENS.offset(capacity),
                    4L * outputRows, stream), "reading the sampled tokens");
            cuda.check(cuda.streamSynchronize(stream), "sampling (a fault of the step before surfaces here)");
        } catch (CudaException e) {
            markFailed(e);
            throw e;
        }
        MemorySegment.copy(host, ValueLayout.JAVA_INT, Sample.TOKENS.offset(capacity), tokens, 0, outputRows);
    }

    // ---------------------------------------------------------------- lifecycle and failures

    private void ensureUsable() {
        if (closed) {
            throw new IllegalStateException("the CUDA decoder device is closed");
        }
        if (failure != null) {
            throw new BitDeltaException("the CUDA decoder device stopped after a failure and must be closed: " + failure);
        }
    }

    private void requireIdle(String what) {
        if (mode != Mode.IDLE) {
            throw new IllegalStateException(what + " cannot be called from inside a step's operations");
        }
    }

    private void markFailed(RuntimeException e) {
        if (failure == null) {
            failure = e.getMessage();
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        backend.forget(this);
        RuntimeException failure = null;
        try {
            cuda.selectDevice(device);
            cuda.check(cuda.streamSynchronize(stream), "waiting for the stream at close");
        } catch (RuntimeException e) {
            failure = e;
        }
        release(failure);
        if (failure != null) {
            throw failure;
        }
    }

    /** Frees everything allocated so far (open may fail half way); failures are attached to {@code primary} or thrown. */
    private void release(RuntimeException primary) {
        List<RuntimeException> failures = new ArrayList<>();
        destroyGraphs(failures);
        graphs.clear();
        collect(failures, scope::close);
        if (uploadEvent != 0) {
            long event = uploadEvent;
            uploadEvent = 0;
            collect(failures, () -> step.check(step.eventDestroy(event), "destroying the upload event"));
        }
        for (MemorySegment pinned : new MemorySegment[]{transfer, inputsHost, sampleHost}) {
            if (pinned != null) {
                collect(failures, () -> cuda.check(cuda.hostFree(pinned), "freeing pinned host memory"));
            }
        }
        transfer = null;
        inputsHost = null;
        sampleHost = null;
        collect(failures, () -> cuda.check(cuda.streamDestroy(stream), "destroying the decoder's stream"));
        if (failures.isEmpty()) {
            return;
        }
        if (primary != null) {
            failures.forEach(primary::addSuppressed);
            return;
        }
        throwFirst(failures);
    }

    /** Throws the first of {@code failures}, the others attached to it; nothing when there are none. */
    private static void throwFirst(List<RuntimeException> failures) {
        if (failures.isEmpty()) {
            return;
        }
        RuntimeException first = failures.getFirst();
        failures.subList(1, failures.size()).forEach(first::addSuppressed);
        throw first;
    }

    /** Destroys the captured graphs; each leaves the map once destroyed, a failure goes to {@code failures}. */
    private void destroyGraphs(List<RuntimeException> failures) {
        for (Iterator<Map.Entry<GraphKey, Long>> entries = graphs.entrySet().iterator(); entries.hasNext(); ) {
            long graph = entries.next().getValue();
            collect(failures, () -> {
                step.check(step.graphDestroy(graph), "destroying a step graph");
                entries.remove();
            });
        }
    }

    private static void collect(List<RuntimeException> failures, Runnable action) {
        try {
            action.run();
        } catch (RuntimeException e) {
            failures.add(e);
        }
    }

    /** The stream every operation of this device is enqueued on (for benchmarks that time steps with events). */
    long stream() {
        return stream;
    }

    /** The step bindings this device calls (for benchmarks). */
    StepLibrary stepLibrary() {
        return step;
    }

    /** Graphs instantiated now (for tests: a decode step is captured once per bucket and replayed). */
    int graphCount() {
        return graphs.size();
    }
}
