/**
 * bitdelta-cuda: the CUDA backend (W1A16 kernels of libbitdelta_cuda.so through java.lang.foreign). Users reach it
 * through the TensorBackend SPI ({@code -Dbitdelta.backend=cuda}); org.bitdelta.cuda.internal is implementation.
 */
module org.bitdelta.cuda {
    requires org.bitdelta.core;

    exports org.bitdelta.cuda;

    provides org.bitdelta.spi.TensorBackendProvider with org.bitdelta.cuda.CudaBackendProvider;
}
