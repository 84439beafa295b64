package org.bitdelta.compress;

import org.bitdelta.internal.io.AtomicFiles;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * {@link RealModelsTest} on the tinyllama pair of the data folder: the only real BF16 pair (42 projections of up
 * to 256 x 688, an untied lm_head), where every scale and sign is checked against an independent computation.
 */
class RealModelsAcceptanceTest {

    private static Path base() {
        return TestData.acceptance("models/tinyllama-shakespeare-base");
    }

    private static Path finetuned() {
        return TestData.acceptance("models/tinyllama-shakespeare-finetuned");
    }

    @Test
    void scalesAndSignsMatchAnIndependentComputation() {
        RealModelsTest.checkScalesAndSigns(base(), finetuned());
    }

    @Test
    void fileSizeIsTheSumOfItsParts() throws IOException {
        Path folder = Files.createTempDirectory("real-models-");
        try {
            RealModelsTest.checkFileSize(folder.resolve("tinyllama-shakespeare.bitdelta"), base(), finetuned());
        } finally {
            AtomicFiles.deleteRecursively(folder);
        }
    }
}
