package org.bitdelta.server.internal;

import io.helidon.http.HeaderNames;
import io.helidon.webserver.http.Filter;
import io.helidon.webserver.http.FilterChain;
import io.helidon.webserver.http.RoutingRequest;
import io.helidon.webserver.http.RoutingResponse;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;

/**
 * Runs before every route: refuses the API (/v1/...) without the right {@code Authorization: Bearer KEY} when a key
 * is set (401, OpenAI's error shape), and counts each request by route and status once it was answered. /health,
 * /metrics and the page's static files stay open: they carry no prompts or answers, and a load balancer or a
 * Prometheus scraper can read them without the key.
 */
public final class AccessFilter implements Filter {
    private final byte[] apiKey;
    private final ServerMetrics metrics;

    public AccessFilter(String apiKey, ServerMetrics metrics) {
        this.apiKey = apiKey == null ? null : apiKey.getBytes(StandardCharsets.UTF_8);
        this.metrics = metrics;
    }

    @Override
    public void filter(FilterChain chain, RoutingRequest request, RoutingResponse response) {
        String path = request.path().path();
        try {
            if (apiKey != null && path.startsWith("/v1/") && !authorized(request.headers().value(HeaderNames.AUTHORIZATION).orElse(null))) {
                boolean missing = request.headers().value(HeaderNames.AUTHORIZATION).isEmpty();
                OpenAiRoutes.sendError(response, new ApiError(401, "invalid_request_error", null, "invalid_api_key", missing
                        ? "You didn't provide an API key: send it as 'Authorization: Bearer KEY' (the server's --api-key or BITDELTA_API_KEY)"
                        : "Incorrect API key provided in the Authorization header"));
                return;
            }
            chain.proceed();
        } finally {
            metrics.httpRequest(OpenAiRoutes.routeLabel(path), response.status().code());
        }
    }

    private boolean authorized(String header) {
        if (header == null || !header.regionMatches(true, 0, "Bearer ", 0, 7)) {
            return false;
        }
        byte[] given = header.substring(7).trim().getBytes(StandardCharsets.UTF_8);
        // Constant time, so that the key cannot be guessed byte by byte from response times.
        return MessageDigest.isEqual(given, apiKey);
    }
}
