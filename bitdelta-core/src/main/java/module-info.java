/**
 * bitdelta-core: the public API (compress, merge, the .bitdelta format, DeltaLinear), the tensor types, the
 * backend SPI, inference (org.bitdelta.inference: the decoder, perplexity) and serving (org.bitdelta.serving: the
 * engine). Everything under org.bitdelta.internal is implementation; bitdelta-cuda gets what it needs through
 * qualified exports.
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

    // Only modules with a descriptor can be named here. bitdelta-nd4j has none (ND4J's own descriptors do not
    // resolve on the module path) and runs on the class path; bitdelta-examples uses the public API alone.
    exports org.bitdelta.internal.safetensors to org.bitdelta.cuda;
    exports org.bitdelta.internal.format to org.bitdelta.cuda;
    exports org.bitdelta.internal.io to org.bitdelta.cuda;
    exports org.bitdelta.internal.cpu to org.bitdelta.cuda;
    exports org.bitdelta.internal.model to org.bitdelta.cuda;
    // jinjava calls the chat templates' global functions (TemplateFunctions) by reflection.
    exports org.bitdelta.internal.serving to jinjava;

    uses org.bitdelta.spi.TensorBackendProvider;
    // ScaleDistiller.load() finds implementations (bitdelta-nd4j) with ServiceLoader.
    uses org.bitdelta.ScaleDistiller;

    provides org.bitdelta.spi.TensorBackendProvider with
            org.bitdelta.internal.cpu.CpuBackendProviders.Vector,
            org.bitdelta.internal.cpu.CpuBackendProviders.Scalar;
}
