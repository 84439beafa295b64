package org.bitdelta.cuda.internal;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Hand-written downcalls into the decoder-step ABI of libbitdelta_cuda.so (bitdelta_step.h), beside
 * {@link CudaLibrary}'s (the same library, looked up again by its path: the dynamic loader hands back the loaded
 * copy). Device pointers are {@code long}; methods return the raw BD_* status, {@link #check} turns a failure into a
 * {@link CudaException} carrying the library's message (the call, its shapes and the CUDA error).
 */
public final class StepLibrary {
    /** BD_STEP_ABI_VERSION these bindings were written for. */
    public static final int EXPECTED_ABI_VERSION = 2;

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
    private final MethodHandle repackSigns;
    private final MethodHandle splitBytes;
    private final MethodHandle split;
    private final MethodHandle rmsNormSplit;
    private final MethodHandle swiGluSplit;
    private final MethodHandle projectTc;
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
        this.cuda = cuda;
        Linker linker = Linker.nativeLinker();
        SymbolLookup lookup = SymbolLookup.libraryLookup(cuda.path(), Arena.global());
        java.util.function.BiFunction<String, FunctionDescriptor, MethodHandle> bind = (name, descriptor) ->
                linker.downcallHandle(lookup.find(name).orElseThrow(() -> new CudaException(cuda.path() + " lacks the symbol " + name
                        + " (a library older than these bindings?)", -1)), descriptor);
        abiVersion = bind.apply("bd_step_abi_version", FunctionDescriptor.of(JAVA_INT));
        lastError = bind.apply("bd_step_last_error", FunctionDescriptor.of(ADDRESS));
        // (active, launch_rows, tokens, slots, table_of_slot, dtype_of_slot, hidden, out, stream)
        embed = bind.apply("bd_step_embed", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, slots, row_index, weight_of_slot, in, out, hidden, eps, stream)
        rmsNorm = bind.apply("bd_step_rmsnorm", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_FLOAT, JAVA_LONG));
        // (active, launch_rows, slots, w_dtype, W, signs_of_slot, scales_of_slot, x, y, M, K, accumulate, stream)
        project = bind.apply("bd_step_project", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG));
        // (active, launch_rows, positions, cache_slots, cos, sin, qkv, heads, kv_heads, head_dim, kv_dtype, key_cache,
        //  value_cache, block_size, stream)
        rotaryCache = bind.apply("bd_step_rotary_cache", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, positions, sequence_of_row, block_tables, blocks_per_sequence, qkv, kv_dtype, key_cache,
        //  value_cache, block_size, heads, kv_heads, head_dim, window, scale, out, stream)
        attention = bind.apply("bd_step_attention", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_FLOAT, JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, gate_up, out, intermediate, stream)
        swiGlu = bind.apply("bd_step_swiglu", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG));
        // (active, launch_rows, row_index, in, out, columns, stream)
        gatherRows = bind.apply("bd_step_gather_rows", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, slots, row_index, head_of_slot, dtype_of_slot, x, logits, vocab, hidden, stream)
        lmHead = bind.apply("bd_step_lm_head", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (rows, logits, vocab, tokens, stream)
        argmax = bind.apply("bd_step_argmax", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        sampleWorkspaceBytes = bind.apply("bd_step_sample_workspace_bytes", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (rows, logits, vocab, temperature, top_k, top_p, seed, draw, tokens, workspace, workspace_bytes, stream)
        sample = bind.apply("bd_step_sample", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        graphBegin = bind.apply("bd_step_graph_begin", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        graphEnd = bind.apply("bd_step_graph_end", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS));
        graphAbort = bind.apply("bd_step_graph_abort", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        graphLaunch = bind.apply("bd_step_graph_launch", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));
        graphDestroy = bind.apply("bd_step_graph_destroy", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        eventCreate = bind.apply("bd_step_event_create", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        eventRecord = bind.apply("bd_step_event_record", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));
        eventSynchronize = bind.apply("bd_step_event_synchronize", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        eventDestroy = bind.apply("bd_step_event_destroy", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        // bd_repack_signs(d_packed, d_signs, M, K, stream) of bitdelta_cuda.h, for the tenants' stacked sign matrices.
        repackSigns = bind.apply("bd_repack_signs", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (capacity, K, dtype)
        splitBytes = bind.apply("bd_step_split_bytes", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT));
        // (active, launch_rows, x, K, dtype, planes, split, capacity, stream)
        split = bind.apply("bd_step_split", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT,
                JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, slots, weight_of_slot, in, out, hidden, eps, dtype, planes, split, capacity, stream)
        rmsNormSplit = bind.apply("bd_step_rmsnorm_split", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_FLOAT, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, gate_up, out, intermediate, dtype, planes, split, capacity, stream)
        swiGluSplit = bind.apply("bd_step_swiglu_split", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, slots, dtype, W, signs_of_slot, scales_of_slot, split, capacity, y, M, K, accumulate, stream)
        projectTc = bind.apply("bd_step_project_tc", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG));
        // (rows, segments, M)
        projectPrefillWorkspaceBytes = bind.apply("bd_step_project_prefill_workspace_bytes", FunctionDescriptor.of(JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (rows, segment_offsets, segment_slots, segments, dtype, W, signs_of_slot, scales_of_slot, slots, split, capacity, y,
        //  M, K, accumulate, workspace, workspace_bytes, stream)
        projectPrefill = bind.apply("bd_step_project_prefill", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // (launch_rows, heads, head_dim)
        attentionWorkspaceBytes = bind.apply("bd_step_attention_workspace_bytes", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG));
        // (active, launch_rows, positions, sequence_of_row, block_tables, blocks_per_sequence, qkv, kv_dtype, key_cache,
        //  value_cache, block_size, heads, kv_heads, head_dim, window, scale, max_positions, out, workspace, workspace_bytes,
        //  stream)
        attentionDecode = bind.apply("bd_step_attention_decode", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_FLOAT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        attentionPrefillFits = bind.apply("bd_step_attention_prefill_fits", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        // (tiles, tile_first, tile_rows, positions, sequence_of_row, block_tables, blocks_per_sequence, qkv, kv_dtype, key_cache,
        //  value_cache, block_size, heads, kv_heads, head_dim, window, scale, out, stream)
        attentionPrefill = bind.apply("bd_step_attention_prefill", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_FLOAT, JAVA_LONG, JAVA_LONG));
        // (groups, launch_groups, group_slot, group_offsets, group_rows, head_of_slot, dtype_of_slot, x, logits, vocab, hidden,
        //  stream)
        lmHeadGrouped = bind.apply("bd_step_lm_head_grouped", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        prepare = bind.apply("bd_step_prepare", FunctionDescriptor.of(JAVA_INT));
        setPdl = bind.apply("bd_step_set_pdl", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
        timerCreate = bind.apply("bd_step_timer_create", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        timerElapsed = bind.apply("bd_step_timer_elapsed", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, ADDRESS));
        copyBandwidth = bind.apply("bd_step_copy_bandwidth", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_INT, ADDRESS));
        int version = abiVersion();
        if (version != EXPECTED_ABI_VERSION) {
            throw new CudaException(cuda.path() + " has decoder-step ABI version " + version + ", these bindings expect "
                    + EXPECTED_ABI_VERSION, -1);
        }
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

    /** Throws a {@link CudaException} naming {@code what} and the library's account of the failure. */
    public void check(int status, String what) {
        if (status != CudaLibrary.OK) {
            throw failure(status, what);
        }
    }

    public CudaException failure(int status, String what) {
        String detail = lastError();
        return new CudaException(what + " failed with status " + status + " (" + cuda.statusString(status) + ")"
                + (detail.isEmpty() ? "" : ": " + detail), status);
    }

    public int abiVersion() {
        try {
            return (int) abiVersion.invokeExact();
        } catch (Throwable e) {
            throw rethrow("bd_step_abi_version", e);
        }
    }

    public String lastError() {
        try {
            MemorySegment text = (MemorySegment) lastError.invokeExact();
            return text.equals(MemorySegment.NULL) ? "" : text.reinterpret(4096).getString(0);
        } catch (Throwable e) {
            throw rethrow("bd_step_last_error", e);
        }
    }

    // ---- operations ----

    public int embed(long active, long launchRows, long tokens, long slots, long tableOfSlot, long dtypeOfSlot, long hidden, long out,
                     long stream) {
        try {
            return (int) embed.invokeExact(active, launchRows, tokens, slots, tableOfSlot, dtypeOfSlot, hidden, out, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_embed", e);
        }
    }

    public int rmsNorm(long active, long launchRows, long slots, long rowIndex, long weightOfSlot, long in, long out, long hidden,
                       float epsilon, long stream) {
        try {
            return (int) rmsNorm.invokeExact(active, launchRows, slots, rowIndex, weightOfSlot, in, out, hidden, epsilon, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_rmsnorm", e);
        }
    }

    public int project(long active, long launchRows, long slots, int weightDtype, long weight, long signsOfSlot, long scalesOfSlot,
                       long x, long y, long outputs, long inputs, boolean accumulate, long stream) {
        try {
            return (int) project.invokeExact(active, launchRows, slots, weightDtype, weight, signsOfSlot, scalesOfSlot, x, y, outputs,
                    inputs, accumulate ? 1 : 0, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_project", e);
        }
    }

    public int rotaryCache(long active, long launchRows, long positions, long cacheSlots, long cosines, long sines, long qkv,
                           long heads, long keyValueHeads, long headDimension, int kvDtype, long keyCache, long valueCache,
                           long blockSize, long stream) {
        try {
            return (int) rotaryCache.invokeExact(active, launchRows, positions, cacheSlots, cosines, sines, qkv, heads, keyValueHeads,
                    headDimension, kvDtype, keyCache, valueCache, blockSize, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_rotary_cache", e);
        }
    }

    public int attention(long active, long launchRows, long positions, long sequenceOfRow, long blockTables, long blocksPerSequence,
                         long qkv, int kvDtype, long keyCache, long valueCache, long blockSize, long heads, long keyValueHeads,
                         long headDimension, long window, float scale, long out, long stream) {
        try {
            return (int) attention.invokeExact(active, launchRows, positions, sequenceOfRow, blockTables, blocksPerSequence, qkv,
                    kvDtype, keyCache, valueCache, blockSize, heads, keyValueHeads, headDimension, window, scale, out, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_attention", e);
        }
    }

    public int swiGlu(long active, long launchRows, long gateUp, long out, long intermediate, long stream) {
        try {
            return (int) swiGlu.invokeExact(active, launchRows, gateUp, out, intermediate, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_swiglu", e);
        }
    }

    public int gatherRows(long active, long launchRows, long rowIndex, long in, long out, long columns, long stream) {
        try {
            return (int) gatherRows.invokeExact(active, launchRows, rowIndex, in, out, columns, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_gather_rows", e);
        }
    }

    public int lmHead(long active, long launchRows, long slots, long rowIndex, long headOfSlot, long dtypeOfSlot, long x, long logits,
                      long vocabulary, long hidden, long stream) {
        try {
            return (int) lmHead.invokeExact(active, launchRows, slots, rowIndex, headOfSlot, dtypeOfSlot, x, logits, vocabulary, hidden,
                    stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_lm_head", e);
        }
    }

    public int argmax(long rows, long logits, long vocabulary, long tokens, long stream) {
        try {
            return (int) argmax.invokeExact(rows, logits, vocabulary, tokens, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_argmax", e);
        }
    }

    public long sampleWorkspaceBytes(long rows, long vocabulary) {
        try {
            return (long) sampleWorkspaceBytes.invokeExact(rows, vocabulary);
        } catch (Throwable e) {
            throw rethrow("bd_step_sample_workspace_bytes", e);
        }
    }

    public int sample(long rows, long logits, long vocabulary, long temperature, long topK, long topP, long seed, long draw,
                      long tokens, long workspace, long workspaceBytes, long stream) {
        try {
            return (int) sample.invokeExact(rows, logits, vocabulary, temperature, topK, topP, seed, draw, tokens, workspace,
                    workspaceBytes, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_sample", e);
        }
    }

    public int repackSigns(long devicePacked, long deviceSigns, long rows, long columns, long stream) {
        try {
            return (int) repackSigns.invokeExact(devicePacked, deviceSigns, rows, columns, stream);
        } catch (Throwable e) {
            throw rethrow("bd_repack_signs", e);
        }
    }

    // ---- the tensor-core path of 16-bit models ----

    public long splitBytes(long capacity, long columns, int dtype) {
        try {
            return (long) splitBytes.invokeExact(capacity, columns, dtype);
        } catch (Throwable e) {
            throw rethrow("bd_step_split_bytes", e);
        }
    }

    public int split(long active, long launchRows, long x, long columns, int dtype, boolean planes, long split, long capacity,
                     long stream) {
        try {
            return (int) this.split.invokeExact(active, launchRows, x, columns, dtype, planes ? 1 : 0, split, capacity, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_split", e);
        }
    }

    public int rmsNormSplit(long active, long launchRows, long slots, long weightOfSlot, long in, long out, long hidden, float epsilon,
                            int dtype, boolean planes, long split, long capacity, long stream) {
        try {
            return (int) rmsNormSplit.invokeExact(active, launchRows, slots, weightOfSlot, in, out, hidden, epsilon, dtype,
                    planes ? 1 : 0, split, capacity, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_rmsnorm_split", e);
        }
    }

    public int swiGluSplit(long active, long launchRows, long gateUp, long out, long intermediate, int dtype, boolean planes,
                           long split, long capacity, long stream) {
        try {
            return (int) swiGluSplit.invokeExact(active, launchRows, gateUp, out, intermediate, dtype, planes ? 1 : 0, split, capacity,
                    stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_swiglu_split", e);
        }
    }

    public int projectTc(long active, long launchRows, long slots, int dtype, long weight, long signsOfSlot, long scalesOfSlot,
                         long split, long capacity, long y, long outputs, long inputs, boolean accumulate, long stream) {
        try {
            return (int) projectTc.invokeExact(active, launchRows, slots, dtype, weight, signsOfSlot, scalesOfSlot, split, capacity, y,
                    outputs, inputs, accumulate ? 1 : 0, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_project_tc", e);
        }
    }

    public long projectPrefillWorkspaceBytes(long rows, long segments, long outputs) {
        try {
            return (long) projectPrefillWorkspaceBytes.invokeExact(rows, segments, outputs);
        } catch (Throwable e) {
            throw rethrow("bd_step_project_prefill_workspace_bytes", e);
        }
    }

    public int projectPrefill(long rows, long segmentOffsets, long segmentSlots, long segments, int dtype, long weight,
                              long signsOfSlot, long scalesOfSlot, long slots, long split, long capacity, long y, long outputs,
                              long inputs, boolean accumulate, long workspace, long workspaceBytes, long stream) {
        try {
            return (int) projectPrefill.invokeExact(rows, segmentOffsets, segmentSlots, segments, dtype, weight, signsOfSlot,
                    scalesOfSlot, slots, split, capacity, y, outputs, inputs, accumulate ? 1 : 0, workspace, workspaceBytes, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_project_prefill", e);
        }
    }

    public long attentionWorkspaceBytes(long launchRows, long heads, long headDimension) {
        try {
            return (long) attentionWorkspaceBytes.invokeExact(launchRows, heads, headDimension);
        } catch (Throwable e) {
            throw rethrow("bd_step_attention_workspace_bytes", e);
        }
    }

    public int attentionDecode(long active, long launchRows, long positions, long sequenceOfRow, long blockTables,
                               long blocksPerSequence, long qkv, int kvDtype, long keyCache, long valueCache, long blockSize, long heads,
                               long keyValueHeads, long headDimension, long window, float scale, long maxPositions, long out,
                               long workspace, long workspaceBytes, long stream) {
        try {
            return (int) attentionDecode.invokeExact(active, launchRows, positions, sequenceOfRow, blockTables, blocksPerSequence, qkv,
                    kvDtype, keyCache, valueCache, blockSize, heads, keyValueHeads, headDimension, window, scale, maxPositions, out,
                    workspace, workspaceBytes, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_attention_decode", e);
        }
    }

    public boolean attentionPrefillFits(long headDimension) {
        try {
            return (int) attentionPrefillFits.invokeExact(headDimension) == 1;
        } catch (Throwable e) {
            throw rethrow("bd_step_attention_prefill_fits", e);
        }
    }

    public int attentionPrefill(long tiles, long tileFirst, long tileRows, long positions, long sequenceOfRow, long blockTables,
                                long blocksPerSequence, long qkv, int kvDtype, long keyCache, long valueCache, long blockSize, long heads,
                                long keyValueHeads, long headDimension, long window, float scale, long out, long stream) {
        try {
            return (int) attentionPrefill.invokeExact(tiles, tileFirst, tileRows, positions, sequenceOfRow, blockTables,
                    blocksPerSequence, qkv, kvDtype, keyCache, valueCache, blockSize, heads, keyValueHeads, headDimension, window, scale,
                    out, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_attention_prefill", e);
        }
    }

    public int lmHeadGrouped(long groups, long launchGroups, long groupSlot, long groupOffsets, long groupRows, long headOfSlot,
                             long dtypeOfSlot, long x, long logits, long vocabulary, long hidden, long stream) {
        try {
            return (int) lmHeadGrouped.invokeExact(groups, launchGroups, groupSlot, groupOffsets, groupRows, headOfSlot, dtypeOfSlot, x,
                    logits, vocabulary, hidden, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_lm_head_grouped", e);
        }
    }

    /** Raises the step kernels' shared-memory limits on the current device (once per device, outside a capture). */
    public int prepare() {
        try {
            return (int) prepare.invokeExact();
        } catch (Throwable e) {
            throw rethrow("bd_step_prepare", e);
        }
    }

    /** Benchmarks: programmatic dependent launch of the tensor-core products on (the default) or off, process-wide. */
    public int setProgrammaticDependentLaunch(boolean enabled) {
        try {
            return (int) setPdl.invokeExact(enabled ? 1 : 0);
        } catch (Throwable e) {
            throw rethrow("bd_step_set_pdl", e);
        }
    }

    // ---- graphs and events ----

    public int graphBegin(long stream) {
        try {
            return (int) graphBegin.invokeExact(stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_graph_begin", e);
        }
    }

    /** Ends the capture on {@code stream} and returns the instantiated graph (a cudaGraphExec_t). */
    public long graphEnd(long stream) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment exec = arena.allocate(ADDRESS);
            check((int) graphEnd.invokeExact(stream, exec), "bd_step_graph_end");
            return exec.get(JAVA_LONG, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable e) {
            throw rethrow("bd_step_graph_end", e);
        }
    }

    public int graphAbort(long stream) {
        try {
            return (int) graphAbort.invokeExact(stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_graph_abort", e);
        }
    }

    public int graphLaunch(long graphExec, long stream) {
        try {
            return (int) graphLaunch.invokeExact(graphExec, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_graph_launch", e);
        }
    }

    public int graphDestroy(long graphExec) {
        try {
            return (int) graphDestroy.invokeExact(graphExec);
        } catch (Throwable e) {
            throw rethrow("bd_step_graph_destroy", e);
        }
    }

    public long eventCreate() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment event = arena.allocate(ADDRESS);
            check((int) eventCreate.invokeExact(event), "bd_step_event_create");
            return event.get(JAVA_LONG, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable e) {
            throw rethrow("bd_step_event_create", e);
        }
    }

    public int eventRecord(long event, long stream) {
        try {
            return (int) eventRecord.invokeExact(event, stream);
        } catch (Throwable e) {
            throw rethrow("bd_step_event_record", e);
        }
    }

    public int eventSynchronize(long event) {
        try {
            return (int) eventSynchronize.invokeExact(event);
        } catch (Throwable e) {
            throw rethrow("bd_step_event_synchronize", e);
        }
    }

    public int eventDestroy(long event) {
        try {
            return (int) eventDestroy.invokeExact(event);
        } catch (Throwable e) {
            throw rethrow("bd_step_event_destroy", e);
        }
    }

    // ---- benchmarks ----

    /** An event that records time (record it with {@link #eventRecord}, destroy it with {@link #eventDestroy}). */
    public long timerCreate() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment event = arena.allocate(ADDRESS);
            check((int) timerCreate.invokeExact(event), "bd_step_timer_create");
            return event.get(JAVA_LONG, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable e) {
            throw rethrow("bd_step_timer_create", e);
        }
    }

    /** Waits for {@code end}; the milliseconds between two recorded timer events. */
    public float timerElapsed(long start, long end) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment milliseconds = arena.allocate(JAVA_FLOAT);
            check((int) timerElapsed.invokeExact(start, end, milliseconds), "bd_step_timer_elapsed");
            return milliseconds.get(JAVA_FLOAT, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable e) {
            throw rethrow("bd_step_timer_elapsed", e);
        }
    }

    /** Device-to-device copy bandwidth (bytes read + written per second), the median of {@code repetitions} copies. */
    public double copyBandwidth(long bytes, int repetitions) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment result = arena.allocate(java.lang.foreign.ValueLayout.JAVA_DOUBLE);
            check((int) copyBandwidth.invokeExact(bytes, repetitions, result), "bd_step_copy_bandwidth of " + bytes + " bytes");
            return result.get(java.lang.foreign.ValueLayout.JAVA_DOUBLE, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable e) {
            throw rethrow("bd_step_copy_bandwidth", e);
        }
    }

    /** invokeExact declares Throwable; a downcall throws only on a wrong call site, which is a bug here. */
    private static RuntimeException rethrow(String function, Throwable e) {
        if (e instanceof RuntimeException runtime) {
            return runtime;
        }
        if (e instanceof Error error) {
            throw error;
        }
        return new CudaException("calling " + function + " failed", e);
    }
}
