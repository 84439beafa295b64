package org.bitdelta.cuda.internal;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_DOUBLE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Hand-written downcalls into the decoder-step ABI of libbitdelta_cuda.so (bitdelta_step.h), beside
 * {@link CudaLibrary}'s (the same library, looked up again by its path: the dynamic loader hands back the loaded
 * copy). Device pointers are {@code long}; methods return the raw BD_* status, {@link #check} turns a failure into a
 * {@link CudaException} carrying the library's message (the call, its shapes and the CUDA error).
 */
public final class StepLibrary extends LibraryBindings {
    /** BD_STEP_ABI_VERSION these bindings were written for. */
    public static final int EXPECTED_ABI_VERSION = 4;
    /** BD_STEP_VECTOR_ROWS: decode steps of up to this many rows take {@link #projectVector}. */
    public static final int VECTOR_ROWS = 2;

    private static volatile StepLibrary instance;

    private final CudaLibrary cuda;
    private final MethodHandle abiVersion;
    private final MethodHandle lastError;
    private final MethodHandle embed;
    private final MethodHandle rmsNorm;
    private final MethodHandle project;
    private final MethodHandle rotaryCache;
    private final MethodHandle attention;
    private final MethodHandle swiGlu;
    private final MethodHandle gatherRows;
    private final MethodHandle lmHead;
    private final MethodHandle argmax;
    private final MethodHandle sampleWorkspaceBytes;
    private final MethodHandle sample;
    private final MethodHandle graphBegin;
    private final MethodHandle graphEnd;
    private final MethodHandle graphAbort;
    private final MethodHandle graphLaunch;
    private final MethodHandle graphDestroy;
    private final MethodHandle eventCreate;
    private final MethodHandle eventRecord;
    private final MethodHandle eventSynchronize;
    private final MethodHandle eventDestroy;
    private final MethodHandle splitBytes;
    private final MethodHandle split;
    private final MethodHandle rmsNormSplit;
    private final MethodHandle swiGluSplit;
    private final MethodHandle projectTc;
    private final MethodHandle projectVector;
    private final MethodHandle projectPrefillWorkspaceBytes;
    private final MethodHandle projectPrefill;
    private final MethodHandle attentionWorkspaceBytes;
    private final MethodHandle attentionDecode;
    private final MethodHandle attentionPrefillFits;
    private final MethodHandle attentionPrefill;
    private final MethodHandle lmHeadGrouped;
    private final MethodHandle prepare;
    private final MethodHandle setPdl;
    private final MethodHandle timerCreate;
    private final MethodHandle timerElapsed;
    private final MethodHandle copyBandwidth;

    private StepLibrary(CudaLibrary cuda) {
        super(cuda.path());
        this.cuda = cuda;
        abiVersion = bind("bd_step_abi_version", FunctionDescriptor.of(JAVA_INT));
        lastError = bind("bd_step_last_error", FunctionDescriptor.of(ADDRESS));
        // (active, launch_rows, tokens, slots, table_of_slot, dtype_of_slot, hidden, out, stream)
        embed = bind("bd_step_embed", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, slots, row_index, weight_of_slot, in, out, hidden, eps, stream)
        rmsNorm = bind("bd_step_rmsnorm", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_FLOAT, JAVA_LONG));
        // (active, launch_rows, slots, w_dtype, W, signs_of_slot, scales_of_slot, x, y, M, K, accumulate, stream)
        project = bind("bd_step_project", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG));
        // (active, launch_rows, positions, cache_slots, cos, sin, qkv, heads, kv_heads, head_dim, kv_dtype, key_cache,
        //  value_cache, block_size, stream)
        rotaryCache = bind("bd_step_rotary_cache", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, positions, sequence_of_row, block_tables, blocks_per_sequence, qkv, kv_dtype, key_cache,
        //  value_cache, block_size, heads, kv_heads, head_dim, window, scale, out, stream)
        attention = bind("bd_step_attention", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_FLOAT, JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, gate_up, out, intermediate, stream)
        swiGlu = bind("bd_step_swiglu", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG));
        // (active, launch_rows, row_index, in, out, columns, stream)
        gatherRows = bind("bd_step_gather_rows", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, slots, row_index, head_of_slot, dtype_of_slot, x, logits, vocab, hidden, stream)
        lmHead = bind("bd_step_lm_head", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (rows, logits, vocab, tokens, stream)
        argmax = bind("bd_step_argmax", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        sampleWorkspaceBytes = bind("bd_step_sample_workspace_bytes", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (rows, logits, vocab, temperature, top_k, top_p, seed, draw, tokens, workspace, workspace_bytes, stream)
        sample = bind("bd_step_sample", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        graphBegin = bind("bd_step_graph_begin", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        graphEnd = bind("bd_step_graph_end", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS));
        graphAbort = bind("bd_step_graph_abort", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        graphLaunch = bind("bd_step_graph_launch", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));
        graphDestroy = bind("bd_step_graph_destroy", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        eventCreate = bind("bd_step_event_create", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        eventRecord = bind("bd_step_event_record", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));
        eventSynchronize = bind("bd_step_event_synchronize", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        eventDestroy = bind("bd_step_event_destroy", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        // (capacity, K, dtype)
        splitBytes = bind("bd_step_split_bytes", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT));
        // (active, launch_rows, x, K, dtype, planes, split, capacity, stream)
        split = bind("bd_step_split", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT,
                JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, slots, weight_of_slot, in, out, hidden, eps, dtype, planes, split, capacity, stream)
        rmsNormSplit = bind("bd_step_rmsnorm_split", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_FLOAT, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, gate_up, out, intermediate, dtype, planes, split, capacity, stream)
        swiGluSplit = bind("bd_step_swiglu_split", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, slots, dtype, W, signs_of_slot, scales_of_slot, split, capacity, y, M, K, accumulate, stream)
        projectTc = bind("bd_step_project_tc", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG));
        // (active, launch_rows, slots, dtype, W, signs_of_slot, scales_of_slot, x, y, M, K, accumulate, stream)
        projectVector = bind("bd_step_project_vector", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG));
        // (rows, segments, M)
        projectPrefillWorkspaceBytes = bind("bd_step_project_prefill_workspace_bytes", FunctionDescriptor.of(JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (rows, segment_offsets, segment_slots, segments, dtype, W, signs_of_slot, scales_of_slot, slots, split, capacity, y,
        //  M, K, accumulate, workspace, workspace_bytes, stream)
        projectPrefill = bind("bd_step_project_prefill", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (launch_rows, heads, head_dim)
        attentionWorkspaceBytes = bind("bd_step_attention_workspace_bytes", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, positions, sequence_of_row, block_tables, blocks_per_sequence, qkv, kv_dtype, key_cache,
        //  value_cache, block_size, heads, kv_heads, head_dim, window, scale, max_positions, out, workspace, workspace_bytes,
        //  stream)
        attentionDecode = bind("bd_step_attention_decode", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_FLOAT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        attentionPrefillFits = bind("bd_step_attention_prefill_fits", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        // (tiles, tile_first, tile_rows, positions, sequence_of_row, block_tables, blocks_per_sequence, qkv, kv_dtype, key_cache,
        //  value_cache, block_size, heads, kv_heads, head_dim, window, scale, out, stream)
        attentionPrefill = bind("bd_step_attention_prefill", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_FLOAT, JAVA_LONG, JAVA_LONG));
        // (groups, launch_groups, group_slot, group_offsets, group_rows, head_of_slot, dtype_of_slot, x, logits, vocab, hidden,
        //  stream)
        lmHeadGrouped = bind("bd_step_lm_head_grouped", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        prepare = bind("bd_step_prepare", FunctionDescriptor.of(JAVA_INT));
        setPdl = bind("bd_step_set_pdl", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
        timerCreate = bind("bd_step_timer_create", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        timerElapsed = bind("bd_step_timer_elapsed", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, ADDRESS));
        copyBandwidth = bind("bd_step_copy_bandwidth", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_INT, ADDRESS));
        requireVersion("decoder-step ABI version", abiVersion(), EXPECTED_ABI_VERSION);
    }

    /** The bindings over {@code cuda}'s library (once per process). */
    public static StepLibrary load(CudaLibrary cuda) {
        StepLibrary loaded = instance;
        if (loaded == null) {
            synchronized (StepLibrary.class) {
                loaded = instance;
                if (loaded == null) {
                    loaded = new StepLibrary(cuda);
                    instance = loaded;
                }
            }
        }
        return loaded;
    }

    public CudaLibrary cuda() {
        return cuda;
    }

    // ---- status ----

    /** A {@link CudaException} naming {@code what}, the status text and the library's account of the failure. */
    @Override
    public CudaException failure(int status, String what) {
        String detail = lastError();
        return new CudaException(what + " failed with status " + status + " (" + cuda.statusString(status) + ")"
                + (detail.isEmpty() ? "" : ": " + detail), status);
    }

    public int abiVersion() {
        return call("bd_step_abi_version", () -> (int) abiVersion.invokeExact());
    }

    public String lastError() {
        return callForString("bd_step_last_error", () -> (MemorySegment) lastError.invokeExact());
    }

    // ---- operations ----

    public int embed(long active, long launchRows, long tokens, long slots, long tableOfSlot, long dtypeOfSlot, long hidden, long out,
                     long stream) {
        return call("bd_step_embed", () -> (int) embed.invokeExact(active, launchRows, tokens, slots, tableOfSlot, dtypeOfSlot,
                hidden, out, stream));
    }

    public int rmsNorm(long active, long launchRows, long slots, long rowIndex, long weightOfSlot, long in, long out, long hidden,
                       float epsilon, long stream) {
        return call("bd_step_rmsnorm", () -> (int) rmsNorm.invokeExact(active, launchRows, slots, rowIndex, weightOfSlot, in, out,
                hidden, epsilon, stream));
    }

    public int project(long active, long launchRows, long slots, int weightDtype, long weight, long signsOfSlot, long scalesOfSlot,
                       long x, long y, long outputs, long inputs, boolean accumulate, long stream) {
        return call("bd_step_project", () -> (int) project.invokeExact(active, launchRows, slots, weightDtype, weight,
                signsOfSlot, scalesOfSlot, x, y, outputs, inputs, accumulate ? 1 : 0, stream));
    }

    public int rotaryCache(long active, long launchRows, long positions, long cacheSlots, long cosines, long sines, long qkv,
                           long heads, long keyValueHeads, long headDimension, int kvDtype, long keyCache, long valueCache,
                           long blockSize, long stream) {
        return call("bd_step_rotary_cache", () -> (int) rotaryCache.invokeExact(active, launchRows, positions, cacheSlots,
                cosines, sines, qkv, heads, keyValueHeads, headDimension, kvDtype, keyCache, valueCache, blockSize, stream));
    }

    public int attention(long active, long launchRows, long positions, long sequenceOfRow, long blockTables, long blocksPerSequence,
                         long qkv, int kvDtype, long keyCache, long valueCache, long blockSize, long heads, long keyValueHeads,
                         long headDimension, long window, float scale, long out, long stream) {
        return call("bd_step_attention", () -> (int) attention.invokeExact(active, launchRows, positions, sequenceOfRow,
                blockTables, blocksPerSequence, qkv, kvDtype, keyCache, valueCache, blockSize, heads, keyValueHeads,
                headDimension, window, scale, out, stream));
    }

    public int swiGlu(long active, long launchRows, long gateUp, long out, long intermediate, long stream) {
        return call("bd_step_swiglu", () -> (int) swiGlu.invokeExact(active, launchRows, gateUp, out, intermediate, stream));
    }

    public int gatherRows(long active, long launchRows, long rowIndex, long in, long out, long columns, long stream) {
        return call("bd_step_gather_rows", () -> (int) gatherRows.invokeExact(active, launchRows, rowIndex, in, out, columns,
                stream));
    }

    public int lmHead(long active, long launchRows, long slots, long rowIndex, long headOfSlot, long dtypeOfSlot, long x, long logits,
                      long vocabulary, long hidden, long stream) {
        return call("bd_step_lm_head", () -> (int) lmHead.invokeExact(active, launchRows, slots, rowIndex, headOfSlot,
                dtypeOfSlot, x, logits, vocabulary, hidden, stream));
    }

    public int argmax(long rows, long logits, long vocabulary, long tokens, long stream) {
        return call("bd_step_argmax", () -> (int) argmax.invokeExact(rows, logits, vocabulary, tokens, stream));
    }

    public long sampleWorkspaceBytes(long rows, long vocabulary) {
        return callLong("bd_step_sample_workspace_bytes", () -> (long) sampleWorkspaceBytes.invokeExact(rows, vocabulary));
    }

    public int sample(long rows, long logits, long vocabulary, long temperature, long topK, long topP, long seed, long draw,
                      long tokens, long workspace, long workspaceBytes, long stream) {
        return call("bd_step_sample", () -> (int) sample.invokeExact(rows, logits, vocabulary, temperature, topK, topP, seed,
                draw, tokens, workspace, workspaceBytes, stream));
    }

    // ---- the tensor-core path of 16-bit models ----

    public long splitBytes(long capacity, long columns, int dtype) {
        return callLong("bd_step_split_bytes", () -> (long) splitBytes.invokeExact(capacity, columns, dtype));
    }

    public int split(long active, long launchRows, long x, long columns, int dtype, boolean planes, long split, long capacity,
                     long stream) {
        return call("bd_step_split", () -> (int) this.split.invokeExact(active, launchRows, x, columns, dtype, planes ? 1 : 0,
                split, capacity, stream));
    }

    public int rmsNormSplit(long active, long launchRows, long slots, long weightOfSlot, long in, long out, long hidden, float epsilon,
                            int dtype, boolean planes, long split, long capacity, long stream) {
        return call("bd_step_rmsnorm_split", () -> (int) rmsNormSplit.invokeExact(active, launchRows, slots, weightOfSlot, in,
                out, hidden, epsilon, dtype, planes ? 1 : 0, split, capacity, stream));
    }

    public int swiGluSplit(long active, long launchRows, long gateUp, long out, long intermediate, int dtype, boolean planes,
                           long split, long capacity, long stream) {
        return call("bd_step_swiglu_split", () -> (int) swiGluSplit.invokeExact(active, launchRows, gateUp, out, intermediate,
                dtype, planes ? 1 : 0, split, capacity, stream));
    }

    public int projectVector(long active, long launchRows, long slots, int dtype, long weight, long signsOfSlot, long scalesOfSlot,
                             long x, long y, long outputs, long inputs, boolean accumulate, long stream) {
        return call("bd_step_project_vector", () -> (int) projectVector.invokeExact(active, launchRows, slots, dtype, weight,
                signsOfSlot, scalesOfSlot, x, y, outputs, inputs, accumulate ? 1 : 0, stream));
    }

    public int projectTc(long active, long launchRows, long slots, int dtype, long weight, long signsOfSlot, long scalesOfSlot,
                         long split, long capacity, long y, long outputs, long inputs, boolean accumulate, long stream) {
        return call("bd_step_project_tc", () -> (int) projectTc.invokeExact(active, launchRows, slots, dtype, weight, signsOfSlot,
                scalesOfSlot, split, capacity, y, outputs, inputs, accumulate ? 1 : 0, stream));
    }

    public long projectPrefillWorkspaceBytes(long rows, long segments, long outputs) {
        return callLong("bd_step_project_prefill_workspace_bytes", () -> (long) projectPrefillWorkspaceBytes.invokeExact(rows,
                segments, outputs));
    }

    public int projectPrefill(long rows, long segmentOffsets, long segmentSlots, long segments, int dtype, long weight,
                              long signsOfSlot, long scalesOfSlot, long slots, long split, long capacity, long y, long outputs,
                              long inputs, boolean accumulate, long workspace, long workspaceBytes, long stream) {
        return call("bd_step_project_prefill", () -> (int) projectPrefill.invokeExact(rows, segmentOffsets, segmentSlots,
                segments, dtype, weight, signsOfSlot, scalesOfSlot, slots, split, capacity, y, outputs, inputs,
                accumulate ? 1 : 0, workspace, workspaceBytes, stream));
    }

    public long attentionWorkspaceBytes(long launchRows, long heads, long headDimension) {
        return callLong("bd_step_attention_workspace_bytes", () -> (long) attentionWorkspaceBytes.invokeExact(launchRows, heads,
                headDimension));
    }

    public int attentionDecode(long active, long launchRows, long positions, long sequenceOfRow, long blockTables,
                               long blocksPerSequence, long qkv, int kvDtype, long keyCache, long valueCache, long blockSize, long heads,
                               long keyValueHeads, long headDimension, long window, float scale, long maxPositions, long out,
                               long workspace, long workspaceBytes, long stream) {
        return call("bd_step_attention_decode", () -> (int) attentionDecode.invokeExact(active, launchRows, positions,
                sequenceOfRow, blockTables, blocksPerSequence, qkv, kvDtype, keyCache, valueCache, blockSize, heads,
                keyValueHeads, headDimension, window, scale, maxPositions, out, workspace, workspaceBytes, stream));
    }

    public boolean attentionPrefillFits(long headDimension) {
        return call("bd_step_attention_prefill_fits", () -> (int) attentionPrefillFits.invokeExact(headDimension)) == 1;
    }

    public int attentionPrefill(long tiles, long tileFirst, long tileRows, long positions, long sequenceOfRow, long blockTables,
                                long blocksPerSequence, long qkv, int kvDtype, long keyCache, long valueCache, long blockSize, long heads,
                                long keyValueHeads, long headDimension, long window, float scale, long out, long stream) {
        return call("bd_step_attention_prefill", () -> (int) attentionPrefill.invokeExact(tiles, tileFirst, tileRows, positions,
                sequenceOfRow, blockTables, blocksPerSequence, qkv, kvDtype, keyCache, valueCache, blockSize, heads,
                keyValueHeads, headDimension, window, scale, out, stream));
    }

    public int lmHeadGrouped(long groups, long launchGroups, long groupSlot, long groupOffsets, long groupRows, long headOfSlot,
                             long dtypeOfSlot, long x, long logits, long vocabulary, long hidden, long stream) {
        return call("bd_step_lm_head_grouped", () -> (int) lmHeadGrouped.invokeExact(groups, launchGroups, groupSlot,
                groupOffsets, groupRows, headOfSlot, dtypeOfSlot, x, logits, vocabulary, hidden, stream));
    }

    /** Raises the step kernels' shared-memory limits on the current device (once per device, outside a capture). */
    public int prepare() {
        return call("bd_step_prepare", () -> (int) prepare.invokeExact());
    }

    /**
     * Benchmarks: programmatic dependent launch of the step's kernels on (the default) or off, process-wide; graphs
     * captured before keep the launches they were captured with.
     */
    public int setProgrammaticDependentLaunch(boolean enabled) {
        return call("bd_step_set_pdl", () -> (int) setPdl.invokeExact(enabled ? 1 : 0));
    }

    // ---- graphs and events ----

    public int graphBegin(long stream) {
        return call("bd_step_graph_begin", () -> (int) graphBegin.invokeExact(stream));
    }

    /** Ends the capture on {@code stream} and returns the instantiated graph (a cudaGraphExec_t). */
    public long graphEnd(long stream) {
        return callForPointer("bd_step_graph_end", "bd_step_graph_end", exec -> (int) graphEnd.invokeExact(stream, exec));
    }

    public int graphAbort(long stream) {
        return call("bd_step_graph_abort", () -> (int) graphAbort.invokeExact(stream));
    }

    public int graphLaunch(long graphExec, long stream) {
        return call("bd_step_graph_launch", () -> (int) graphLaunch.invokeExact(graphExec, stream));
    }

    public int graphDestroy(long graphExec) {
        return call("bd_step_graph_destroy", () -> (int) graphDestroy.invokeExact(graphExec));
    }

    public long eventCreate() {
        return callForPointer("bd_step_event_create", "bd_step_event_create", event -> (int) eventCreate.invokeExact(event));
    }

    public int eventRecord(long event, long stream) {
        return call("bd_step_event_record", () -> (int) eventRecord.invokeExact(event, stream));
    }

    public int eventSynchronize(long event) {
        return call("bd_step_event_synchronize", () -> (int) eventSynchronize.invokeExact(event));
    }

    public int eventDestroy(long event) {
        return call("bd_step_event_destroy", () -> (int) eventDestroy.invokeExact(event));
    }

    // ---- benchmarks ----

    /** An event that records time (record it with {@link #eventRecord}, destroy it with {@link #eventDestroy}). */
    public long timerCreate() {
        return callForPointer("bd_step_timer_create", "bd_step_timer_create", event -> (int) timerCreate.invokeExact(event));
    }

    /** Waits for {@code end}; the milliseconds between two recorded timer events. */
    public float timerElapsed(long start, long end) {
        return callWithOut("bd_step_timer_elapsed", JAVA_FLOAT, milliseconds -> {
            check((int) timerElapsed.invokeExact(start, end, milliseconds), "bd_step_timer_elapsed");
            return milliseconds.get(JAVA_FLOAT, 0);
        });
    }

    /** Device-to-device copy bandwidth (bytes read + written per second), the median of {@code repetitions} copies. */
    public double copyBandwidth(long bytes, int repetitions) {
        return callWithOut("bd_step_copy_bandwidth", JAVA_DOUBLE, result -> {
            check((int) copyBandwidth.invokeExact(bytes, repetitions, result), "bd_step_copy_bandwidth of " + bytes + " bytes");
            return result.get(JAVA_DOUBLE, 0);
        });
    }
}
