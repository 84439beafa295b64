package org.bitdelta.cuda;

import org.bitdelta.cuda.internal.CudaLibrary;
import org.bitdelta.cuda.internal.NativeLibraryLocator;
import org.bitdelta.cuda.internal.StepLibrary;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The library's calls that touch no GPU, wherever the library was built (also on a machine without a GPU): its
 * ABI, status strings, sizes, and that the packaged library is the release build (no experiment forms).
 */
class CudaLibraryHostTest {
    private static CudaLibrary library;

    @BeforeAll
    static void load() {
        String reason = NativeLibraryLocator.libraryUnavailableReason();
        Assumptions.assumeTrue(reason == null, () -> "SKIPPED, no CUDA library here: " + reason);
        library = CudaLibrary.loadForHostCalls();
        System.out.println("CUDA library: " + library.path());
    }

    @Test
    void abiAndStatusStrings() {
        assertEquals(CudaLibrary.EXPECTED_ABI_VERSION, library.abiVersion());
        assertTrue(library.statusString(CudaLibrary.OK).equals("ok"), library.statusString(CudaLibrary.OK));
        assertTrue(library.statusString(CudaLibrary.ERROR_NOT_BUILT).contains("built without"),
                library.statusString(CudaLibrary.ERROR_NOT_BUILT));
        assertTrue(library.statusString(99).contains("unknown"), library.statusString(99));
    }

    @Test
    void sizesFollowTheHeader() {
        // ceil(M/16) * ceil(K/64) * 128 bytes of device-layout signs.
        assertEquals(2 * 2 * 128, library.signsDeviceBytes(17, 65));
        assertEquals(128, library.signsDeviceBytes(1, 1));
        // 64-byte header, row flags (4 M rounded up to 16), row sums (8 M).
        assertEquals(64 + 16 + 24, library.compressWorkspaceBytes(3, 1000));
        assertEquals(64 + 4096 * 4 + 4096 * 8, library.compressWorkspaceBytes(4096, 11008));
        assertEquals(0, library.compressWorkspaceBytes(0, 5));
    }

    @Test
    void aSplitFormBeyondTheProductsThirtyTwoBitOffsetsIsRefusedByName() {
        StepLibrary step = StepLibrary.load(library);
        // Stand-in device addresses (never dereferenced: the arguments are refused before any launch). 2^20 rows of K
        // 4096 in F16 parts: 2^33 16-bit elements, beyond the kernel's 32-bit offsets.
        long address = 1L << 20;
        int status = step.projectTc(address, 16, address, CudaLibrary.DTYPE_F16, address, address, address, address, 1L << 20,
                address, 4096, 4096, false, 0);
        assertEquals(CudaLibrary.ERROR_BAD_SHAPE, status);
        String message = step.lastError();
        assertTrue(message.contains("capacity 1048576 rows and K 4096") && message.contains("fewer rows per step"), message);
    }

    @Test
    void thePackagedLibraryHasOnlyTheAutomaticChoicesKernels() {
        boolean configured = System.getProperty(NativeLibraryLocator.LIBRARY_PROPERTY) != null;
        try {
            for (int variant : new int[] {CudaLibrary.DECODE_AUTO, CudaLibrary.DECODE_SPLIT_K, CudaLibrary.DECODE_PIPELINED,
                    CudaLibrary.DECODE_BINARY, CudaLibrary.DECODE_BINARY_LEAN}) {
                assertEquals(CudaLibrary.OK, library.debugSetDecodeVariant(variant), "variant " + variant);
            }
            for (int variant : new int[] {CudaLibrary.DECODE_PIPELINED_M32, CudaLibrary.DECODE_BINARY_M32}) {
                int status = library.debugSetDecodeVariant(variant);
                if (configured) {
                    // -Dbitdelta.cuda.library may name the experiment build: either answer is consistent.
                    assertTrue(status == CudaLibrary.OK || status == CudaLibrary.ERROR_NOT_BUILT, "variant " + variant + ": " + status);
                } else {
                    assertEquals(CudaLibrary.ERROR_NOT_BUILT, status, "the packaged (release) library has no variant " + variant);
                }
            }
            assertEquals(CudaLibrary.ERROR_BAD_SHAPE, library.debugSetDecodeVariant(7));
            assertEquals(CudaLibrary.ERROR_BAD_SHAPE, library.debugSetDecodeVariant(-1));
        } finally {
            assertEquals(CudaLibrary.OK, library.debugSetDecodeVariant(CudaLibrary.DECODE_AUTO));
        }
    }
}
