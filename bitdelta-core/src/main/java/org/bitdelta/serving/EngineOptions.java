package org.bitdelta.serving;

import org.bitdelta.spi.TensorBackend;

import java.nio.file.Path;
import java.util.Objects;

/**
 * How an {@link Engine} is set up: its backend, batch limits, KV cache, tenant residency and chat template.
 * Immutable; every setter returns a copy.
 */
public final class EngineOptions {
    /** Marks the base alias as "the base folder's name". */
    private static final String FOLDER_NAME = "\0folder";

    private final TensorBackend backend;
    private final String backendName;
    private final String baseAlias;
    private final int maxRunning;
    private final int maxWaiting;
    private final int maxRowsPerStep;
    private final int prefillChunkTokens;
    private final int kvCacheTokens;
    private final int kvBlockSize;
    private final int tenantSlots;
    private final long tenantBudgetBytes;
    private final Path chatTemplate;

    private EngineOptions(TensorBackend backend, String backendName, String baseAlias, int maxRunning, int maxWaiting, int maxRowsPerStep,
                          int prefillChunkTokens, int kvCacheTokens, int kvBlockSize, int tenantSlots, long tenantBudgetBytes,
                          Path chatTemplate) {
        this.backend = backend;
        this.backendName = backendName;
        this.baseAlias = baseAlias;
        this.maxRunning = maxRunning;
        this.maxWaiting = maxWaiting;
        this.maxRowsPerStep = maxRowsPerStep;
        this.prefillChunkTokens = prefillChunkTokens;
        this.kvCacheTokens = kvCacheTokens;
        this.kvBlockSize = kvBlockSize;
        this.tenantSlots = tenantSlots;
        this.tenantBudgetBytes = tenantBudgetBytes;
        this.chatTemplate = chatTemplate;
    }

    /**
     * The default backend ({@code -Dbitdelta.backend}, else the best available), the base also served under its
     * folder's name, 64 running and 256 waiting requests, 512 rows per step of which at most 256 prompt tokens,
     * a KV cache of max(4096, 4 contexts) tokens in blocks of 16, 64 tenant slots, no tenant byte budget, and the
     * model's own chat template.
     */
    public static EngineOptions defaults() {
        return new EngineOptions(null, null, FOLDER_NAME, 64, 256, 512, 256, 0, 16, 64, Long.MAX_VALUE, null);
    }

    private static int positive(String name, int value) {
        if (value < 1) {
            throw new IllegalArgumentException(name + " must be at least 1, got " + value);
        }
        return value;
    }

    /** Runs on this backend, which the caller keeps owning (the engine does not close it). */
    public EngineOptions backend(TensorBackend value) {
        return new EngineOptions(Objects.requireNonNull(value, "backend"), null, baseAlias, maxRunning, maxWaiting, maxRowsPerStep,
                prefillChunkTokens, kvCacheTokens, kvBlockSize, tenantSlots, tenantBudgetBytes, chatTemplate);
    }

    /** Runs on the backend of this name ("cpu", "cpu-scalar", "cuda"), opened and closed by the engine. */
    public EngineOptions backend(String name) {
        return new EngineOptions(null, Objects.requireNonNull(name, "name"), baseAlias, maxRunning, maxWaiting, maxRowsPerStep,
                prefillChunkTokens, kvCacheTokens, kvBlockSize, tenantSlots, tenantBudgetBytes, chatTemplate);
    }

    /**
     * A second name for the base model, beside {@link Engine#BASE}; null for none. Default: the base folder's name
     * (e.g. "stories260K").
     */
    public EngineOptions baseAlias(String alias) {
        if (alias != null && alias.isBlank()) {
            throw new IllegalArgumentException("the base alias is blank (null for none)");
        }
        return new EngineOptions(backend, backendName, alias, maxRunning, maxWaiting, maxRowsPerStep, prefillChunkTokens,
                kvCacheTokens, kvBlockSize, tenantSlots, tenantBudgetBytes, chatTemplate);
    }

    /** Requests in the running batch at most; more wait. At most {@link #maxRowsPerStep}. */
    public EngineOptions maxRunning(int requests) {
        return new EngineOptions(backend, backendName, baseAlias, positive("maxRunning", requests), maxWaiting, maxRowsPerStep,
                prefillChunkTokens, kvCacheTokens, kvBlockSize, tenantSlots, tenantBudgetBytes, chatTemplate);
    }

    /** Requests waiting to run at most; {@link Engine#submit} throws {@link EngineBusyException} beyond. */
    public EngineOptions maxWaiting(int requests) {
        return new EngineOptions(backend, backendName, baseAlias, maxRunning, positive("maxWaiting", requests), maxRowsPerStep,
                prefillChunkTokens, kvCacheTokens, kvBlockSize, tenantSlots, tenantBudgetBytes, chatTemplate);
    }

