/**
 * bitdelta-examples: the {@code bitdelta} command line (org.bitdelta.examples.cli), whole-pipeline benchmarks
 * (org.bitdelta.examples.bench) and runnable examples (org.bitdelta.examples), written against the public API of
 * bitdelta-core and bitdelta-server alone. The launcher runs it on the
 * class path. It runs on the module path too, bitdelta-cuda joining as a service provider, except {@code distill}:
 * the scale distiller (bitdelta-nd4j, ND4J) works on the class path only.
 */
module org.bitdelta.examples {
    requires org.bitdelta.core;
    requires org.bitdelta.server;
    // The serving benchmark's client.
    requires java.net.http;
    requires info.picocli;
    requires java.management;
    // The serving benchmark reads the process's CPU time (com.sun.management).
    requires jdk.management;

    // picocli fills the commands' annotated fields by reflection.
    opens org.bitdelta.examples.cli to info.picocli;
}
