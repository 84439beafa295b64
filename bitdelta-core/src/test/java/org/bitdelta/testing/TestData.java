package org.bitdelta.testing;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Where tests find their data.
 * <ul>
 * <li>Bundled: everything the default suite ({@code mvn test}) reads lives in bitdelta-core's test resources
 * (the stories260K family and mistral-tiny, their golden logits, small texts, a copy of reference.json).</li>
 * <li>Acceptance: the {@code *AcceptanceTest} classes, run only by {@code mvn test -Pacceptance}, also read the
 * project's data folder (the 26 MB tinyllama pair, its golden logits, the large texts, reference.json), found
 * through the system property {@value #ACCEPTANCE_PROPERTY} (Maven passes it on; its default is
 * {@code ../shared/data} beside the checkout). A missing folder or file fails the test with a message naming the
 * property and the path; it is never skipped.</li>
 * </ul>
 */
public final class TestData {
    /** The system property (and Maven property) naming the acceptance suite's data folder. */
    public static final String ACCEPTANCE_PROPERTY = "bitdelta.acceptance.data";

    private TestData() {
    }

    public static Path repositoryRoot() {
        String root = System.getProperty("bitdelta.repository.root");
        if (root != null) {
            return Path.of(root);
        }
        Path here = Path.of("").toAbsolutePath();
        while (here != null && !Files.exists(here.resolve("bitdelta-core"))) {
            here = here.getParent();
        }
        if (here == null) {
            throw new IllegalStateException("cannot find the repository root from " + Path.of("").toAbsolutePath());
        }
        return here;
    }

    /** bitdelta-core/src/test/resources, where the bundled test data lives. */
    public static Path bundledResources() {
        return repositoryRoot().resolve("bitdelta-core/src/test/resources");
    }

    /** A bundled file or folder, relative to bitdelta-core/src/test/resources (e.g. "text/alice.heldout.txt"). */
    public static Path bundled(String relative) {
        Path path = bundledResources().resolve(relative);
        if (!Files.exists(path)) {
            throw new IllegalStateException("bundled test data missing: " + path);
        }
        return path;
    }

    /** A bundled model: stories260K, stories260K-ft-alice, stories260K-ft-shakespeare or mistral-tiny. */
    public static Path bundledModel(String name) {
        Path path = bundledResources().resolve("models").resolve(name);
        if (!Files.isDirectory(path)) {
            throw new IllegalStateException("bundled model missing: " + path);
        }
        return path;
    }

    /** A bundled text of bitdelta-core/src/test/resources/text. */
    public static Path bundledText(String fileName) {
        return bundled("text/" + fileName);
    }

    /**
     * The acceptance suite's data folder: -D{@value #ACCEPTANCE_PROPERTY}=DIR, else ../shared/data beside the
     * checkout. Fails (never skips) when it is not there.
     */
    public static Path acceptance() {
        String configured = System.getProperty(ACCEPTANCE_PROPERTY);
        Path path = (configured != null && !configured.isBlank() ? Path.of(configured) : repositoryRoot().resolve("../shared/data"))
                .toAbsolutePath().normalize();
        if (!Files.isDirectory(path)) {
            throw new IllegalStateException("acceptance test data folder not found: " + path + " (system property "
                    + ACCEPTANCE_PROPERTY + (configured != null ? "=" + configured : " not set; default ../shared/data beside the checkout")
                    + "). The acceptance suite (mvn test -Pacceptance) needs the project's data folder (models/tinyllama-shakespeare-*, "
                    + "golden/, text/, reference.json): pass -D" + ACCEPTANCE_PROPERTY + "=DIR");
        }
        return path;
    }

    /** A file or folder of the acceptance data folder (e.g. "models/tinyllama-shakespeare-base"); fails when missing. */
    public static Path acceptance(String relative) {
        Path folder = acceptance();
        Path path = folder.resolve(relative);
        if (!Files.exists(path)) {
            throw new IllegalStateException("acceptance test data missing: " + path + " (" + relative + " under the folder of system property "
                    + ACCEPTANCE_PROPERTY + "=" + folder + ")");
        }
        return path;
    }
}
