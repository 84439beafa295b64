package org.bitdelta.server.internal;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.helidon.http.HeaderNames;
import io.helidon.webserver.http.HttpRouting;
import io.helidon.webserver.http.ServerRequest;
import io.helidon.webserver.http.ServerResponse;
import org.bitdelta.BitDeltaException;
import org.bitdelta.serving.Completion;
import org.bitdelta.serving.CompletionResult;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.EngineBusyException;
import org.bitdelta.serving.EngineStats;
import org.bitdelta.serving.FinishReason;
import org.bitdelta.serving.InvalidRequestException;
import org.bitdelta.serving.Piece;
import org.bitdelta.server.ServerOptions;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The HTTP API: OpenAI's /v1/models, /v1/completions and /v1/chat/completions (whole, or streamed as server-sent
 * events), the tenant admin endpoints, engine statistics, /health and /metrics.
 *
 * <p>Each request runs on its own virtual thread (Helidon's default), which submits to the engine and then waits
 * on its {@link Completion}: the engine thread never waits for a client. A stream writes each piece as it comes; a
 * write that fails (the client went away) cancels the completion, which frees its batch slot at the next step.
 */
public final class OpenAiRoutes {
    private static final Logger LOG = LoggerFactory.getLogger(OpenAiRoutes.class);
    private static final String JSON = "application/json";
    /** How far past the request limit a body is still read (and dropped) so that its client sees the 413. */
    static final long OVERSIZE_DRAIN_BYTES = 64L << 20;

    private final Engine engine;
    private final ServerOptions options;
    private final ServerMetrics metrics;
    private final long startedSeconds = System.currentTimeMillis() / 1000;

    public OpenAiRoutes(Engine engine, ServerOptions options, ServerMetrics metrics) {
        this.engine = engine;
        this.options = options;
        this.metrics = metrics;
    }

    public void register(HttpRouting.Builder routing) {
        routing.get("/health", this::health)
                .get("/metrics", this::metrics)
                .get("/v1/models", this::models)
                .get("/v1/models/{model}", this::model)
                .post("/v1/completions", (request, response) -> complete(OpenAiRequests.completion(body(request)), response))
                .post("/v1/chat/completions", (request, response) -> complete(OpenAiRequests.chat(body(request)), response))
                .get("/v1/tenants", this::tenants)
                .get("/v1/stats", this::stats);
        if (options.adminEndpoints()) {
            routing.post("/v1/tenants", this::loadTenant)
                    .delete("/v1/tenants/{name}", this::unloadTenant);
        }
        routing.error(ApiError.class, (request, response, error) -> sendError(response, error));
        routing.error(RuntimeException.class, (request, response, error) -> sendError(response, unexpected(request, error)));
    }

    // ------------------------------------------------------------------ small endpoints

    private void health(ServerRequest request, ServerResponse response) {
        boolean closed = engine.stats().closed();
        ObjectNode body = Json.object().put("status", closed ? "engine closed" : "ok");
        response.status(closed ? 503 : 200);
        sendJson(response, body);
    }

    private void metrics(ServerRequest request, ServerResponse response) {
        response.header(HeaderNames.CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
        response.send(metrics.scrape());
    }

    private void models(ServerRequest request, ServerResponse response) {
        ArrayNode data = Json.MAPPER.createArrayNode();
        for (String name : engine.tenants()) {
            data.add(modelObject(name));
        }
        ObjectNode body = Json.object().put("object", "list");
        body.set("data", data);
        sendJson(response, body);
    }

    private void model(ServerRequest request, ServerResponse response) {
        String name = request.path().pathParameters().get("model");
        if (!engine.tenants().contains(name)) {
            throw ApiError.modelNotFound(name, engine.tenants());
        }
        sendJson(response, modelObject(name));
    }

    private ObjectNode modelObject(String name) {
        boolean base = name.equals(Engine.BASE) || name.equals(engine.baseAlias());
        ObjectNode model = Json.object().put("id", name).put("object", "model").put("created", startedSeconds).put("owned_by", "bitdelta");
        // As vLLM lists LoRA adapters: a tenant's parent is the base it is a delta of.
        model.put("parent", base ? null : Engine.BASE);
        return model;
    }

    private void tenants(ServerRequest request, ServerResponse response) {
        EngineStats stats = engine.stats();
        ArrayNode data = Json.MAPPER.createArrayNode();
        for (EngineStats.TenantStats tenant : stats.tenants()) {
            data.add(tenantObject(tenant, stats));
        }
        ObjectNode body = Json.object().put("object", "list").put("base_alias", engine.baseAlias());
        body.set("data", data);
        sendJson(response, body);
    }

    private ObjectNode tenantObject(EngineStats.TenantStats tenant, EngineStats stats) {
        ObjectNode node = Json.object().put("id", tenant.name()).put("object", "tenant");
        boolean base = tenant.name().equals(Engine.BASE);
        // The base's own bytes are the model's weights; a tenant's are its delta.
        node.put("bytes", base && stats.memory() != null ? stats.memory().baseBytes() : tenant.bytes());
        node.put("device_bytes", base && stats.memory() != null ? stats.memory().baseBytes() : tenant.deviceBytes());
        node.put("resident", tenant.resident());
        node.put("running", tenant.running());
        node.put("waiting", tenant.waiting());
        return node;
    }

    private void stats(ServerRequest request, ServerResponse response) {
        EngineStats stats = engine.stats();
        ObjectNode body = Json.object()
                .put("running", stats.running()).put("waiting", stats.waiting())
                .put("max_running", stats.maxRunning()).put("max_waiting", stats.maxWaiting())
                .put("last_step_sequences", stats.lastStepSequences()).put("last_step_rows", stats.lastStepRows())
                .put("steps", stats.steps())
                .put("kv_blocks_used", stats.kvBlocksUsed()).put("kv_blocks_total", stats.kvBlocksTotal()).put("kv_block_size", stats.kvBlockSize())
                .put("preemptions", stats.preemptions()).put("requests_submitted", stats.requestsSubmitted())
                .put("prompt_tokens", stats.promptTokens()).put("generated_tokens", stats.generatedTokens())
                .put("context_length", engine.contextLength()).put("closed", stats.closed());
        ObjectNode finished = body.putObject("requests_finished");
        stats.requestsFinished().forEach((reason, count) -> finished.put(reason.name().toLowerCase(java.util.Locale.ROOT), count));
        if (stats.memory() != null) {
            body.putObject("memory").put("base_bytes", stats.memory().baseBytes()).put("tenant_bytes", stats.memory().tenantTotal())
                    .put("kv_cache_bytes", stats.memory().kvCacheBytes()).put("workspace_bytes", stats.memory().workspaceBytes())
                    .put("device_total", stats.memory().deviceTotal()).put("device_free", stats.memory().deviceFree());
        }
        ArrayNode tenants = body.putArray("tenants");
        for (EngineStats.TenantStats tenant : stats.tenants()) {
            tenants.add(tenantObject(tenant, stats));
        }
        sendJson(response, body);
    }

    // ------------------------------------------------------------------ admin

    private void loadTenant(ServerRequest request, ServerResponse response) {
        ObjectNode body = body(request);
        String name = Json.requiredString(body, "name");
        String path = Json.requiredString(body, "path");
        if (engine.tenants().contains(name)) {
            throw new ApiError(409, "invalid_request_error", "name", "conflict", "a model named '" + name + "' is loaded already; "
                    + "unload it first (DELETE /v1/tenants/" + name + ")");
        }
        Path file = Path.of(path);
        if (!Files.isRegularFile(file)) {
            throw ApiError.invalid("path", "no .bitdelta file at " + file.toAbsolutePath() + " on the server");
        }
        try {
            engine.addTenant(name, file);
        } catch (BitDeltaException e) {
            throw ApiError.invalid("path", "cannot load " + file + " as tenant '" + name + "': " + e.getMessage());
        }
        LOG.info("tenant '{}' loaded from {}", name, file);
        EngineStats stats = engine.stats();
        EngineStats.TenantStats tenant = stats.tenants().stream().filter(t -> t.name().equals(name)).findFirst()
                .orElseThrow(() -> new IllegalStateException("tenant '" + name + "' missing right after it was added"));
        response.status(201);
        sendJson(response, tenantObject(tenant, stats));
    }

    private void unloadTenant(ServerRequest request, ServerResponse response) {
        String name = request.path().pathParameters().get("name");
        if (name.equals(Engine.BASE) || name.equals(engine.baseAlias())) {
            throw ApiError.invalid("name", "'" + name + "' is the base model, which cannot be unloaded");
        }
        if (!engine.tenants().contains(name)) {
            throw ApiError.modelNotFound(name, engine.tenants());
        }
        engine.removeTenant(name);
        LOG.info("tenant '{}' unloaded", name);
        sendJson(response, Json.object().put("id", name).put("object", "tenant").put("deleted", true));
    }

    // ------------------------------------------------------------------ completions

    private void complete(OpenAiRequests.Parsed parsed, ServerResponse response) {
        Completion completion = submit(parsed);
        String id = (parsed.kind() == OpenAiRequests.Kind.CHAT ? "chatcmpl-" : "cmpl-") + randomId();
        long created = System.currentTimeMillis() / 1000;
        OpenAiResponses shapes = new OpenAiResponses(parsed.kind(), id, created, parsed.model());
        try {
            if (parsed.stream()) {
                stream(completion, parsed, shapes, response);
            } else {
                CompletionResult result = completion.result();
                if (result.finishReason() == FinishReason.ERROR || result.finishReason() == FinishReason.CANCELLED) {
                    throw failed(result);
                }
                sendJson(response, shapes.whole(result));
            }
        } finally {
            if (!completion.isDone()) {
                completion.cancel();
            }
            // Recorded on this thread or a virtual one of its own, never on the engine thread that completes it.
            completion.future().thenAcceptAsync(result -> metrics.record(parsed.model(), result), OpenAiRoutes::startVirtual);
        }
    }

    private static void startVirtual(Runnable task) {
        Thread.ofVirtual().name("bitdelta-metrics").start(task);
    }

    private Completion submit(OpenAiRequests.Parsed parsed) {
        try {
            return engine.submit(parsed.request());
        } catch (InvalidRequestException e) {
            if (e.field().equals("tenant")) {
                throw ApiError.modelNotFound(parsed.model(), engine.tenants());
            }
            // The engine names a chat's rendered prompt "prompt"; the client sent "messages".
            String param = e.field().equals("prompt") && parsed.kind() == OpenAiRequests.Kind.CHAT ? "messages" : e.field();
            throw ApiError.invalid(param, e.getMessage());
        } catch (EngineBusyException e) {
            throw new ApiError(503, "server_error", null, "engine_overloaded", e.getMessage());
        } catch (BitDeltaException e) {
            if (engine.stats().closed()) {
                throw new ApiError(503, "server_error", null, "engine_closed", e.getMessage());
            }
            // What else submit refuses comes from the request: a chat template that raised on these messages.
            throw ApiError.invalid(parsed.kind() == OpenAiRequests.Kind.CHAT ? "messages" : "prompt", e.getMessage());
        }
    }

    private static ApiError failed(CompletionResult result) {
        String why = result.finishReason() == FinishReason.CANCELLED ? "the completion was cancelled (" + result.finishDetail() + ")"
                : "the completion failed: " + result.error();
        return new ApiError(500, "server_error", null, result.finishReason().name().toLowerCase(java.util.Locale.ROOT), why);
    }

    private void stream(Completion completion, OpenAiRequests.Parsed parsed, OpenAiResponses shapes, ServerResponse response) {
        response.status(200);
        response.header(HeaderNames.CONTENT_TYPE, "text/event-stream; charset=utf-8");
        response.header(HeaderNames.CACHE_CONTROL, "no-cache");
        // Tells a proxy such as nginx not to buffer the stream.
        response.header("X-Accel-Buffering", "no");
        Duration heartbeat = options.streamHeartbeat();
        try (OutputStream out = response.outputStream()) {
            SseWriter sse = new SseWriter(out);
            if (parsed.kind() == OpenAiRequests.Kind.CHAT) {
                sse.data(shapes.roleChunk(parsed.includeUsage()));
                sse.flush();
            }
            while (true) {
                Piece piece = completion.poll(heartbeat);
                if (piece == null) {
                    sse.comment("waiting");
                    sse.flush();
                    continue;
                }
                boolean ended = false;
                // Send what is there now in one write: a consumer that fell behind catches up at once.
                for (; piece != null && !ended; piece = ended ? null : completion.poll()) {
                    if (!piece.text().isEmpty()) {
                        sse.data(shapes.textChunkParts(piece.text(), parsed.includeUsage()));
                    }
                    if (piece.last()) {
                        ended = true;
                        end(piece.result(), parsed, shapes, sse);
                    }
                }
                sse.flush();
                if (ended) {
                    return;
                }
            }
        } catch (SseWriter.ClientGoneException e) {
            completion.cancel();
            LOG.debug("completion {}: {}; cancelled", completion.id(), e.getMessage());
        } catch (InterruptedException e) {
            completion.cancel();
            Thread.currentThread().interrupt();
        } catch (IOException | UncheckedIOException e) {
            // Closing the stream failed: the client is gone after its last event; nothing is left to cancel.
            LOG.debug("completion {}: closing the stream failed: {}", completion.id(), e.toString());
        }
    }

    /** The last events: the finish chunk and usage, or an error event; then [DONE]. */
    private static void end(CompletionResult result, OpenAiRequests.Parsed parsed, OpenAiResponses shapes, SseWriter sse) {
        if (result.finishReason() == FinishReason.ERROR || result.finishReason() == FinishReason.CANCELLED) {
            // vLLM's way (OpenAI's clients raise it): an error object as an event, then [DONE].
            sse.data(failed(result).toJson());
        } else {
            sse.data(shapes.finishChunk(result.finishReason(), parsed.includeUsage()));
            if (parsed.includeUsage()) {
                sse.data(shapes.usageChunk(result.usage()));
            }
        }
        sse.done();
    }

    // ------------------------------------------------------------------ plumbing

    /**
     * The request body, read up to the size limit; past it 413, once the rest of the body (up to
     * {@link #drainLimit}) has been read and dropped: a server that answers and closes while the client still writes
     * makes the client's write fail, and most clients then report a broken pipe instead of the 413.
     */
    private ObjectNode body(ServerRequest request) {
        long limit = options.maxRequestBytes();
        try (InputStream in = request.content().inputStream()) {
            if (request.headers().contentLength().orElse(0) > limit) {
                in.transferTo(OutputStream.nullOutputStream());
                throw tooLarge(limit);
            }
            byte[] bytes = in.readNBytes((int) Math.min(Integer.MAX_VALUE - 8, limit + 1));
            if (bytes.length > limit) {
                in.transferTo(OutputStream.nullOutputStream());
                throw tooLarge(limit);
            }
            return Json.parseObject(bytes);
        } catch (IOException e) {
            throw new UncheckedIOException("reading the request body failed", e);
        }
    }

    /**
     * The most body bytes the server reads at all (Helidon's payload limit): a body over the request limit is read and
     * dropped up to this many bytes before the 413, a larger one is answered at once and its connection closed.
     */
    public static long drainLimit(long maxRequestBytes) {
        return maxRequestBytes > Long.MAX_VALUE - OVERSIZE_DRAIN_BYTES ? Long.MAX_VALUE : maxRequestBytes + OVERSIZE_DRAIN_BYTES;
    }

    /** Anything a handler did not expect, in OpenAI's shape: Helidon's own request errors keep their status. */
    private static ApiError unexpected(ServerRequest request, RuntimeException error) {
        if (error instanceof io.helidon.http.RequestException helidon) {
            int status = helidon.status().code();
            return status == 413 ? tooLarge(-1) : new ApiError(status, status >= 500 ? "server_error" : "invalid_request_error", null, null,
                    helidon.getMessage());
        }
        if (error instanceof UncheckedIOException) {
            // The connection broke (a client that went away): nothing to answer, nothing wrong with the server.
            LOG.debug("{} {}: {}", request.prologue().method().text(), request.path().path(), error.toString());
        } else {
            LOG.error("{} {} failed", request.prologue().method().text(), request.path().path(), error);
        }
        return new ApiError(500, "server_error", null, null, "internal server error: " + error);
    }

    static ApiError tooLarge(long limit) {
        return new ApiError(413, "invalid_request_error", null, "request_too_large",
                "The request body is larger than this server accepts (" + (limit < 0 ? "" : limit + " bytes; ")
                        + "ServerOptions.maxRequestBytes, --max-request-bytes)");
    }

    static void sendError(ServerResponse response, ApiError error) {
        if (response.isSent()) {
            LOG.warn("cannot answer an error, the response was sent already: {}", error.getMessage());
            return;
        }
        response.status(error.status());
        if (error.status() == 401) {
            response.header(HeaderNames.WWW_AUTHENTICATE, "Bearer");
        }
        if (error.status() == 503) {
            response.header(HeaderNames.RETRY_AFTER, "1");
        }
        sendJson(response, error.toJson());
    }

    static void sendJson(ServerResponse response, JsonNode body) {
        response.header(HeaderNames.CONTENT_TYPE, JSON);
        response.send(Json.bytes(body));
    }

    private static String randomId() {
        byte[] bytes = new byte[12];
        ThreadLocalRandom.current().nextBytes(bytes);
        return HexFormat.of().formatHex(bytes);
    }

    /** Routes for the metrics' route label: known paths as they are, everything else as "other". */
    public static String routeLabel(String path) {
        if (ROUTES.contains(path)) {
            return path;
        }
        if (path.startsWith("/v1/models/")) {
            return "/v1/models/{model}";
        }
        if (path.startsWith("/v1/tenants/")) {
            return "/v1/tenants/{name}";
        }
        return "other";
    }

    private static final List<String> ROUTES = List.of("/", "/index.html", "/app.js", "/style.css", "/health", "/metrics", "/v1/models",
            "/v1/completions", "/v1/chat/completions", "/v1/tenants", "/v1/stats");
}
