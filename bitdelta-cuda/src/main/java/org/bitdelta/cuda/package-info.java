/**
 * The CUDA backend: {@link org.bitdelta.cuda.CudaBackend} (the per-product W1A16 kernels behind the TensorBackend
 * SPI, and GPU compression), {@link org.bitdelta.cuda.CudaDecoderDevice} (the whole decoder step on the device: paged
 * KV cache, tenants under a memory budget, CUDA graphs) and the provider that lets {@code -Dbitdelta.backend=cuda}
 * or the automatic choice find them.
 */
package org.bitdelta.cuda;
