package org.bitdelta.serving;

import org.bitdelta.DeltaModel;
import org.bitdelta.internal.serving.EngineCore;

import java.nio.file.Path;
import java.util.List;
import java.util.Objects;

/**
 * Serves one base model and its BitDelta fine-tunes ("tenants") to many requests at once, in-process: continuous
 * batching on one engine thread (requests join and leave the batch between steps, long prompts are prefilled in
 * chunks between decode steps), a paged KV cache, streaming with cancellation.
 *
 * <pre>{@code
 * try (Engine engine = Engine.open(Path.of("models/llama"), EngineOptions.defaults())) {
 *     engine.addTenant("alice", Path.of("alice.bitdelta"));
 *     Completion completion = engine.submit(Request.chat("alice", List.of(ChatMessage.user("Hello")))
 *             .maxTokens(64).temperature(0.7).seed(1));
 *     completion.stream().forEach(piece -> System.out.print(piece.text()));
 *     System.out.println(completion.result().usage());
 * }
 * }</pre>
 *
 * The base model is the tenant {@link #BASE} and also answers to its folder's name (see
 * {@link EngineOptions#baseAlias}). A greedy request gets the same tokens whatever else runs beside it, and a
 * sampled one the same tokens for the same seed: the CPU decoder is batch-invariant (see
 * {@code VectorCpuBackend.batchInvariant()}).
 *
 * <p>Thread-safe: submit, add and remove tenants, read statistics from any thread.
 */
public final class Engine implements AutoCloseable {
    /** The tenant name of the base model itself. */
    public static final String BASE = "base";

    private final EngineCore core;

    private Engine(EngineCore core) {
        this.core = core;
    }

    /** Opens a Hugging Face model folder (config.json, safetensors, tokenizer.json) with the default options. */
    public static Engine open(Path baseFolder) {
        return open(baseFolder, EngineOptions.defaults());
    }

    /**
     * Opens a Hugging Face model folder (config.json and safetensors weights, memory-mapped; tokenizer.json for
     * text prompts) on the backend of {@code options} ({@code -Dbitdelta.backend}, else the best available, when
     * it names none) and starts the engine thread.
     */
    public static Engine open(Path baseFolder, EngineOptions options) {
        Objects.requireNonNull(baseFolder, "baseFolder");
        Objects.requireNonNull(options, "options");
        return new Engine(EngineCore.open(baseFolder, options));
    }

    /**
     * Adds a fine-tune as tenant {@code name}. The delta must have been compressed against this base (its base
     * fingerprint is checked) and must stay open while it is a tenant (its signs are read in place); the caller
     * keeps owning it. Checked on the calling thread before anything changes: a refused delta throws and leaves
     * the engine as it was. Running requests are not disturbed.
     */
    public void addTenant(String name, DeltaModel delta) {
        core.addTenant(name, Objects.requireNonNull(delta, "delta"), false);
    }

    /** Loads a .bitdelta file and adds it as tenant {@code name}; the engine closes it when the tenant is removed. */
    public void addTenant(String name, Path deltaFile) {
        DeltaModel delta = DeltaModel.load(Objects.requireNonNull(deltaFile, "deltaFile"));
        try {
            core.addTenant(name, delta, true);
        } catch (RuntimeException e) {
            delta.close();
            throw e;
        }
    }

    /**
     * Removes a tenant. Its running requests end with {@link FinishReason#ERROR} at the next step, its waiting ones
     * when they would start; the others go on.
     */
    public void removeTenant(String name) {
        core.removeTenant(name);
    }

    /** {@link #BASE}, the base alias, then the tenants in the order they were added. */
    public List<String> tenants() {
        return core.tenants();
    }

    /**
     * Checks the request against the model, renders and tokenizes its prompt (on the calling thread), and queues
     * it.
     *
     * @throws InvalidRequestException when the request is not valid for this model (the field is named)
     * @throws EngineBusyException     when {@link EngineOptions#maxWaiting} requests wait already
     * @throws org.bitdelta.BitDeltaException when the engine is closed, or the chat template fails
     */
    public Completion submit(Request request) {
        return new Completion(core.submit(Objects.requireNonNull(request, "request")));
    }

    /**
     * Running and waiting requests, the batch, the KV cache, per-tenant memory and counters. Cheap, but it reads the
     * decoder's tables, so it may wait for the step in flight (milliseconds).
     */
    public EngineStats stats() {
        return core.stats();
    }

    /** The model's context length (max_position_embeddings): prompt plus completion tokens at most. */
    public int contextLength() {
        return core.contextLength();
    }

    /** The base model's second name, or null. */
    public String baseAlias() {
        return core.baseAlias();
    }

    /**
     * Ends every running and waiting request ({@link FinishReason#CANCELLED}), stops the engine thread and frees
     * the model, the KV cache and the deltas loaded from files. Idempotent.
     */
    @Override
    public void close() {
        core.close();
    }
}
