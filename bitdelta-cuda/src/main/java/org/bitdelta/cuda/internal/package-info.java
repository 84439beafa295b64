/**
 * Implementation of the CUDA backend, not exported: the java.lang.foreign bindings of libbitdelta_cuda.so
 * ({@code CudaLibrary} for the per-product kernels, {@code StepLibrary} for the decoder step, {@code LibraryBindings}
 * shared by both), where the library is found ({@code NativeLibraryLocator}), device memory ({@code DeviceBuffer},
 * {@code DeviceScope}), the caches keyed by weight objects ({@code WeakIdentityCache}) and the error type.
 */
package org.bitdelta.cuda.internal;
