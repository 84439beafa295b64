package org.bitdelta.internal.format;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.bitdelta.BitDeltaException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Base64;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The non-weight files of a model folder (config.json, tokenizer files, generation config): recorded in the
 * delta so that merge can rebuild the fine-tune's folder. Files identical to the base's are stored as a hash.
 */
public final class ModelFiles {
    /** A tokenizer or config file larger than this is not a tokenizer or config file. */
    private static final long MAX_FILE_BYTES = 64L * 1024 * 1024;

    private ModelFiles() {
    }

    /** The non-weight regular files directly inside {@code folder}, sorted by name. */
    public static List<Path> list(Path folder) {
        if (!Files.isDirectory(folder)) {
            return List.of();
        }
        try (Stream<Path> files = Files.list(folder)) {
            return files.filter(Files::isRegularFile)
                    .filter(file -> !isWeightFile(file.getFileName().toString()))
                    .filter(file -> !file.getFileName().toString().startsWith("."))
                    .sorted().toList();
        } catch (IOException e) {
            throw new BitDeltaException(folder + ": cannot list: " + e, e);
        }
    }

    static boolean isWeightFile(String name) {
        return name.endsWith(".safetensors") || name.endsWith(".safetensors.index.json") || name.endsWith(".bin")
                || name.endsWith(".pt") || name.endsWith(".pth") || name.endsWith(".bin.index.json")
                || name.endsWith(".bitdelta");
    }

    /** JSON describing the fine-tune's files relative to the base's. */
    public static String describe(Path baseFolder, Path finetunedFolder) {
        JsonObject files = new JsonObject();
        for (Path file : list(finetunedFolder)) {
            byte[] content = read(file);
            Path baseFile = baseFolder.resolve(file.getFileName());
            JsonObject entry = new JsonObject();
            if (Files.isRegularFile(baseFile) && java.util.Arrays.equals(content, read(baseFile))) {
                entry.addProperty("same_as_base_sha256", sha256(content));
            } else {
                entry.addProperty("base64", Base64.getEncoder().encodeToString(content));
            }
            files.add(file.getFileName().toString(), entry);
        }
        return files.toString();
    }

    /** Writes the files a description names into {@code target}, taking unchanged ones from the base folder. */
    public static void restore(String description, Path baseFolder, Path target) throws IOException {
        if (description == null || description.isBlank()) {
            return;
        }
        JsonObject files = JsonParser.parseString(description).getAsJsonObject();
        for (Map.Entry<String, com.google.gson.JsonElement> entry : files.entrySet()) {
            String name = entry.getKey();
            if (name.contains("/") || name.contains("\\") || name.startsWith(".")) {
                throw new BitDeltaException("model file name '" + name + "' in the delta is not a plain file name");
            }
            JsonObject how = entry.getValue().getAsJsonObject();
            byte[] content;
            if (how.has("base64")) {
                content = Base64.getDecoder().decode(how.get("base64").getAsString());
            } else {
                Path baseFile = baseFolder.resolve(name);
                if (!Files.isRegularFile(baseFile)) {
                    throw new BitDeltaException(baseFile + ": the delta takes " + name + " from the base, but the base folder has no such file");
                }
                content = read(baseFile);
                String expected = how.get("same_as_base_sha256").getAsString();
                if (!sha256(content).equals(expected)) {
                    throw new BitDeltaException(baseFile + ": differs from the base file the delta was made with (sha256 "
                            + sha256(content) + ", expected " + expected + ")");
                }
            }
            Files.write(target.resolve(name), content);
        }
    }

    private static byte[] read(Path file) {
        try {
            if (Files.size(file) > MAX_FILE_BYTES) {
                throw new BitDeltaException(file + ": " + Files.size(file) + " bytes is too large for a model config or tokenizer file");
            }
            return Files.readAllBytes(file);
        } catch (IOException e) {
            throw new BitDeltaException(file + ": cannot read: " + e, e);
        }
    }

    static String sha256(byte[] content) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(content));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every JDK has SHA-256", e);
        }
    }
}
