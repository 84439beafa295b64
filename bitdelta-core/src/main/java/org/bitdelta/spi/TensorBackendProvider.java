package org.bitdelta.spi;

/**
 * Found through {@link java.util.ServiceLoader}; must be cheap to construct: no native code is loaded until
 * {@link #create()}.
 */
public interface TensorBackendProvider {
    /** The name users pass to {@code -Dbitdelta.backend}, e.g. "cpu" or "cuda". */
    String name();

    /** Higher wins when no backend is named. */
    int priority();

    /** Whether {@link #create()} can succeed here (a GPU and driver present, ...); must not load native code. */
    boolean isAvailable();

    /** A one-line reason when {@link #isAvailable()} is false. */
    default String unavailableReason() {
        return "not available";
    }

    TensorBackend create();
}
