package org.bitdelta.cuda;

import org.bitdelta.cuda.internal.NativeLibraryLocator;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;

/**
 * The lifecycle the GPU test classes share, registered as a static {@code @RegisterExtension} field: before the
 * class's tests it opens a {@link CudaBackend} (where a GPU is usable, else {@link #backend()} is null), before each
 * test it skips it with the reason where there is no GPU ({@link GpuTestSupport#assumeGpu}: an assumption before all
 * tests would hide them), and after the class's tests it closes the backend and whatever {@link #open} opened.
 */
final class GpuResources implements BeforeAllCallback, BeforeEachCallback, AfterAllCallback {
    private final Supplier<CudaBackend> openBackend;
    private final List<AutoCloseable> opened = new ArrayList<>();
    private CudaBackend backend;

    /** A backend on device 0 with the default KV cache precision. */
    GpuResources() {
        this(CudaBackend::new);
    }

    /** A backend on device 0 whose decoders keep 16-bit models' KV caches as {@code kvCache} says. */
    GpuResources(CudaBackend.KvCachePrecision kvCache) {
        this(() -> new CudaBackend(0, kvCache));
    }

    private GpuResources(Supplier<CudaBackend> openBackend) {
        this.openBackend = openBackend;
    }

    /** The class's backend, or null where there is no GPU (the tests are skipped then). */
    CudaBackend backend() {
        return backend;
    }

    /** What {@code open} makes, closed after the class's tests; null where there is no GPU. */
    <T extends AutoCloseable> T open(Supplier<T> open) {
        if (NativeLibraryLocator.unavailableReason() != null) {
            return null;
        }
        T resource = open.get();
        opened.add(resource);
        return resource;
    }

    @Override
    public void beforeAll(ExtensionContext context) {
        backend = open(openBackend);
        if (backend != null) {
            System.out.println("CUDA backend: " + backend.describe());
        }
    }

    @Override
    public void beforeEach(ExtensionContext context) {
        GpuTestSupport.assumeGpu();
    }

    /** Closes in the order of opening. */
    @Override
    public void afterAll(ExtensionContext context) throws Exception {
        backend = null;
        for (AutoCloseable resource : opened) {
            resource.close();
        }
        opened.clear();
    }
}
