package org.bitdelta.examples.cli;

import org.bitdelta.internal.io.AtomicFiles;
import org.bitdelta.testing.TestData;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * {@link CliTest#compressInspectMerge()} on the tinyllama pair of the data folder: a real BF16 fine-tune (12.9 MB)
 * with an untied lm_head and its own generation_config.json, merged back through the command line.
 */
class CliAcceptanceTest {

    @Test
    void compressInspectMergeTheTinyllamaPair() throws IOException {
        Path folder = Files.createTempDirectory("cli-acceptance-");
        try {
            CliTest.checkCompressInspectMerge(folder, TestData.acceptance("models/tinyllama-shakespeare-base"),
                    TestData.acceptance("models/tinyllama-shakespeare-finetuned"), 42);
        } finally {
            AtomicFiles.deleteRecursively(folder);
        }
    }
}
