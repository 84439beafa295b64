package org.bitdelta.cuda;

import org.bitdelta.cuda.internal.NativeLibraryLocator;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Host-only checks that run everywhere (no GPU needed): the library locator and the BF16 conversion. */
class CudaHostSideTest {
    @Test
    void configuredLibraryPathThatNamesNoFileIsReported() throws Exception {
        String previous = System.getProperty(NativeLibraryLocator.LIBRARY_PROPERTY);
        Path missing = Files.createTempDirectory("bitdelta-cuda-test").resolve("absent.so");
        try {
            System.setProperty(NativeLibraryLocator.LIBRARY_PROPERTY, missing.toString());
            String reason = NativeLibraryLocator.unavailableReason();
            assertTrue(reason != null && reason.contains("names no file") && reason.contains(missing.toString()), String.valueOf(reason));
            assertTrue(!new CudaBackendProvider().isAvailable());
        } finally {
            if (previous == null) {
                System.clearProperty(NativeLibraryLocator.LIBRARY_PROPERTY);
            } else {
                System.setProperty(NativeLibraryLocator.LIBRARY_PROPERTY, previous);
            }
            Files.deleteIfExists(missing.getParent());
        }
    }

    @Test
    void bfloat16RoundsToNearestEven() {
        assertEquals((short) 0x3F80, CudaBackend.toBfloat16(1.0f));
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties to the even mantissa (1.0).
        assertEquals((short) 0x3F80, CudaBackend.toBfloat16(1.0f + 0x1.0p-8f));
        // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: ties to even (1 + 2^-6 = 0x3F82).
        assertEquals((short) 0x3F82, CudaBackend.toBfloat16(1.0f + 3 * 0x1.0p-8f));
        assertEquals((short) 0x3F81, CudaBackend.toBfloat16(1.0f + 0x1.0p-7f + 0x1.0p-12f));
        assertEquals((short) 0xBF80, CudaBackend.toBfloat16(-1.0f));
        assertTrue(Float.isNaN(Float.intBitsToFloat((CudaBackend.toBfloat16(Float.NaN) & 0xFFFF) << 16)));
        assertEquals(Float.POSITIVE_INFINITY, Float.intBitsToFloat((CudaBackend.toBfloat16(Float.MAX_VALUE) & 0xFFFF) << 16));
    }
}
