package org.bitdelta.cuda.internal;

import org.bitdelta.BitDeltaException;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Locale;
import java.util.Properties;
import java.util.stream.Stream;

/**
 * Finds libbitdelta_cuda.so without loading it: {@code -Dbitdelta.cuda.library=PATH}, else the copy packaged in
 * the jar under {@code native/linux-x86_64/}, extracted once into a versioned cache folder
 * ({@code ~/.cache/bitdelta/cuda-VERSION-SHA256PREFIX/}).
 */
public final class NativeLibraryLocator {
    public static final String LIBRARY_PROPERTY = "bitdelta.cuda.library";
    static final String RESOURCE_FOLDER = "/native/linux-x86_64/";
    static final String LIBRARY_FILE = "libbitdelta_cuda.so";
    static final String PROPERTIES_FILE = "bitdelta-cuda.properties";
    /** The NVIDIA kernel driver lists one folder per GPU it drives here (also inside containers given GPUs). */
    static final Path PROC_GPUS = Path.of("/proc/driver/nvidia/gpus");
    /** WSL 2 has no /proc/driver/nvidia: its GPU is /dev/dxg, its driver library lives here. */
    static final Path WSL_DEVICE = Path.of("/dev/dxg");
    static final Path WSL_DRIVER_LIBRARY = Path.of("/usr/lib/wsl/lib/libcuda.so.1");

    private NativeLibraryLocator() {
    }

    /**
     * Null when the library can be found and a GPU is usable, else a one-line reason why not. Cheap and loads no
     * native code: files and the environment only.
     */
    public static String unavailableReason() {
        String library = libraryUnavailableReason();
        return library != null ? library : deviceUnavailableReason(PROC_GPUS, System.getenv("CUDA_VISIBLE_DEVICES"),
                Files.exists(WSL_DEVICE) && Files.exists(WSL_DRIVER_LIBRARY));
    }

    /** Null when the library can be found for this platform (whether or not a GPU is usable), else why not. */
    public static String libraryUnavailableReason() {
        return libraryUnavailableReason(System.getProperty(LIBRARY_PROPERTY));
    }

    /** As {@link #libraryUnavailableReason()}, {@code configured} standing for -Dbitdelta.cuda.library. */
    static String libraryUnavailableReason(String configured) {
        if (configured != null && !configured.isBlank()) {
            if (!Files.isRegularFile(Path.of(configured))) {
                return "-D" + LIBRARY_PROPERTY + "=" + configured + " names no file";
            }
        } else if (NativeLibraryLocator.class.getResource(RESOURCE_FOLDER + LIBRARY_FILE) == null) {
            return "this bitdelta-cuda jar has no native library (" + RESOURCE_FOLDER + LIBRARY_FILE
                    + "; it was built without nvcc) and -D" + LIBRARY_PROPERTY + " is not set";
        }
        String os = System.getProperty("os.name", "");
        String arch = System.getProperty("os.arch", "");
        if (!os.toLowerCase(Locale.ROOT).contains("linux") || !arch.matches("amd64|x86_64")) {
            return "the CUDA library is built for linux-x86_64 only, this is " + os + "-" + arch;
        }
        return null;
    }

    /**
     * Null when a GPU is there for this process, else why not.
     *
     * @param procGpus           the driver's GPU folder (one entry per GPU), normally {@link #PROC_GPUS}
     * @param cudaVisibleDevices the CUDA_VISIBLE_DEVICES variable, or null when unset
     * @param wsl                whether this is WSL 2 with a GPU (no /proc/driver/nvidia there)
     */
    static String deviceUnavailableReason(Path procGpus, String cudaVisibleDevices, boolean wsl) {
        if (cudaVisibleDevices != null) {
            String first = cudaVisibleDevices.split(",", -1)[0].trim();
            // CUDA stops at the first invalid entry: an empty list, a negative index or NoDevFiles hides every GPU.
            if (first.isEmpty() || first.startsWith("-") || first.equals("NoDevFiles")) {
                return "CUDA_VISIBLE_DEVICES=\"" + cudaVisibleDevices + "\" hides every GPU";
            }
        }
        if (wsl) {
            return null;
        }
        if (!Files.isDirectory(procGpus)) {
            return "no NVIDIA GPU: " + procGpus + " is missing (no NVIDIA kernel driver loaded)";
        }
        try (Stream<Path> gpus = Files.list(procGpus)) {
            if (gpus.findAny().isEmpty()) {
                return "no NVIDIA GPU: " + procGpus + " lists none";
            }
        } catch (IOException e) {
            return "no NVIDIA GPU found: cannot list " + procGpus + " (" + e + ")";
        }
        return null;
    }

