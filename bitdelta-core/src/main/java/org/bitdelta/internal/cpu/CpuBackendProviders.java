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

    /**
     * The Vector API backend, highest CPU priority. Available when the JVM was started with
     * {@code --add-modules jdk.incubator.vector}; checking the boot layer loads none of the module's classes.
     */
    public static final class Vector implements TensorBackendProvider {
        static final String MODULE = "jdk.incubator.vector";

        public String name() {
            return "cpu";
        }

        public int priority() {
            return 100;
        }

        public boolean isAvailable() {
            return ModuleLayer.boot().findModule(MODULE).isPresent();
        }

        public String unavailableReason() {
            return isAvailable() ? "available" : "module " + MODULE + " is not in the boot layer: start the JVM with --add-modules "
                    + MODULE + " (or use -Dbitdelta.backend=cpu-scalar)";
        }

        public TensorBackend create() {
            if (!isAvailable()) {
                throw new IllegalStateException("the cpu backend is not available: " + unavailableReason());
            }
            return new VectorCpuBackend();
        }
    }
}
