package org.bitdelta.cuda;

import org.bitdelta.spi.TensorBackendProvider;
import org.bitdelta.spi.TensorBackends;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Runs everywhere: the provider is found, ranks above the CPU, and explains itself when unavailable. */
class CudaBackendProviderTest {
    @Test
    void providerIsFoundAndConsistent() {
        TensorBackendProvider provider = TensorBackends.providers().stream().filter(candidate -> candidate.name().equals("cuda"))
                .findFirst().orElseThrow(() -> new AssertionError("ServiceLoader does not list the cuda provider"));
        assertEquals(200, provider.priority());
        String reason = provider.unavailableReason();
        System.out.println("cuda provider: available=" + provider.isAvailable() + ", reason: " + reason);
        if (provider.isAvailable()) {
            assertEquals("available", reason);
            assertEquals("cuda", TensorBackends.providers().stream().filter(TensorBackendProvider::isAvailable).findFirst().orElseThrow().name(),
                    "an available cuda backend should win by priority");
        } else {
            assertFalse(reason.isBlank());
            assertTrue(reason.contains("GPU") || reason.contains("library") || reason.contains("linux-x86_64"), reason);
            assertFalse(reason.contains("\n"), "a one-line reason: " + reason);
        }
    }
}
