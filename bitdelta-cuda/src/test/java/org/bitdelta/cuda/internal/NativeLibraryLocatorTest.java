package org.bitdelta.cuda.internal;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The availability answer without a GPU: the driver's GPU folder and CUDA_VISIBLE_DEVICES are injected. */
class NativeLibraryLocatorTest {
    @TempDir
    Path folder;

    private Path gpus(int count) throws Exception {
        Path gpus = Files.createDirectories(folder.resolve("gpus"));
        for (int i = 0; i < count; i++) {
            Files.createDirectories(gpus.resolve("0000:0" + i + ":00.0"));
        }
        return gpus;
    }

    private static void assertReason(String reason, String... fragments) {
        assertTrue(reason != null, "expected a reason, got available");
        for (String fragment : fragments) {
            assertTrue(reason.contains(fragment), "reason '" + reason + "' lacks '" + fragment + "'");
        }
        assertTrue(!reason.contains("\n"), "a reason is one line: " + reason);
    }

    @Test
    void aListedGpuIsUsable() throws Exception {
        assertNull(NativeLibraryLocator.deviceUnavailableReason(gpus(1), null, false));
        assertNull(NativeLibraryLocator.deviceUnavailableReason(gpus(2), "1", false));
        assertNull(NativeLibraryLocator.deviceUnavailableReason(gpus(2), "GPU-5e1a0c3b-0000-4b6c-9a53-1b2f1a2b3c4d", false));
        assertNull(NativeLibraryLocator.deviceUnavailableReason(gpus(2), "0,-1", false), "CUDA stops at -1, after GPU 0");
    }

    @Test
    void noDriverFolderOrNoGpuInItIsReported() throws Exception {
        Path missing = folder.resolve("absent");
        assertReason(NativeLibraryLocator.deviceUnavailableReason(missing, null, false), "no NVIDIA GPU", missing.toString(), "missing");
        assertReason(NativeLibraryLocator.deviceUnavailableReason(gpus(0), null, false), "no NVIDIA GPU", "lists none");
    }

    @Test
    void cudaVisibleDevicesCanHideEveryGpu() throws Exception {
        Path gpus = gpus(1);
        for (String hiding : new String[] {"", " ", "-1", "-1,0", "NoDevFiles"}) {
            assertReason(NativeLibraryLocator.deviceUnavailableReason(gpus, hiding, false), "CUDA_VISIBLE_DEVICES=\"" + hiding + "\"",
                    "hides every GPU");
        }
    }

    @Test
    void wslNeedsNoDriverFolderButHonoursCudaVisibleDevices() {
        Path missing = folder.resolve("absent");
        assertNull(NativeLibraryLocator.deviceUnavailableReason(missing, null, true));
        assertReason(NativeLibraryLocator.deviceUnavailableReason(missing, "-1", true), "hides every GPU");
    }

    @Test
    void aConfiguredLibraryPathThatNamesNoFileIsReported() {
        Path missing = folder.resolve("absent.so");
        assertReason(NativeLibraryLocator.libraryUnavailableReason(missing.toString()), "names no file", missing.toString());
    }
}
