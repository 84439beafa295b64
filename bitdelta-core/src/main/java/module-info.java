/**
 * bitdelta-core: the public API (compress, merge, the .bitdelta format, DeltaLinear), the tensor types, the
 * backend SPI, and inference (org.bitdelta.inference: the decoder, perplexity, generation). Everything under org.bitdelta.internal is implementation; sibling modules get what they need
 * through qualified exports.
 */
module org.bitdelta.core {
    requires org.slf4j;
    requires jdk.incubator.vector;
    requires com.google.gson;
    requires ai.djl.api;
    requires ai.djl.tokenizers;

    exports org.bitdelta;
    exports org.bitdelta.tensor;
    exports org.bitdelta.spi;
    exports org.bitdelta.inference;

    exports org.bitdelta.internal.safetensors to org.bitdelta.cuda, org.bitdelta.nd4j, org.bitdelta.examples;
    exports org.bitdelta.internal.format to org.bitdelta.cuda, org.bitdelta.nd4j, org.bitdelta.examples;
    exports org.bitdelta.internal.io to org.bitdelta.cuda, org.bitdelta.nd4j, org.bitdelta.examples;
    exports org.bitdelta.internal.cpu to org.bitdelta.cuda, org.bitdelta.nd4j, org.bitdelta.examples;
    exports org.bitdelta.internal.model to org.bitdelta.cuda, org.bitdelta.nd4j, org.bitdelta.examples;

    uses org.bitdelta.spi.TensorBackendProvider;

    provides org.bitdelta.spi.TensorBackendProvider with
            org.bitdelta.internal.cpu.CpuBackendProviders.Vector,
            org.bitdelta.internal.cpu.CpuBackendProviders.Scalar;
}
