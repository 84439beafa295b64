package org.bitdelta.server;

import java.time.Duration;
import java.util.Objects;

/**
 * How a {@link BitDeltaServer} listens and what it allows. Immutable; every setter returns a copy.
 *
 * <pre>{@code
 * ServerOptions.defaults().port(8000).apiKey(System.getenv("BITDELTA_API_KEY"))
 * }</pre>
 */
public final class ServerOptions {
    private final String host;
    private final int port;
    private final String apiKey;
    private final long maxRequestBytes;
    private final Duration readTimeout;
    private final Duration idleTimeout;
    private final Duration streamHeartbeat;
    private final boolean adminEndpoints;

    private ServerOptions(String host, int port, String apiKey, long maxRequestBytes, Duration readTimeout, Duration idleTimeout,
                          Duration streamHeartbeat, boolean adminEndpoints) {
        this.host = host;
        this.port = port;
        this.apiKey = apiKey;
        this.maxRequestBytes = maxRequestBytes;
        this.readTimeout = readTimeout;
        this.idleTimeout = idleTimeout;
        this.streamHeartbeat = streamHeartbeat;
        this.adminEndpoints = adminEndpoints;
    }

    /**
     * Loopback (127.0.0.1) port 8000, no API key, request bodies up to 4 MiB, 60 s to read a request, idle
     * connections closed after 5 minutes, a keep-alive comment every 10 s while a stream waits for its first token,
     * the admin endpoints (load and unload tenants) on.
     */
    public static ServerOptions defaults() {
        return new ServerOptions("127.0.0.1", 8000, null, 4L << 20, Duration.ofSeconds(60), Duration.ofMinutes(5), Duration.ofSeconds(10),
                true);
    }

    /** The address to listen on: "127.0.0.1" (this machine only, the default), "0.0.0.0" (every interface), a name. */
    public ServerOptions host(String value) {
        Objects.requireNonNull(value, "host");
        if (value.isBlank()) {
            throw new IllegalArgumentException("host is blank");
        }
        return new ServerOptions(value, port, apiKey, maxRequestBytes, readTimeout, idleTimeout, streamHeartbeat, adminEndpoints);
    }

    /** The TCP port; 0 picks a free one ({@link BitDeltaServer#port()} tells which). */
    public ServerOptions port(int value) {
        if (value < 0 || value > 65535) {
            throw new IllegalArgumentException("port must be in [0, 65535], got " + value);
        }
        return new ServerOptions(host, value, apiKey, maxRequestBytes, readTimeout, idleTimeout, streamHeartbeat, adminEndpoints);
    }

    /**
     * Requires {@code Authorization: Bearer KEY} on the API (/v1/...); null or empty for none. /health, /metrics
     * and the web page's static files stay open.
     */
    public ServerOptions apiKey(String key) {
        String value = key == null || key.isEmpty() ? null : key;
        return new ServerOptions(host, port, value, maxRequestBytes, readTimeout, idleTimeout, streamHeartbeat, adminEndpoints);
    }

    /**
     * Request bodies larger than this are refused with 413: read and dropped first, up to 64 MiB past the limit, so
     * that the client, still sending, sees the answer; a larger body gets the 413 at once and its connection closed.
     */
    public ServerOptions maxRequestBytes(long bytes) {
        if (bytes < 1024) {
            throw new IllegalArgumentException("maxRequestBytes must be at least 1024, got " + bytes);
        }
        return new ServerOptions(host, port, apiKey, bytes, readTimeout, idleTimeout, streamHeartbeat, adminEndpoints);
    }

    /** How long a read from a client's connection may wait (a request that trickles in slower is dropped). */
    public ServerOptions readTimeout(Duration value) {
        return new ServerOptions(host, port, apiKey, maxRequestBytes, positive("readTimeout", value), idleTimeout, streamHeartbeat,
                adminEndpoints);
    }

    /** Keep-alive connections with no request for this long are closed. */
    public ServerOptions idleTimeout(Duration value) {
        return new ServerOptions(host, port, apiKey, maxRequestBytes, readTimeout, positive("idleTimeout", value), streamHeartbeat,
                adminEndpoints);
    }

    /**
     * While a stream has nothing to send (its request waits for a batch slot or its prompt is being read), an SSE
     * comment line goes out this often: clients ignore it, and a client that went away is noticed then, not only at
     * the first token.
     */
    public ServerOptions streamHeartbeat(Duration value) {
        return new ServerOptions(host, port, apiKey, maxRequestBytes, readTimeout, idleTimeout, positive("streamHeartbeat", value),
                adminEndpoints);
    }

    /** Whether POST /v1/tenants and DELETE /v1/tenants/{name} (load and unload tenants at run time) are served. */
    public ServerOptions adminEndpoints(boolean enabled) {
        return new ServerOptions(host, port, apiKey, maxRequestBytes, readTimeout, idleTimeout, streamHeartbeat, enabled);
    }

    private static Duration positive(String name, Duration value) {
        Objects.requireNonNull(value, name);
        if (value.isNegative() || value.isZero()) {
            throw new IllegalArgumentException(name + " must be positive, got " + value);
        }
        return value;
    }

    public String host() {
        return host;
    }

    public int port() {
        return port;
    }

    /** The API key, or null when the API is open. */
    public String apiKey() {
        return apiKey;
    }

    public long maxRequestBytes() {
        return maxRequestBytes;
    }

    public Duration readTimeout() {
        return readTimeout;
    }

    public Duration idleTimeout() {
        return idleTimeout;
    }

    public Duration streamHeartbeat() {
        return streamHeartbeat;
    }

    public boolean adminEndpoints() {
        return adminEndpoints;
    }

    @Override
    public String toString() {
        return "ServerOptions[host=" + host + ", port=" + port + ", apiKey=" + (apiKey == null ? "none" : "set") + ", maxRequestBytes="
                + maxRequestBytes + ", readTimeout=" + readTimeout + ", idleTimeout=" + idleTimeout + ", streamHeartbeat=" + streamHeartbeat
                + ", adminEndpoints=" + adminEndpoints + "]";
    }
}
