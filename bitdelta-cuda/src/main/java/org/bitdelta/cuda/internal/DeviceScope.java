package org.bitdelta.cuda.internal;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Owns device allocations the way an {@link java.lang.foreign.Arena} owns native memory: everything allocated
 * through it is freed by {@link #close()}, once; single buffers may be released earlier with {@link #release}.
 * Not thread-safe: the owner serializes access.
 */
public final class DeviceScope implements AutoCloseable {
    private final CudaLibrary library;
    private final Map<Long, DeviceBuffer> live = new LinkedHashMap<>();
    private boolean closed;

    public DeviceScope(CudaLibrary library) {
        this.library = library;
    }

    /** A new buffer of {@code bytes} bytes (at least 1, 256-byte aligned); {@code purpose} names it in errors. */
    public DeviceBuffer allocate(long bytes, String purpose) {
        if (closed) {
            throw new IllegalStateException("device scope is closed; cannot allocate " + purpose);
        }
        if (bytes < 0) {
            throw new IllegalArgumentException(purpose + ": negative size " + bytes);
        }
        long address;
        try {
            address = library.malloc(Math.max(bytes, 1));
        } catch (CudaException e) {
            throw new CudaException("allocating " + bytes + " bytes of device memory for " + purpose + ": " + e.getMessage(), e.status());
        }
        DeviceBuffer buffer = new DeviceBuffer(address, bytes, purpose);
        live.put(address, buffer);
        return buffer;
    }

    /** Frees one buffer of this scope now. */
    public void release(DeviceBuffer buffer) {
        if (live.remove(buffer.address()) == null) {
            throw new IllegalArgumentException(buffer.purpose() + " is not a live buffer of this scope");
        }
        library.check(library.free(buffer.address()), "freeing " + buffer.purpose() + " (" + buffer.bytes() + " bytes)");
    }

    /** Bytes currently held. */
    public long liveBytes() {
        return live.values().stream().mapToLong(DeviceBuffer::bytes).sum();
    }

    public int liveBuffers() {
        return live.size();
    }

    /** Frees every buffer; the first failure is thrown after all were tried, later ones attached as suppressed. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        List<DeviceBuffer> buffers = new ArrayList<>(live.values());
        live.clear();
        CudaException failure = null;
        for (DeviceBuffer buffer : buffers) {
            int status = library.free(buffer.address());
            if (status != CudaLibrary.OK) {
                CudaException error = library.failure(status, "freeing " + buffer.purpose() + " (" + buffer.bytes() + " bytes)");
                if (failure == null) {
                    failure = error;
                } else {
                    failure.addSuppressed(error);
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
    }
}
