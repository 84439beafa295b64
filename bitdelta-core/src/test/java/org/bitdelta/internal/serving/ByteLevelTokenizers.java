package org.bitdelta.internal.serving;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A GPT-2 style byte-level BPE tokenizer.json with no merges: one token per byte (id = the byte), so a test can
 * write any byte sequence as tokens, and a special token {@code <|bos|>} (id 256).
 */
final class ByteLevelTokenizers {
    static final int BOS = 256;

    private ByteLevelTokenizers() {
    }

    /** Writes tokenizer.json into {@code folder} and returns the folder. */
    static Path write(Path folder) throws IOException {
        char[] unicodeOfByte = bytesToUnicode();
        JsonObject vocabulary = new JsonObject();
        for (int b = 0; b < 256; b++) {
            vocabulary.addProperty(String.valueOf(unicodeOfByte[b]), b);
        }
        JsonObject model = new JsonObject();
        model.addProperty("type", "BPE");
        model.add("vocab", vocabulary);
        model.add("merges", new JsonArray());
        JsonObject byteLevel = new JsonObject();
        byteLevel.addProperty("type", "ByteLevel");
        byteLevel.addProperty("add_prefix_space", false);
        byteLevel.addProperty("trim_offsets", true);
        byteLevel.addProperty("use_regex", true);
        JsonObject bos = new JsonObject();
        bos.addProperty("id", BOS);
        bos.addProperty("content", "<|bos|>");
        bos.addProperty("single_word", false);
        bos.addProperty("lstrip", false);
        bos.addProperty("rstrip", false);
        bos.addProperty("normalized", false);
        bos.addProperty("special", true);
        JsonArray added = new JsonArray();
        added.add(bos);
        JsonObject tokenizer = new JsonObject();
        tokenizer.addProperty("version", "1.0");
        tokenizer.add("added_tokens", added);
        tokenizer.add("pre_tokenizer", byteLevel);
        tokenizer.add("decoder", byteLevel);
        tokenizer.add("model", model);
        Files.writeString(folder.resolve("tokenizer.json"), tokenizer.toString());
        return folder;
    }

    /** GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 upwards. */
    private static char[] bytesToUnicode() {
        char[] mapping = new char[256];
        boolean[] printable = new boolean[256];
        for (int b = '!'; b <= '~'; b++) {
            printable[b] = true;
        }
        for (int b = 0xA1; b <= 0xAC; b++) {
            printable[b] = true;
        }
        for (int b = 0xAE; b <= 0xFF; b++) {
            printable[b] = true;
        }
        int next = 0;
        for (int b = 0; b < 256; b++) {
            mapping[b] = printable[b] ? (char) b : (char) (256 + next++);
        }
        return mapping;
    }
}
