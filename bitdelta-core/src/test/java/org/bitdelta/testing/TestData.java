package org.bitdelta.testing;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Where tests find their data: the models bundled in this module's test resources, and the shared data set
 * (../shared/data beside the checkout: the tinyllama pair, golden logits, texts, reference.json). A missing
 * shared folder fails the test with a message; it is never silently skipped.
 */
public final class TestData {
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

    /** A bundled model: stories260K, stories260K-ft-alice or stories260K-ft-shakespeare. */
    public static Path bundledModel(String name) {
        Path path = repositoryRoot().resolve("bitdelta-core/src/test/resources/models").resolve(name);
        if (!Files.isDirectory(path)) {
            throw new IllegalStateException("bundled model missing: " + path);
        }
        return path;
    }

    /** ../shared/data (or -Dbitdelta.shared.data). */
    public static Path shared() {
        String configured = System.getProperty("bitdelta.shared.data");
        Path path = configured != null ? Path.of(configured) : repositoryRoot().resolve("../shared/data");
        path = path.normalize();
        if (!Files.isDirectory(path)) {
            throw new IllegalStateException("shared test data not found at " + path
                    + ": these tests need the project's ../shared/data beside the checkout (or -Dbitdelta.shared.data=DIR)");
        }
        return path;
    }

    public static Path shared(String relative) {
        Path path = shared().resolve(relative);
        if (!Files.exists(path)) {
            throw new IllegalStateException("missing shared test file " + path);
        }
        return path;
    }
}
