package org.bitdelta.inference;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import org.bitdelta.BitDeltaException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A model folder's {@code tokenizer.json}, run by DJL's Hugging Face tokenizer (Rust, native).
 *
 * <p>{@link #encode} adds the special tokens the tokenizer's post-processor adds (BOS for Llama tokenizers),
 * exactly as Python's {@code tokenizer.encode(text)} does, and never truncates.
 *
 * <p>DJL's native library (Rust {@code tokenizers}) is bundled in its jar for linux-x86_64/aarch64, macOS and
 * Windows and loads without a network: on first use it is unpacked into DJL's cache folder,
 * {@code ~/.djl.ai/tokenizers/}, unless the environment variable or system property {@code DJL_CACHE_DIR} (or
 * {@code ENGINE_CACHE_DIR}) names another. Where the home folder is not writable set one of those, or point
 * {@code RUST_LIBRARY_PATH} at an already unpacked library. This library sets none of them itself.
 */
public final class Tokenizer implements AutoCloseable {
    private final Path file;
    private final HuggingFaceTokenizer tokenizer;

    private Tokenizer(Path file, HuggingFaceTokenizer tokenizer) {
        this.file = file;
        this.tokenizer = tokenizer;
    }

    /** Loads {@code tokenizer.json} from a model folder, or the given tokenizer.json file. */
    public static Tokenizer load(Path folderOrFile) {
        Path file = Files.isDirectory(folderOrFile) ? folderOrFile.resolve("tokenizer.json") : folderOrFile;
        if (!Files.isRegularFile(file)) {
            throw new BitDeltaException(file + ": no such tokenizer file (a model folder needs tokenizer.json to turn text into tokens)");
        }
        try {
            HuggingFaceTokenizer tokenizer = HuggingFaceTokenizer.builder()
                    .optTokenizerPath(file)
                    .optAddSpecialTokens(true)
                    .optTruncation(false) // a whole eval file is one sequence; never cut it at model_max_length
                    .optPadding(false)
                    .build();
            return new Tokenizer(file, tokenizer);
        } catch (IOException | RuntimeException e) {
            throw new BitDeltaException(file + ": cannot be loaded by DJL's HuggingFaceTokenizer: " + e.getMessage()
                    + nativeLibraryHint(e), e);
        }
    }

    /**
     * On a host with a GPU, DJL looks for a CUDA build of its tokenizer library, which its jar lacks, and downloads
     * it: offline that fails. The CPU build in the jar is what a tokenizer needs; RUST_FLAVOR=cpu selects it.
     */
    static String nativeLibraryHint(Throwable failure) {
        for (Throwable cause = failure; cause != null; cause = cause.getCause()) {
            String message = String.valueOf(cause.getMessage());
            if (message.contains("Cannot download jni files") || message.contains("native library")) {
                return " (DJL could not load its native tokenizer library; on a GPU host without network, set the"
                        + " environment variable or system property RUST_FLAVOR=cpu to use the CPU build inside DJL's jar)";
            }
        }
        return "";
    }

    /** Token ids of {@code text}, with the special tokens the tokenizer adds (BOS first for Llama). */
    public int[] encode(String text) {
        Encoding encoding = tokenizer.encode(text, true, false);
        long[] ids = encoding.getIds();
        int[] result = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            result[i] = Math.toIntExact(ids[i]);
        }
        return result;
    }

    /** Token ids of {@code text} without special tokens (to continue a sequence). */
    public int[] encodeWithoutSpecialTokens(String text) {
        long[] ids = tokenizer.encode(text, false, false).getIds();
        int[] result = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            result[i] = Math.toIntExact(ids[i]);
        }
        return result;
    }

    /** The text of {@code ids}, special tokens left out. */
    public String decode(int[] ids) {
        long[] longs = new long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            longs[i] = ids[i];
        }
        return tokenizer.decode(longs, true);
    }

    public Path file() {
        return file;
    }

    @Override
    public void close() {
        tokenizer.close();
    }
}
