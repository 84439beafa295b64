package org.bitdelta.server;

import io.helidon.http.DirectHandler;
import io.helidon.http.HeaderNames;
import io.helidon.webserver.WebServer;
import io.helidon.webserver.staticcontent.StaticContentService;
import org.bitdelta.server.internal.AccessFilter;
import org.bitdelta.server.internal.Json;
import org.bitdelta.server.internal.OpenAiRoutes;
import org.bitdelta.server.internal.ServerMetrics;
import org.bitdelta.serving.Engine;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.net.URI;
import java.util.Objects;

/**
 * An OpenAI-compatible HTTP server over an {@link Engine}: the request's {@code model} picks the tenant (the base
 * model answers to "base" and to its folder's name).
 *
 * <pre>{@code
 * try (Engine engine = Engine.open(Path.of("models/llama"));
 *      BitDeltaServer server = BitDeltaServer.start(engine, ServerOptions.defaults().port(8000))) {
 *     engine.addTenant("alice", Path.of("alice.bitdelta"));
 *     System.out.println("serving on " + server.url());
 *     server.awaitStop();
 * }
 * }</pre>
 *
 * Endpoints: {@code GET /v1/models}, {@code POST /v1/completions}, {@code POST /v1/chat/completions} (whole or
 * {@code "stream": true} as server-sent events), {@code GET /v1/tenants} (memory per tenant),
 * {@code POST /v1/tenants} and {@code DELETE /v1/tenants/{name}} (load and unload at run time),
 * {@code GET /v1/stats}, {@code GET /health}, {@code GET /metrics} (Prometheus) and the side-by-side page at
 * {@code /}. Errors come in OpenAI's shape {@code {"error": {"message", "type", "param", "code"}}}.
 *
 * <p>The server does not own the engine: closing the server leaves the engine open.
 */
public final class BitDeltaServer implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(BitDeltaServer.class);

    private final WebServer webServer;
    private final ServerOptions options;
    private final Object stopLock = new Object();
    private boolean stopped;

    private BitDeltaServer(WebServer webServer, ServerOptions options) {
        this.webServer = webServer;
        this.options = options;
    }

    /** Starts serving {@code engine} with {@code options}; returns once the port is bound. */
    public static BitDeltaServer start(Engine engine, ServerOptions options) {
        Objects.requireNonNull(engine, "engine");
        Objects.requireNonNull(options, "options");
        ServerMetrics metrics = new ServerMetrics(engine);
        OpenAiRoutes routes = new OpenAiRoutes(engine, options, metrics);
        WebServer webServer = WebServer.builder()
                .host(options.host())
                .port(options.port())
                .maxPayloadSize(OpenAiRoutes.drainLimit(options.maxRequestBytes()))
                .idleConnectionTimeout(options.idleTimeout())
                .connectionOptions(socket -> socket.readTimeout(options.readTimeout()).tcpNoDelay(true))
                // Errors Helidon answers before any route runs (a body over the limit, a malformed request line)
                // get OpenAI's error shape too.
                .directHandlers(handlers -> {
                    DirectHandler handler = (request, eventType, status, headers, message) ->
                            directError(options.maxRequestBytes(), status, headers, message);
                    handlers.addHandler(DirectHandler.EventType.PAYLOAD_TOO_LARGE, handler);
                    handlers.addHandler(DirectHandler.EventType.BAD_REQUEST, handler);
                })
                .routing(routing -> {
                    routing.addFilter(new AccessFilter(options.apiKey(), metrics));
                    routes.register(routing);
                    routing.register("/", StaticContentService.builder("bitdelta-web").welcomeFileName("index.html").build());
                })
                .build()
                .start();
        BitDeltaServer server = new BitDeltaServer(webServer, options);
        LOG.info("serving {} on {} (API key {})", engine.tenants(), server.url(), options.apiKey() == null ? "not required" : "required");
        return server;
    }

    private static DirectHandler.TransportResponse directError(long maxRequestBytes, io.helidon.http.Status status,
                                                               io.helidon.http.ServerResponseHeaders headers, String message) {
        // Helidon reports a body over maxPayloadSize as BAD_REQUEST with status 413: go by the status.
        boolean tooLarge = status.code() == 413;
        String text = tooLarge
                ? "The request body is larger than this server accepts (" + maxRequestBytes + " bytes; ServerOptions.maxRequestBytes, --max-request-bytes)"
                : "Bad request" + (message == null || message.isBlank() ? "" : ": " + message);
        String type = status.code() >= 500 ? "server_error" : "invalid_request_error";
        String code = tooLarge ? "request_too_large" : null;
        headers.set(HeaderNames.CONTENT_TYPE, "application/json");
        return DirectHandler.TransportResponse.builder()
                .status(status)
                .headers(headers)
                .entity(Json.bytes(Json.error(text, type, null, code)))
                .build();
    }

    /** The port it listens on (the one chosen, where the options asked for 0). */
    public int port() {
        return webServer.port();
    }

    /** http://HOST:PORT/ (0.0.0.0 shown as localhost). */
    public URI url() {
        String host = options.host().equals("0.0.0.0") || options.host().equals("::") ? "localhost" : options.host();
        if (host.contains(":")) {
            host = "[" + host + "]";
        }
        return URI.create("http://" + host + ":" + port() + "/");
    }

    public ServerOptions options() {
        return options;
    }

    /** Waits until the server is stopped ({@link #close()} from another thread, or the JVM's shutdown). */
    public void awaitStop() throws InterruptedException {
        synchronized (stopLock) {
            while (!stopped) {
                stopLock.wait();
            }
        }
    }

    /** Stops listening; streams still open are cut. The engine stays open. Idempotent. */
    @Override
    public void close() {
        synchronized (stopLock) {
            if (stopped) {
                return;
            }
            stopped = true;
            stopLock.notifyAll();
        }
        webServer.stop();
    }
}
