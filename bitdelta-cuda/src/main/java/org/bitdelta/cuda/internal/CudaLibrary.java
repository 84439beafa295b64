package org.bitdelta.cuda.internal;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.nio.file.Path;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Hand-written downcalls into libbitdelta_cuda.so (bitdelta_cuda.h and bitdelta_cuda_runtime.h). One instance per
 * process: the library is loaded once into the global arena. Methods return the raw BD_* status; {@link #check}
 * turns a failure into a {@link CudaException}. Device pointers travel as {@code long}; {@code size_t} is
 * {@code long} (linux-x86_64 only).
 */
public final class CudaLibrary extends LibraryBindings {
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
        super(path);
        // bd_abi_version and the size queries do no CUDA work: "critical" skips the thread-state transition.
        abiVersion = bindCritical("bd_abi_version", FunctionDescriptor.of(JAVA_INT));
        statusString = bind("bd_status_string", FunctionDescriptor.of(ADDRESS, JAVA_INT));
        lastCudaError = bind("bd_last_cuda_error", FunctionDescriptor.of(ADDRESS));
        signsDeviceBytes = bindCritical("bd_signs_device_bytes", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG));
        repackSigns = bind("bd_repack_signs", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        unpackSigns = bind("bd_unpack_signs", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        compressWorkspaceBytes = bindCritical("bd_compress_workspace_bytes", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG));
        compress = bind("bd_compress", FunctionDescriptor.of(JAVA_INT,
                JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG));
        // Sets a process-wide int, no CUDA work.
        debugSetDecodeVariant = bindCritical("bd_debug_set_decode_variant", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
        decodeWorkspaceBytes = bindCritical("bd_decode_workspace_bytes", FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        decode = bind("bd_decode", FunctionDescriptor.of(JAVA_INT,
                JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG));
        prefillWorkspaceBytes = bindCritical("bd_prefill_workspace_bytes",
                FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        prefill = bind("bd_prefill", FunctionDescriptor.of(JAVA_INT,
                JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_LONG));
        deviceCount = bind("bd_device_count", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        setDevice = bind("bd_set_device", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
        deviceName = bind("bd_device_name", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_LONG));
        memGetInfo = bind("bd_mem_get_info", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        malloc = bind("bd_malloc", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        free = bind("bd_free", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        hostAlloc = bind("bd_host_alloc", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        hostFree = bind("bd_host_free", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        memcpyHostToDevice = bind("bd_memcpy_htod", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG));
        memcpyDeviceToHost = bind("bd_memcpy_dtoh", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
        memcpyHostToDeviceAsync = bind("bd_memcpy_htod_async", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG, JAVA_LONG));
        memcpyDeviceToHostAsync = bind("bd_memcpy_dtoh_async", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        memset = bind("bd_memset", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG));
        streamCreate = bind("bd_stream_create", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        streamDestroy = bind("bd_stream_destroy", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        streamSynchronize = bind("bd_stream_synchronize", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        requireVersion("ABI version", abiVersion(), EXPECTED_ABI_VERSION);
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

    // ---- status and errors ----

    /** A {@link CudaException} naming {@code what}, the status text and, for BD_ERR_CUDA, the CUDA error. */
    @Override
    public CudaException failure(int status, String what) {
        String detail = statusString(status);
        if (status == ERROR_CUDA) {
            detail += ": " + lastCudaError();
        }
        return new CudaException(what + " failed with status " + status + " (" + detail + ")", status);
    }

    public int abiVersion() {
        return call("bd_abi_version", () -> (int) abiVersion.invokeExact());
    }

    public String statusString(int status) {
        return callForString("bd_status_string", () -> (MemorySegment) statusString.invokeExact(status));
    }

    public String lastCudaError() {
        return callForString("bd_last_cuda_error", () -> (MemorySegment) lastCudaError.invokeExact());
    }

    // ---- kernels ----

    public long signsDeviceBytes(long rows, long columns) {
        return callLong("bd_signs_device_bytes", () -> (long) signsDeviceBytes.invokeExact(rows, columns));
    }

    public int repackSigns(long devicePacked, long deviceSigns, long rows, long columns, long stream) {
        return call("bd_repack_signs", () -> (int) repackSigns.invokeExact(devicePacked, deviceSigns, rows, columns, stream));
    }

    public int unpackSigns(long deviceSigns, long devicePacked, long rows, long columns, long stream) {
        return call("bd_unpack_signs", () -> (int) unpackSigns.invokeExact(deviceSigns, devicePacked, rows, columns, stream));
    }

    /** Device bytes of bd_compress's workspace for a [rows, columns] matrix (0 for rows <= 0). */
    public long compressWorkspaceBytes(long rows, long columns) {
        return callLong("bd_compress_workspace_bytes", () -> (long) compressWorkspaceBytes.invokeExact(rows, columns));
    }

    /**
     * bd_compress: signs (U8 [rows, ceil(columns/8)], host/file layout) and mean |ft − base| scales of a F16/BF16
     * pair, bit-identical to the CPU compressor. Any of rowScales (F32 [rows]), matrixScale (F32 [1]) and rowSums
     * (F64 [rows]) may be 0. Device pointers; enqueued on {@code stream}.
     */
    public int compress(int dtype, long base, long finetuned, long rows, long columns, long signsPacked, long rowScales,
                        long matrixScale, long rowSums, long workspace, long workspaceBytes, long stream) {
        return call("bd_compress", () -> (int) compress.invokeExact(dtype, base, finetuned, rows, columns, signsPacked, rowScales,
                matrixScale, rowSums, workspace, workspaceBytes, stream));
    }

    /**
     * Forces a decode kernel version process-wide ({@link #DECODE_AUTO} .. {@link #DECODE_BINARY_LEAN}); for
     * benchmarks and checks only, not thread-safe. Returns {@link #ERROR_NOT_BUILT} for a form the library was built
     * without (the experiment-only M32 forms in a release library).
     */
    public int debugSetDecodeVariant(int variant) {
        return call("bd_debug_set_decode_variant", () -> (int) debugSetDecodeVariant.invokeExact(variant));
    }

    public long decodeWorkspaceBytes(long outputs, long inputs, long rows) {
        return callLong("bd_decode_workspace_bytes", () -> (long) decodeWorkspaceBytes.invokeExact(outputs, inputs, rows));
    }

    public int decode(int dtype, int yDtype, long weight, long x, long rowTenant, long rows, long tenantSigns, long tenantScales,
                      long tenantCount, int scalePerRow, long y, long outputs, long inputs, long workspace, long workspaceBytes, long stream) {
        return call("bd_decode", () -> (int) decode.invokeExact(dtype, yDtype, weight, x, rowTenant, rows, tenantSigns,
                tenantScales, tenantCount, scalePerRow, y, outputs, inputs, workspace, workspaceBytes, stream));
    }

    public long prefillWorkspaceBytes(long outputs, long inputs, long rows, long segments) {
        return callLong("bd_prefill_workspace_bytes", () -> (long) prefillWorkspaceBytes.invokeExact(outputs, inputs, rows,
                segments));
    }

    public int prefill(int dtype, int yDtype, long weight, long x, long rows, long segmentOffsets, long segmentTenant, long segments,
                       long tenantSigns, long tenantScales, long tenantCount, int scalePerRow, int accumulate, long y,
                       long outputs, long inputs, long workspace, long workspaceBytes, long stream) {
        return call("bd_prefill", () -> (int) prefill.invokeExact(dtype, yDtype, weight, x, rows, segmentOffsets, segmentTenant,
                segments, tenantSigns, tenantScales, tenantCount, scalePerRow, accumulate, y, outputs, inputs, workspace,
                workspaceBytes, stream));
    }

    // ---- runtime: devices, memory, streams ----

    /** Number of CUDA devices; throws with the driver's reason when there are none. */
    public int deviceCount() {
        return callWithOut("bd_device_count", JAVA_INT, count -> {
            check((int) deviceCount.invokeExact(count), "bd_device_count");
            return count.get(JAVA_INT, 0);
        });
    }

    public void setDevice(int device) {
        check(call("bd_set_device", () -> (int) setDevice.invokeExact(device)), "bd_set_device(" + device + ")");
    }

    /**
     * Makes {@code device} current for this thread's CUDA calls. cudaSetDevice is per thread; device 0 is every
     * thread's default, so only other devices need the call.
     */
    public void selectDevice(int device) {
        if (device != 0) {
            setDevice(device);
        }
    }

    public String deviceName(int device) {
        return callWithOut("bd_device_name", MemoryLayout.sequenceLayout(256, JAVA_BYTE), name -> {
            check((int) deviceName.invokeExact(device, name, 256L), "bd_device_name(" + device + ")");
            return name.getString(0);
        });
    }

    /** {free, total} bytes of the current device. */
    public long[] memoryInfo() {
        return callWithOut("bd_mem_get_info", MemoryLayout.sequenceLayout(2, JAVA_LONG), info -> {
            check((int) memGetInfo.invokeExact(info, info.asSlice(8)), "bd_mem_get_info");
            return new long[] {info.get(JAVA_LONG, 0), info.get(JAVA_LONG, 8)};
        });
    }

    /** A device allocation of {@code bytes} bytes (256-byte aligned); use {@link DeviceScope} rather than this directly. */
    public long malloc(long bytes) {
        return callForPointer("bd_malloc", "bd_malloc(" + bytes + " bytes)", pointer -> (int) malloc.invokeExact(pointer, bytes));
    }

    public int free(long devicePointer) {
        return call("bd_free", () -> (int) free.invokeExact(devicePointer));
    }

    /** Page-locked host memory of {@code bytes} bytes, as a segment of that size; free it with {@link #hostFree}. */
    public MemorySegment hostAlloc(long bytes) {
        long address = callForPointer("bd_host_alloc", "bd_host_alloc(" + bytes + " bytes)",
                pointer -> (int) hostAlloc.invokeExact(pointer, bytes));
        return MemorySegment.ofAddress(address).reinterpret(bytes);
    }

    public int hostFree(MemorySegment host) {
        return call("bd_host_free", () -> (int) hostFree.invokeExact(host.address()));
    }

    public int copyHostToDevice(long device, MemorySegment host, long bytes) {
        return call("bd_memcpy_htod", () -> (int) memcpyHostToDevice.invokeExact(device, host, bytes));
    }

    public int copyDeviceToHost(MemorySegment host, long device, long bytes) {
        return call("bd_memcpy_dtoh", () -> (int) memcpyDeviceToHost.invokeExact(host, device, bytes));
    }

    public int copyHostToDeviceAsync(long device, MemorySegment host, long bytes, long stream) {
        return call("bd_memcpy_htod_async", () -> (int) memcpyHostToDeviceAsync.invokeExact(device, host, bytes, stream));
    }

    public int copyDeviceToHostAsync(MemorySegment host, long device, long bytes, long stream) {
        return call("bd_memcpy_dtoh_async", () -> (int) memcpyDeviceToHostAsync.invokeExact(host, device, bytes, stream));
    }

    public int memset(long device, int value, long bytes, long stream) {
        return call("bd_memset", () -> (int) memset.invokeExact(device, value, bytes, stream));
    }

    public long streamCreate() {
        return callForPointer("bd_stream_create", "bd_stream_create", stream -> (int) streamCreate.invokeExact(stream));
    }

    public int streamDestroy(long stream) {
        return call("bd_stream_destroy", () -> (int) streamDestroy.invokeExact(stream));
    }

    public int streamSynchronize(long stream) {
        return call("bd_stream_synchronize", () -> (int) streamSynchronize.invokeExact(stream));
    }
}
