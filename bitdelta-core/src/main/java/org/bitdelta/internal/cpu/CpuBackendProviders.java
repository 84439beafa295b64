package org.bitdelta.internal.cpu;

import org.bitdelta.spi.TensorBackend;
import org.bitdelta.spi.TensorBackendProvider;

/** ServiceLoader entry points for the CPU backends. */
public final class CpuBackendProviders {
    private CpuBackendProviders() {
    }

    /** The scalar oracle, lowest priority: chosen only by name. */
    public static final class Scalar implements TensorBackendProvider {
        public String name() {
            return "cpu-scalar";
        }

        public int priority() {
            return 0;
        }

        public boolean isAvailable() {
            return true;
        }

        public TensorBackend create() {
            return new ScalarCpuBackend();
        }
    }
}
