package org.bitdelta.internal.serving;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import org.bitdelta.BitDeltaException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * What the engine reads from a model folder beside the weights: the end-of-sequence tokens of
 * generation_config.json, and the special tokens and chat template of tokenizer_config.json /
 * chat_template.jinja. Every malformed field is an error naming the file and the field.
 */
final class ModelFiles {
    static final String GENERATION_CONFIG = "generation_config.json";
    static final String TOKENIZER_CONFIG = "tokenizer_config.json";
    static final String CHAT_TEMPLATE_FILE = "chat_template.jinja";
    /** The special-token entries of tokenizer_config.json that chat templates read. */
    private static final String[] SPECIAL_TOKENS = {"bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"};

    private ModelFiles() {
    }

    /**
     * The end-of-sequence token ids: generation_config.json's eos_token_id (an int or a list of ints) where the
     * file names one, else config.json's.
     */
    static int[] eosTokenIds(Path folder, int[] fromConfig) {
        Path file = folder.resolve(GENERATION_CONFIG);
        if (!Files.isRegularFile(file)) {
            return fromConfig.clone();
        }
        JsonObject json = readObject(file);
        JsonElement value = json.get("eos_token_id");
        if (value == null || value.isJsonNull()) {
            return fromConfig.clone();
        }
        if (value.isJsonArray()) {
            JsonArray array = value.getAsJsonArray();
            int[] ids = new int[array.size()];
            for (int i = 0; i < ids.length; i++) {
                ids[i] = tokenId(file, array.get(i));
            }
            return ids;
        }
        return new int[]{tokenId(file, value)};
    }

    private static int tokenId(Path file, JsonElement element) {
        if (element.isJsonPrimitive() && element.getAsJsonPrimitive().isNumber()) {
            double number = element.getAsDouble();
            if (number >= 0 && number == Math.rint(number) && number <= Integer.MAX_VALUE) {
                return (int) number;
            }
        }
        throw new BitDeltaException(file + ": eos_token_id must be a token id (an int >= 0) or a list of them, got " + element);
    }

    /** The special tokens of tokenizer_config.json (a string, or an object with "content"), by name; empty without the file. */
    static Map<String, String> specialTokens(Path folder) {
        Path file = folder.resolve(TOKENIZER_CONFIG);
        Map<String, String> tokens = new LinkedHashMap<>();
        if (!Files.isRegularFile(file)) {
            return tokens;
        }
        JsonObject json = readObject(file);
        for (String name : SPECIAL_TOKENS) {
            JsonElement value = json.get(name);
            if (value == null || value.isJsonNull()) {
                continue;
            }
            if (value.isJsonPrimitive() && value.getAsJsonPrimitive().isString()) {
                tokens.put(name, value.getAsString());
            } else if (value.isJsonObject() && value.getAsJsonObject().has("content")) {
                tokens.put(name, value.getAsJsonObject().get("content").getAsString());
            } else {
                throw new BitDeltaException(file + ": " + name + " must be a string or an object with \"content\", got " + value);
            }
        }
        return tokens;
    }

    /** A chat template's source text and where it came from. */
    record TemplateSource(String text, String origin) {
    }

    /**
     * The folder's chat template: chat_template.jinja, else tokenizer_config.json's chat_template (a string, or a
     * list of {name, template} of which "default" is taken); null when there is none.
     */
    static TemplateSource chatTemplate(Path folder) {
        Path jinja = folder.resolve(CHAT_TEMPLATE_FILE);
        if (Files.isRegularFile(jinja)) {
            return new TemplateSource(readString(jinja), jinja.toString());
        }
        Path file = folder.resolve(TOKENIZER_CONFIG);
        if (!Files.isRegularFile(file)) {
            return null;
        }
        JsonElement value = readObject(file).get("chat_template");
        if (value == null || value.isJsonNull()) {
            return null;
        }
        if (value.isJsonPrimitive() && value.getAsJsonPrimitive().isString()) {
            return new TemplateSource(value.getAsString(), file + " (chat_template)");
        }
        if (value.isJsonArray()) {
            StringBuilder names = new StringBuilder();
            for (JsonElement entry : value.getAsJsonArray()) {
                if (!entry.isJsonObject() || !entry.getAsJsonObject().has("name") || !entry.getAsJsonObject().has("template")) {
                    throw new BitDeltaException(file + ": chat_template is a list, so each entry must be {\"name\": ..., \"template\": ...}, got " + entry);
                }
                String name = entry.getAsJsonObject().get("name").getAsString();
                if (name.equals("default")) {
                    return new TemplateSource(entry.getAsJsonObject().get("template").getAsString(), file + " (chat_template \"default\")");
                }
                names.append(names.isEmpty() ? "" : ", ").append(name);
            }
            throw new BitDeltaException(file + ": chat_template lists templates named [" + names
                    + "] but none named \"default\"; choose one with EngineOptions.chatTemplate(Path)");
        }
        throw new BitDeltaException(file + ": chat_template must be a string or a list of {name, template}, got " + value);
    }

    static String readString(Path file) {
        try {
            return Files.readString(file);
        } catch (IOException e) {
            throw new BitDeltaException(file + ": cannot be read: " + e.getMessage(), e);
        }
    }

    private static JsonObject readObject(Path file) {
        String text = readString(file);
        try {
            JsonElement json = JsonParser.parseString(text);
            if (!json.isJsonObject()) {
                throw new BitDeltaException(file + ": must hold a JSON object");
            }
            return json.getAsJsonObject();
        } catch (JsonParseException e) {
            throw new BitDeltaException(file + ": is not valid JSON: " + e.getMessage(), e);
        }
    }
}
