package org.bitdelta.cuda.internal;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.Path;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Hand-written downcalls into libbitdelta_cuda.so (bitdelta_cuda.h and bitdelta_cuda_runtime.h). One instance per
 * process: the library is loaded once into the global arena. Methods return the raw BD_* status; {@link #check}
 * turns a failure into a {@link CudaException}. Device pointers travel as {@code long}; {@code size_t} is
 * {@code long} (linux-x86_64 only).
 */
public final class CudaLibrary {
    // Status codes (BD_OK, BD_ERR_*).
    public static final int OK = 0;
    public static final int ERROR_NULL_POINTER = 1;
    public static final int ERROR_BAD_SHAPE = 2;
    public static final int ERROR_BAD_DTYPE = 3;
    public static final int ERROR_WORKSPACE = 4;
    public static final int ERROR_MISALIGNED = 5;
    public static final int ERROR_CUDA = 6;
    public static final int ERROR_NOT_BUILT = 7;
    // Dtype codes (BD_DTYPE_*) and scale granularity (BD_SCALE_*).
    public static final int DTYPE_F32 = 0;
    public static final int DTYPE_F16 = 1;
    public static final int DTYPE_BF16 = 2;
    public static final int SCALE_PER_MATRIX = 0;
    public static final int SCALE_PER_ROW = 1;
    // Decode kernel versions (enum bd_decode_variant) for {@link #debugSetDecodeVariant}: benchmarks and checks only.
    public static final int DECODE_AUTO = 0;
    public static final int DECODE_SPLIT_K = 1;
    public static final int DECODE_PIPELINED = 2;
    /** Experiment build only: the release library answers {@link #ERROR_NOT_BUILT}. */
    public static final int DECODE_PIPELINED_M32 = 3;
    public static final int DECODE_BINARY = 4;
    /** Experiment build only: the release library answers {@link #ERROR_NOT_BUILT}. */
    public static final int DECODE_BINARY_M32 = 5;
    public static final int DECODE_BINARY_LEAN = 6;
    /** The ABI version these bindings were written for (BD_ABI_VERSION). */
    public static final int EXPECTED_ABI_VERSION = 2;

    private static volatile CudaLibrary instance;

    private final Path path;
    private final MethodHandle abiVersion;
    private final MethodHandle statusString;
    private final MethodHandle lastCudaError;
    private final MethodHandle signsDeviceBytes;
    private final MethodHandle repackSigns;
    private final MethodHandle unpackSigns;
    private final MethodHandle compressWorkspaceBytes;
    private final MethodHandle compress;
    private final MethodHandle debugSetDecodeVariant;
    private final MethodHandle decodeWorkspaceBytes;
    private final MethodHandle decode;
    private final MethodHandle prefillWorkspaceBytes;
    private final MethodHandle prefill;
    private final MethodHandle deviceCount;
    private final MethodHandle setDevice;
    private final MethodHandle deviceName;
    private final MethodHandle memGetInfo;
    private final MethodHandle malloc;
    private final MethodHandle free;
    private final MethodHandle hostAlloc;
    private final MethodHandle hostFree;
    private final MethodHandle memcpyHostToDevice;
    private final MethodHandle memcpyDeviceToHost;
    private final MethodHandle memcpyHostToDeviceAsync;
    private final MethodHandle memcpyDeviceToHostAsync;
    private final MethodHandle memset;
    private final MethodHandle streamCreate;
    private final MethodHandle streamDestroy;
    private final MethodHandle streamSynchronize;

    private CudaLibrary(Path path) {
        this.path = path;
        Linker linker = Linker.nativeLinker();
        SymbolLookup lookup = SymbolLookup.libraryLookup(path, Arena.global());
        Binder bind = new Binder(linker, lookup, path);
        // bd_abi_version and the size queries do no CUDA work: "critical" skips the thread-state transition.
        abiVersion = bind.critical("bd_abi_version", FunctionDescriptor.of(JAVA_INT));
        statusString = bind.handle("bd_status_string", FunctionDescriptor.of(ADDRESS, JAVA_INT));
        lastCudaError = bind.handle("bd_last_cuda_error", FunctionDescriptor.of(ADDRESS));
        signsDeviceBytes = bind.critical("bd_signs_device_bytes", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG));
        repackSigns = bind.handle("bd_repack_signs", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        unpackSigns = bind.handle("bd_unpack_signs", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        compressWorkspaceBytes = bind.critical("bd_compress_workspace_bytes", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG));
        compress = bind.handle("bd_compress", FunctionDescriptor.of(JAVA_INT,
                JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // Sets a process-wide int, no CUDA work.
        debugSetDecodeVariant = bind.critical("bd_debug_set_decode_variant", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
        decodeWorkspaceBytes = bind.critical("bd_decode_workspace_bytes", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        decode = bind.handle("bd_decode", FunctionDescriptor.of(JAVA_INT,
                JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG));
        prefillWorkspaceBytes = bind.critical("bd_prefill_workspace_bytes",
                FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        prefill = bind.handle("bd_prefill", FunctionDescriptor.of(JAVA_INT,
                JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG));
        deviceCount = bind.handle("bd_device_count", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        setDevice = bind.handle("bd_set_device", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
        deviceName = bind.handle("bd_device_name", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_LONG));
        memGetInfo = bind.handle("bd_mem_get_info", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        malloc = bind.handle("bd_malloc", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        free = bind.handle("bd_free", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        hostAlloc = bind.handle("bd_host_alloc", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        hostFree = bind.handle("bd_host_free", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        memcpyHostToDevice = bind.handle("bd_memcpy_htod", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG));
        memcpyDeviceToHost = bind.handle("bd_memcpy_dtoh", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
        memcpyHostToDeviceAsync = bind.handle("bd_memcpy_htod_async", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG, JAVA_LONG));
        memcpyDeviceToHostAsync = bind.handle("bd_memcpy_dtoh_async", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        memset = bind.handle("bd_memset", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG));
        streamCreate = bind.handle("bd_stream_create", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        streamDestroy = bind.handle("bd_stream_destroy", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        streamSynchronize = bind.handle("bd_stream_synchronize", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        int version = abiVersion();
        if (version != EXPECTED_ABI_VERSION) {
            throw new CudaException(path + " has ABI version " + version + ", these bindings expect " + EXPECTED_ABI_VERSION, -1);
        }
    }

    /**
     * Loads the library (once per process) for a backend: -Dbitdelta.cuda.library, else the jar's copy via the cache
     * folder. Throws naming the reason where no GPU is usable ({@link NativeLibraryLocator#unavailableReason()}).
     */
    public static CudaLibrary load() {
        String reason = NativeLibraryLocator.unavailableReason();
        if (reason != null) {
            throw new CudaException("the CUDA backend is not available: " + reason, -1);
        }
        return loadForHostCalls();
    }

    /**
     * Loads the library (once per process) for the calls that touch no GPU (ABI version, status strings, sizes,
     * {@link #debugSetDecodeVariant}): also where no GPU is usable, since the library links the CUDA runtime
     * statically and reaches the driver only when a CUDA call is made. Throws where the library cannot be found.
     */
    public static CudaLibrary loadForHostCalls() {
        CudaLibrary loaded = instance;
        if (loaded == null) {
            synchronized (CudaLibrary.class) {
                loaded = instance;
                if (loaded == null) {
                    String reason = NativeLibraryLocator.libraryUnavailableReason();
                    if (reason != null) {
                        throw new CudaException("the CUDA library is not available: " + reason, -1);
                    }
                    loaded = new CudaLibrary(NativeLibraryLocator.locate());
                    instance = loaded;
                }
            }
        }
        return loaded;
    }

    public Path path() {
        return path;
    }

    private record Binder(Linker linker, SymbolLookup lookup, Path path) {
        MethodHandle handle(String name, FunctionDescriptor descriptor) {
            return linker.downcallHandle(symbol(name), descriptor);
        }

        MethodHandle critical(String name, FunctionDescriptor descriptor) {
            return linker.downcallHandle(symbol(name), descriptor, Linker.Option.critical(false));
        }

        private MemorySegment symbol(String name) {
            return lookup.find(name).orElseThrow(() -> new CudaException(path + " lacks the symbol " + name
                    + " (a library older than these bindings?)", -1));
        }
    }

    // ---- status and errors ----

    /** Throws a {@link CudaException} naming {@code what}, the status text and, for BD_ERR_CUDA, the CUDA error. */
    public void check(int status, String what) {
        if (status != OK) {
            throw failure(status, what);
        }
    }

    public CudaException failure(int status, String what) {
        String detail = statusString(status);
        if (status == ERROR_CUDA) {
            detail += ": " + lastCudaError();
        }
        return new CudaException(what + " failed with status " + status + " (" + detail + ")", status);
    }

    public int abiVersion() {
        try {
            return (int) abiVersion.invokeExact();
        } catch (Throwable e) {
            throw rethrow("bd_abi_version", e);
        }
    }

    public String statusString(int status) {
        try {
            return cString((MemorySegment) statusString.invokeExact(status));
        } catch (Throwable e) {
            throw rethrow("bd_status_string", e);
        }
    }

    public String lastCudaError() {
        try {
            return cString((MemorySegment) lastCudaError.invokeExact());
        } catch (Throwable e) {
            throw rethrow("bd_last_cuda_error", e);
        }
    }

    private static String cString(MemorySegment pointer) {
        return pointer.equals(MemorySegment.NULL) ? "" : pointer.reinterpret(4096).getString(0);
    }

    // ---- kernels ----

    public long signsDeviceBytes(long rows, long columns) {
        try {
            return (long) signsDeviceBytes.invokeExact(rows, columns);
        } catch (Throwable e) {
            throw rethrow("bd_signs_device_bytes", e);
        }
    }

    public int repackSigns(long devicePacked, long deviceSigns, long rows, long columns, long stream) {
        try {
            return (int) repackSigns.invokeExact(devicePacked, deviceSigns, rows, columns, stream);
        } catch (Throwable e) {
            throw rethrow("bd_repack_signs", e);
        }
    }

    public int unpackSigns(long deviceSigns, long devicePacked, long rows, long columns, long stream) {
        try {
            return (int) unpackSigns.invokeExact(deviceSigns, devicePacked, rows, columns, stream);
        } catch (Throwable e) {
            throw rethrow("bd_unpack_signs", e);
        }
    }

    /** Device bytes of bd_compress's workspace for a [rows, columns] matrix (0 for rows <= 0). */
    public long compressWorkspaceBytes(long rows, long columns) {
        try {
            return (long) compressWorkspaceBytes.invokeExact(rows, columns);
        } catch (Throwable e) {
            throw rethrow("bd_compress_workspace_bytes", e);
        }
    }

    /**
     * bd_compress: signs (U8 [rows, ceil(columns/8)], host/file layout) and mean |ft − base| scales of a F16/BF16
     * pair, bit-identical to the CPU compressor. Any of rowScales (F32 [rows]), matrixScale (F32 [1]) and rowSums
     * (F64 [rows]) may be 0. Device pointers; enqueued on {@code stream}.
     */
    public int compress(int dtype, long base, long finetuned, long rows, long columns, long signsPacked, long rowScales,
                        long matrixScale, long rowSums, long workspace, long workspaceBytes, long stream) {
        try {
            return (int) compress.invokeExact(dtype, base, finetuned, rows, columns, signsPacked, rowScales, matrixScale,
                    rowSums, workspace, workspaceBytes, stream);
        } catch (Throwable e) {
            throw rethrow("bd_compress", e);
        }
    }

    /**
     * Forces a decode kernel version process-wide ({@link #DECODE_AUTO} .. {@link #DECODE_BINARY_LEAN}); for
     * benchmarks and checks only, not thread-safe. Returns {@link #ERROR_NOT_BUILT} for a form the library was built
     * without (the experiment-only M32 forms in a release library).
     */
    public int debugSetDecodeVariant(int variant) {
        try {
            return (int) debugSetDecodeVariant.invokeExact(variant);
        } catch (Throwable e) {
            throw rethrow("bd_debug_set_decode_variant", e);
        }
    }

    public long decodeWorkspaceBytes(long outputs, long inputs, long rows) {
        try {
            return (long) decodeWorkspaceBytes.invokeExact(outputs, inputs, rows);
        } catch (Throwable e) {
            throw rethrow("bd_decode_workspace_bytes", e);
        }
    }

    public int decode(int dtype, int yDtype, long weight, long x, long rowTenant, long rows, long tenantSigns, long tenantScales,
                      long tenantCount, int scalePerRow, long y, long outputs, long inputs, long workspace, long workspaceBytes, long stream) {
        try {
            return (int) decode.invokeExact(dtype, yDtype, weight, x, rowTenant, rows, tenantSigns, tenantScales, tenantCount,
                    scalePerRow, y, outputs, inputs, workspace, workspaceBytes, stream);
        } catch (Throwable e) {
            throw rethrow("bd_decode", e);
        }
    }

    public long prefillWorkspaceBytes(long outputs, long inputs, long rows, long segments) {
        try {
            return (long) prefillWorkspaceBytes.invokeExact(outputs, inputs, rows, segments);
        } catch (Throwable e) {
            throw rethrow("bd_prefill_workspace_bytes", e);
        }
    }

    public int prefill(int dtype, int yDtype, long weight, long x, long rows, long segmentOffsets, long segmentTenant, long segments,
                       long tenantSigns, long tenantScales, long tenantCount, int scalePerRow, int accumulate, long y,
                       long outputs, long inputs, long workspace, long workspaceBytes, long stream) {
        try {
            return (int) prefill.invokeExact(dtype, yDtype, weight, x, rows, segmentOffsets, segmentTenant, segments,
                    tenantSigns, tenantScales, tenantCount, scalePerRow, accumulate, y, outputs, inputs, workspace, workspaceBytes, stream);
        } catch (Throwable e) {
            throw rethrow("bd_prefill", e);
        }
    }

    // ---- runtime: devices, memory, streams ----

    /** Number of CUDA devices; throws with the driver's reason when there are none. */
    public int deviceCount() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment count = arena.allocate(JAVA_INT);
            check((int) deviceCount.invokeExact(count), "bd_device_count");
            return count.get(JAVA_INT, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable e) {
            throw rethrow("bd_device_count", e);
        }
    }

    public void setDevice(int device) {
        try {
            check((int) setDevice.invokeExact(device), "bd_set_device(" + device + ")");
        } catch (CudaException e) {
            throw e;
        } catch (Throwable e) {
            throw rethrow("bd_set_device", e);
        }
    }

    public String deviceName(int device) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment name = arena.allocate(256);
            check((int) deviceName.invokeExact(device, name, 256L), "bd_device_name(" + device + ")");
            return name.getString(0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable e) {
            throw rethrow("bd_device_name", e);
        }
    }

    /** {free, total} bytes of the current device. */
    public long[] memoryInfo() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment free = arena.allocate(JAVA_LONG);
            MemorySegment total = arena.allocate(JAVA_LONG);
            check((int) memGetInfo.invokeExact(free, total), "bd_mem_get_info");
            return new long[] {free.get(JAVA_LONG, 0), total.get(JAVA_LONG, 0)};
        } catch (CudaException e) {
            throw e;
        } catch (Throwable e) {
            throw rethrow("bd_mem_get_info", e);
        }
    }

    /** A device allocation of {@code bytes} bytes (256-byte aligned); use {@link DeviceScope} rather than this directly. */
    public long malloc(long bytes) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment pointer = arena.allocate(ADDRESS);
            check((int) malloc.invokeExact(pointer, bytes), "bd_malloc(" + bytes + " bytes)");
            return pointer.get(JAVA_LONG, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable e) {
            throw rethrow("bd_malloc", e);
        }
    }

    public int free(long devicePointer) {
        try {
            return (int) free.invokeExact(devicePointer);
        } catch (Throwable e) {
            throw rethrow("bd_free", e);
        }
    }

    /** Page-locked host memory of {@code bytes} bytes, as a segment of that size; free it with {@link #hostFree}. */
    public MemorySegment hostAlloc(long bytes) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment pointer = arena.allocate(ADDRESS);
            check((int) hostAlloc.invokeExact(pointer, bytes), "bd_host_alloc(" + bytes + " bytes)");
            return MemorySegment.ofAddress(pointer.get(JAVA_LONG, 0)).reinterpret(bytes);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable e) {
            throw rethrow("bd_host_alloc", e);
        }
    }

    public int hostFree(MemorySegment host) {
        try {
            return (int) hostFree.invokeExact(host.address());
        } catch (Throwable e) {
            throw rethrow("bd_host_free", e);
        }
    }

    public int copyHostToDevice(long device, MemorySegment host, long bytes) {
        try {
            return (int) memcpyHostToDevice.invokeExact(device, host, bytes);
        } catch (Throwable e) {
            throw rethrow("bd_memcpy_htod", e);
        }
    }

    public int copyDeviceToHost(MemorySegment host, long device, long bytes) {
        try {
            return (int) memcpyDeviceToHost.invokeExact(host, device, bytes);
        } catch (Throwable e) {
            throw rethrow("bd_memcpy_dtoh", e);
        }
    }

    public int copyHostToDeviceAsync(long device, MemorySegment host, long bytes, long stream) {
        try {
            return (int) memcpyHostToDeviceAsync.invokeExact(device, host, bytes, stream);
        } catch (Throwable e) {
            throw rethrow("bd_memcpy_htod_async", e);
        }
    }

    public int copyDeviceToHostAsync(MemorySegment host, long device, long bytes, long stream) {
        try {
            return (int) memcpyDeviceToHostAsync.invokeExact(host, device, bytes, stream);
        } catch (Throwable e) {
            throw rethrow("bd_memcpy_dtoh_async", e);
        }
    }

    public int memset(long device, int value, long bytes, long stream) {
        try {
            return (int) memset.invokeExact(device, value, bytes, stream);
        } catch (Throwable e) {
            throw rethrow("bd_memset", e);
        }
    }

    public long streamCreate() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment stream = arena.allocate(ADDRESS);
            check((int) streamCreate.invokeExact(stream), "bd_stream_create");
            return stream.get(JAVA_LONG, 0);
        } catch (CudaException e) {
            throw e;
        } catch (Throwable e) {
            throw rethrow("bd_stream_create", e);
        }
    }

    public int streamDestroy(long stream) {
        try {
            return (int) streamDestroy.invokeExact(stream);
        } catch (Throwable e) {
            throw rethrow("bd_stream_destroy", e);
        }
    }

    public int streamSynchronize(long stream) {
        try {
            return (int) streamSynchronize.invokeExact(stream);
        } catch (Throwable e) {
            throw rethrow("bd_stream_synchronize", e);
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
