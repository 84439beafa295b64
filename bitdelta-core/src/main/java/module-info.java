/**
 * bitdelta-core: the public API (compress, merge, the .bitdelta format, DeltaLinear), the tensor types, the
 * backend SPI, inference (org.bitdelta.inference: the decoder, perplexity) and serving (org.bitdelta.serving: the
 * engine). Everything under org.bitdelta.internal is implementation; sibling modules get what they need
 * through qualified exports.
 */
module org.bitdelta.core {
    requires org.slf4j;
    requires jdk.incubator.vector;
    requires com.google.gson;
    requires ai.djl.api;
    requires ai.djl.tokenizers;
    requires jinjava;
    // jinjava's EL resolver API (ELResolver.getFeatureDescriptors) names java.beans.FeatureDescriptor.
    requires java.desktop;

    exports org.bitdelta;
    exports org.bitdelta.tensor;
    exports org.bitdelta.spi;
    exports org.bitdelta.inference;
    exports org.bitdelta.serving;

    exports org.bitdelta.internal.safetensors to org.bitdelta.cuda, org.bitdelta.nd4j, org.bitdelta.examples;
    exports org.bitdelta.internal.format to org.bitdelta.cuda, org.bitdelta.nd4j, org.bitdelta.examples;
    exports org.bitdelta.internal.io to org.bitdelta.cuda, org.bitdelta.nd4j, org.bitdelta.examples;
    exports org.bitdelta.internal.cpu to org.bitdelta.cuda, org.bitdelta.nd4j, org.bitdelta.examples;
    exports org.bitdelta.internal.model to org.bitdelta.cuda, org.bitdelta.nd4j, org.bitdelta.examples;
    // jinjava calls the chat templates' global functions (TemplateFunctions) by reflection.
    exports org.bitdelta.internal.serving to jinjava;

    uses org.bitdelta.spi.TensorBackendProvider;

    provides org.bitdelta.spi.TensorBackendProvider with
            org.bitdelta.internal.cpu.CpuBackendProviders.Vector,
            org.bitdelta.internal.cpu.CpuBackendProviders.Scalar;
}