    /** The path of the library to load: the configured one, or the jar's copy extracted into the cache. */
    public static Path locate() {
        String configured = System.getProperty(LIBRARY_PROPERTY);
        if (configured != null && !configured.isBlank()) {
            Path path = Path.of(configured).toAbsolutePath();
            if (!Files.isRegularFile(path)) {
                throw new BitDeltaException("-D" + LIBRARY_PROPERTY + "=" + configured + " names no file");
            }
            return path;
        }
        byte[] library = readResource(LIBRARY_FILE);
        if (library == null) {
            throw new BitDeltaException("this bitdelta-cuda jar has no native library " + RESOURCE_FOLDER + LIBRARY_FILE
                    + " (built without nvcc); set -D" + LIBRARY_PROPERTY + "=PATH");
        }
        String digest = sha256(library);
        Path folder = cacheRoot().resolve("cuda-" + version() + "-" + digest.substring(0, 16));
        Path target = folder.resolve(LIBRARY_FILE);
        try {
            // Reuse an earlier extraction only when its bytes are the ones in this jar (a torn or edited file is replaced).
            if (Files.isRegularFile(target) && Files.size(target) == library.length && sha256(Files.readAllBytes(target)).equals(digest)) {
                return target;
            }
            Files.createDirectories(folder);
            Path temporary = Files.createTempFile(folder, LIBRARY_FILE, ".part");
            try {
                Files.write(temporary, library);
                try {
                    Files.move(temporary, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
                } catch (AtomicMoveNotSupportedException notAtomic) {
                    Files.move(temporary, target, StandardCopyOption.REPLACE_EXISTING);
                }
            } finally {
                Files.deleteIfExists(temporary);
            }
            return target;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot extract " + LIBRARY_FILE + " into " + folder
                    + " (set -D" + LIBRARY_PROPERTY + "=PATH to use a library elsewhere)", e);
        }
    }

    /** The build's properties (CUDA version, SM list), empty when the jar has none. */
    public static Properties buildProperties() {
        Properties properties = new Properties();
        byte[] bytes = readResource(PROPERTIES_FILE);
        if (bytes != null) {
            try {
                properties.load(new java.io.ByteArrayInputStream(bytes));
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read " + PROPERTIES_FILE, e);
            }
        }
        return properties;
    }

    private static Path cacheRoot() {
        String xdg = System.getenv("XDG_CACHE_HOME");
        Path base = xdg != null && !xdg.isBlank() ? Path.of(xdg) : Path.of(System.getProperty("user.home"), ".cache");
        return base.resolve("bitdelta");
    }

    /** The artifact version: the manifest's, else Maven's pom.properties in the jar, else "dev" (classes folders). */
    private static String version() {
        String version = NativeLibraryLocator.class.getPackage().getImplementationVersion();
        if (version == null) {
            try (InputStream input = NativeLibraryLocator.class.getResourceAsStream("/META-INF/maven/org.bitdelta/bitdelta-cuda/pom.properties")) {
                if (input != null) {
                    Properties properties = new Properties();
                    properties.load(input);
                    version = properties.getProperty("version");
                }
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read the bitdelta-cuda pom.properties", e);
            }
        }
        return version == null ? "dev" : version.replaceAll("[^A-Za-z0-9._-]", "_");
    }

    private static byte[] readResource(String file) {
        try (InputStream input = NativeLibraryLocator.class.getResourceAsStream(RESOURCE_FOLDER + file)) {
            return input == null ? null : input.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read resource " + RESOURCE_FOLDER + file, e);
        }
    }

    static String sha256(byte[] bytes) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is required of every Java platform", e);
        }
    }
}
