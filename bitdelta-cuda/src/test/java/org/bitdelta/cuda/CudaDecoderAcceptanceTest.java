package org.bitdelta.cuda;

import org.bitdelta.internal.cpu.VectorCpuBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The GPU decoder on the tinyllama pair of the project's data folder ({@code -Dbitdelta.acceptance.data=DIR}, default
 * {@code ../shared/data} beside the checkout; a BF16 Llama of 6 layers, hidden 256, 8 query and 4 KV heads of 32,
 * vocabulary 4096, untied), checked as {@link CudaDecoderModelTest} checks the repository's fixtures: the base with
 * three synthetic tenants and the fine-tune compressed as a tenant, mixed in one batch, then the fine-tune on its own,
 * each against the CPU backend (greedy and sampled generations of 64 tokens identical, perplexities within 1e-4, F32
 * KV caches on both). Part of the acceptance suite ({@code mvn test -Pacceptance}); skipped with the reason where no
 * GPU is usable, failed with the folder named where the data is missing.
 */
class CudaDecoderAcceptanceTest {
    static final String DATA_PROPERTY = "bitdelta.acceptance.data";
    @RegisterExtension
    static final GpuResources resources = new GpuResources(CudaBackend.KvCachePrecision.F32);

    @Test
    void tinyllamaPairMatchesTheCpu() {
        Path models = dataFolder().resolve("models");
        Path base = models.resolve("tinyllama-shakespeare-base");
        Path fineTune = models.resolve("tinyllama-shakespeare-finetuned");
        for (Path folder : new Path[] {base, fineTune}) {
            if (!Files.isRegularFile(folder.resolve("config.json"))) {
                throw new IllegalStateException("acceptance test data missing: " + folder + " (the tinyllama pair under -D" + DATA_PROPERTY + ")");
            }
        }
        VectorCpuBackend cpu = resources.open(VectorCpuBackend::new);
        long seed = DecoderTestSupport.seed("tinyllama pair");
        CudaDecoderModelTest.checkDecoders(cpu, resources.backend(), base, seed, "tinyllama", fineTune);
        CudaDecoderModelTest.checkDecoders(cpu, resources.backend(), fineTune, seed + 1, "tinyllama-ft", null);
    }

    /** The data folder: the property, else ../shared/data beside the repository root. */
    private static Path dataFolder() {
        String configured = System.getProperty(DATA_PROPERTY);
        Path folder = configured != null && !configured.isBlank() ? Path.of(configured)
                : DecoderTestSupport.repositoryRoot().resolve("../shared/data");
        folder = folder.toAbsolutePath().normalize();
        if (!Files.isDirectory(folder)) {
            throw new IllegalStateException("acceptance test data folder not found: " + folder + " (system property " + DATA_PROPERTY
                    + (configured != null ? "=" + configured : " not set; default ../shared/data beside the checkout") + ")");
        }
        return folder;
    }
}
