/**
 * Public API for backend implementers: the {@link org.bitdelta.spi.TensorBackend} service that runs the products
 * and the decoder step on a device (CPU, CUDA), found with ServiceLoader, and {@link org.bitdelta.spi.TensorBackends},
 * which chooses one by name or the best available.
 */
package org.bitdelta.spi;
