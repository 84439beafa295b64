package org.bitdelta.cuda;

import org.bitdelta.cuda.internal.NativeLibraryLocator;
import org.bitdelta.spi.TensorBackend;
import org.bitdelta.spi.TensorBackendProvider;

/**
 * ServiceLoader entry point of the CUDA backend ({@code -Dbitdelta.backend=cuda}). Priority 200: above the CPU
 * backends, so it wins wherever it is available. {@link #isAvailable()} looks for the packaged (or configured)
 * library and a usable GPU (listed by the NVIDIA driver under /proc/driver/nvidia/gpus, not hidden by
 * CUDA_VISIBLE_DEVICES) without loading any native code; {@link #unavailableReason()} says in one line why not.
 */
public final class CudaBackendProvider implements TensorBackendProvider {
    public static final String NAME = "cuda";

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public int priority() {
        return 200;
    }

    @Override
    public boolean isAvailable() {
        return NativeLibraryLocator.unavailableReason() == null;
    }

    @Override
    public String unavailableReason() {
        String reason = NativeLibraryLocator.unavailableReason();
        return reason == null ? "available" : reason;
    }

    @Override
    public TensorBackend create() {
        return new CudaBackend();
    }
}
