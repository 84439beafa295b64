/**
 * bitdelta-examples: the {@code bitdelta} command line (org.bitdelta.examples.cli) and whole-pipeline benchmarks
 * (org.bitdelta.examples.bench), written against bitdelta-core's public API alone. The launcher runs it on the
 * class path. It runs on the module path too, bitdelta-cuda joining as a service provider, except {@code distill}:
 * the scale distiller (bitdelta-nd4j, ND4J) works on the class path only.
 */
module org.bitdelta.examples {
    requires org.bitdelta.core;
    requires info.picocli;
    requires java.management;

    // picocli fills the commands' annotated fields by reflection.
    opens org.bitdelta.examples.cli to info.picocli;
}
