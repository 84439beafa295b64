package org.bitdelta.internal.safetensors;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import org.bitdelta.BitDeltaException;
import org.bitdelta.tensor.Tensor;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The weights of a Hugging Face model folder: {@code model.safetensors}, or the shards listed in
 * {@code model.safetensors.index.json}, each mapped once. Also accepts a single .safetensors file.
 */
public final class ModelWeights implements AutoCloseable {
    public static final String SINGLE_FILE = "model.safetensors";
    public static final String INDEX_FILE = "model.safetensors.index.json";

    private final Path location;
    private final List<SafetensorsFile> files;
    private final Map<String, SafetensorsFile> fileOfTensor;

    private ModelWeights(Path location, List<SafetensorsFile> files, Map<String, SafetensorsFile> fileOfTensor) {
        this.location = location;
        this.files = files;
        this.fileOfTensor = fileOfTensor;
    }

    public static ModelWeights open(Path location) {
        if (Files.isRegularFile(location)) {
            SafetensorsFile file = SafetensorsFile.open(location);
            Map<String, SafetensorsFile> map = new LinkedHashMap<>();
            file.names().forEach(name -> map.put(name, file));
            return new ModelWeights(location, List.of(file), map);
        }
        if (!Files.isDirectory(location)) {
            throw new BitDeltaException(location + ": no such model folder or safetensors file");
        }
        Path single = location.resolve(SINGLE_FILE);
        Path index = location.resolve(INDEX_FILE);
        if (Files.isRegularFile(single)) {
            ModelWeights weights = open(single);
            return new ModelWeights(location, weights.files, weights.fileOfTensor);
        }
        if (!Files.isRegularFile(index)) {
            throw new BitDeltaException(location + ": holds neither " + SINGLE_FILE + " nor " + INDEX_FILE
                    + " (only safetensors weights are supported, not PyTorch .bin files)");
        }
        return openSharded(location, index);
    }

    private static ModelWeights openSharded(Path location, Path index) {
        JsonObject weightMap;
        try {
            JsonElement root = JsonParser.parseString(Files.readString(index));
            if (!root.isJsonObject() || !root.getAsJsonObject().has("weight_map")
                    || !root.getAsJsonObject().get("weight_map").isJsonObject()) {
                throw new BitDeltaException(index + ": has no \"weight_map\" object");
            }
            weightMap = root.getAsJsonObject().getAsJsonObject("weight_map");
        } catch (IOException | JsonParseException e) {
            throw new BitDeltaException(index + ": cannot be read as JSON: " + e.getMessage(), e);
        }
        Map<String, SafetensorsFile> opened = new TreeMap<>();
        Map<String, SafetensorsFile> fileOfTensor = new LinkedHashMap<>();
        List<SafetensorsFile> files = new ArrayList<>();
        try {
            for (Map.Entry<String, JsonElement> entry : weightMap.entrySet()) {
                String shardName = entry.getValue().getAsString();
                if (shardName.contains("/") || shardName.contains("\\") || shardName.startsWith(".")) {
                    throw new BitDeltaException(index + ": shard name '" + shardName + "' of tensor '" + entry.getKey() + "' is not a plain file name");
                }
                SafetensorsFile shard = opened.get(shardName);
                if (shard == null) {
                    shard = SafetensorsFile.open(location.resolve(shardName));
                    opened.put(shardName, shard);
                    files.add(shard);
                }
                if (!shard.contains(entry.getKey())) {
                    throw new BitDeltaException(index + ": tensor '" + entry.getKey() + "' is listed in shard " + shardName + " but is not in it");
                }
                fileOfTensor.put(entry.getKey(), shard);
            }
            for (SafetensorsFile shard : files) {
                for (String name : shard.names()) {
                    if (fileOfTensor.get(name) != shard) {
                        throw new BitDeltaException(shard.path() + ": tensor '" + name + "' is not listed for this shard in " + INDEX_FILE);
                    }
                }
            }
        } catch (RuntimeException e) {
            files.forEach(SafetensorsFile::close);
            throw e;
        }
        return new ModelWeights(location, List.copyOf(files), fileOfTensor);
    }

    /** Reads a model folder's config.json as a JSON object. */
    public static JsonObject readConfig(Path folder) {
        Path config = Files.isDirectory(folder) ? folder.resolve("config.json") : folder.resolveSibling("config.json");
        try {
            JsonElement root = JsonParser.parseString(Files.readString(config));
            if (!root.isJsonObject()) {
                throw new BitDeltaException(config + ": is not a JSON object");
            }
            return root.getAsJsonObject();
        } catch (IOException e) {
            throw new BitDeltaException(config + ": cannot be read (" + e + "); a Hugging Face model folder needs config.json", e);
        } catch (JsonParseException e) {
            throw new BitDeltaException(config + ": is not valid JSON: " + e.getMessage(), e);
        }
    }

    public Path location() {
        return location;
    }

    /** Tensor names, in file order. */
    public List<String> names() {
        return List.copyOf(fileOfTensor.keySet());
    }

    public boolean contains(String name) {
        return fileOfTensor.containsKey(name);
    }

    public SafetensorsFile.Entry entry(String name) {
        return file(name).entries().get(name);
    }

    public Tensor tensor(String name) {
        return file(name).tensor(name);
    }

    /** The tensor, or null where the model has none of that name. */
    public Tensor tensorOrNull(String name) {
        SafetensorsFile file = fileOfTensor.get(name);
        return file == null ? null : file.tensor(name);
    }

    public Path fileOf(String name) {
        return file(name).path();
    }

    private SafetensorsFile file(String name) {
        SafetensorsFile file = fileOfTensor.get(name);
        if (file == null) {
            throw new BitDeltaException(location + ": has no tensor named '" + name + "'");
        }
        return file;
    }

    public List<SafetensorsFile> files() {
        return files;
    }

    /** Bytes of all weight files. */
    public long totalBytes() {
        return files.stream().mapToLong(SafetensorsFile::fileSize).sum();
    }

    @Override
    public void close() {
        files.forEach(SafetensorsFile::close);
    }
}