    /** Tokens one step runs at most (decode tokens and prompt chunks together): the decoder's batch size. */
    public EngineOptions maxRowsPerStep(int rows) {
        return new EngineOptions(backend, backendName, baseAlias, maxRunning, maxWaiting, positive("maxRowsPerStep", rows),
                prefillChunkTokens, kvCacheTokens, kvBlockSize, tenantSlots, tenantBudgetBytes, chatTemplate);
    }

    /**
     * Prompt tokens one step runs at most, over all requests: a long prompt is prefilled in chunks over several
     * steps, between which the running requests keep decoding.
     */
    public EngineOptions prefillChunkTokens(int tokens) {
        return new EngineOptions(backend, backendName, baseAlias, maxRunning, maxWaiting, maxRowsPerStep,
                positive("prefillChunkTokens", tokens), kvCacheTokens, kvBlockSize, tenantSlots, tenantBudgetBytes, chatTemplate);
    }

    /** Tokens the KV cache holds over all running requests. Default: max(4096, 4 × the context length). */
    public EngineOptions kvCacheTokens(int tokens) {
        return new EngineOptions(backend, backendName, baseAlias, maxRunning, maxWaiting, maxRowsPerStep, prefillChunkTokens,
                positive("kvCacheTokens", tokens), kvBlockSize, tenantSlots, tenantBudgetBytes, chatTemplate);
    }

    /** Tokens per KV cache block. */
    public EngineOptions kvBlockSize(int tokens) {
        return new EngineOptions(backend, backendName, baseAlias, maxRunning, maxWaiting, maxRowsPerStep, prefillChunkTokens,
                kvCacheTokens, positive("kvBlockSize", tokens), tenantSlots, tenantBudgetBytes, chatTemplate);
    }

    /** Tenants resident on the device at once; the least recently used idle ones are evicted for others. */
    public EngineOptions tenantSlots(int slots) {
        return new EngineOptions(backend, backendName, baseAlias, maxRunning, maxWaiting, maxRowsPerStep, prefillChunkTokens,
                kvCacheTokens, kvBlockSize, positive("tenantSlots", slots), tenantBudgetBytes, chatTemplate);
    }

    /**
     * Device bytes the resident tenants may hold together (idle ones are evicted, least recently used first); a
     * request whose tenant does not fit beside the tenants in use ends with an error. Default: no limit.
     */
    public EngineOptions tenantBudgetBytes(long bytes) {
        if (bytes < 0) {
            throw new IllegalArgumentException("tenantBudgetBytes must be >= 0, got " + bytes);
        }
        return new EngineOptions(backend, backendName, baseAlias, maxRunning, maxWaiting, maxRowsPerStep, prefillChunkTokens,
                kvCacheTokens, kvBlockSize, tenantSlots, bytes, chatTemplate);
    }

    /**
     * A Jinja chat template file to use instead of the model's own. Without it the engine uses, in this order, the
     * base folder's {@code chat_template.jinja}, the {@code chat_template} of its {@code tokenizer_config.json} (a
     * string, or a list of {name, template} of which "default" is used), and else a plain format: the messages'
     * contents joined by newlines, roles left out, no generation prompt, tokenized like a text prompt (with the
     * tokenizer's BOS). Model templates are rendered as transformers does ({@code messages},
     * {@code add_generation_prompt}, the special tokens of tokenizer_config.json, {@code raise_exception}; trimmed
     * blocks) and their text tokenized without adding special tokens, since the template writes them itself.
     */
    public EngineOptions chatTemplate(Path file) {
        return new EngineOptions(backend, backendName, baseAlias, maxRunning, maxWaiting, maxRowsPerStep, prefillChunkTokens,
                kvCacheTokens, kvBlockSize, tenantSlots, tenantBudgetBytes, Objects.requireNonNull(file, "file"));
    }

    /** The backend set with {@link #backend(TensorBackend)}, or null. */
    public TensorBackend backend() {
        return backend;
    }

    /** The backend name set with {@link #backend(String)}, or null (then {@code -Dbitdelta.backend} or the best available). */
    public String backendName() {
        return backendName;
    }

    /** The base alias for a base folder: the one set, or the folder's name by default; null for none. */
    public String baseAliasFor(Path baseFolder) {
        if (FOLDER_NAME.equals(baseAlias)) {
            Path name = baseFolder.toAbsolutePath().normalize().getFileName();
            return name == null ? null : name.toString();
        }
        return baseAlias;
    }

    public int maxRunning() {
        return maxRunning;
    }

    public int maxWaiting() {
        return maxWaiting;
    }

    public int maxRowsPerStep() {
        return maxRowsPerStep;
    }

    public int prefillChunkTokens() {
        return prefillChunkTokens;
    }

    /** The KV cache size set, or 0 for the default. */
    public int kvCacheTokens() {
        return kvCacheTokens;
    }

    public int kvBlockSize() {
        return kvBlockSize;
    }

    public int tenantSlots() {
        return tenantSlots;
    }

    public long tenantBudgetBytes() {
        return tenantBudgetBytes;
    }

    /** The chat template file set, or null. */
    public Path chatTemplate() {
        return chatTemplate;
    }
}
