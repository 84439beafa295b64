package org.bitdelta.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.stream.Stream;

/** The JDK's HTTP client against a test server, with OpenAI's SSE streams read into {@link Streamed} answers. */
final class HttpTestClient implements AutoCloseable {
    static final ObjectMapper JSON = new ObjectMapper();
    private final HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(10)).build();
    private final URI base;
    private final String apiKey;

    HttpTestClient(BitDeltaServer server) {
        this(server, null);
    }

    HttpTestClient(BitDeltaServer server, String apiKey) {
        this.base = server.url();
        this.apiKey = apiKey;
    }

    record Answer(int status, String body, HttpResponse<String> response) {
        JsonNode json() {
            try {
                return JSON.readTree(body);
            } catch (IOException e) {
                throw new AssertionError("not JSON (status " + status + "): " + body, e);
            }
        }

        /** The error object of an OpenAI error answer, checked for its four fields. */
        JsonNode error() {
            JsonNode error = json().get("error");
            if (error == null || !error.has("message") || !error.has("type") || !error.has("param") || !error.has("code")) {
                throw new AssertionError("not OpenAI's error shape {error: {message, type, param, code}}: " + body);
            }
            return error;
        }
    }

    /**
     * A streamed answer.
     *
     * @param text         the concatenated text (choices[0].text or delta.content)
     * @param finishReason the last finish_reason seen, or null
     * @param error        the error event's error object, or null
     * @param usage        the usage chunk's usage, or null
     * @param events       every data payload, [DONE] included
     */
    record Streamed(int status, String text, String finishReason, JsonNode error, JsonNode usage, List<String> events) {
        boolean done() {
            return !events.isEmpty() && events.getLast().equals("[DONE]");
        }
    }

    HttpRequest.Builder request(String path) {
        HttpRequest.Builder builder = HttpRequest.newBuilder(base.resolve(path)).timeout(Duration.ofSeconds(120));
        if (apiKey != null) {
            builder.header("Authorization", "Bearer " + apiKey);
        }
        return builder;
    }

    Answer get(String path) {
        return send(request(path).GET().build());
    }

    Answer post(String path, String body) {
        return send(request(path).header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build());
    }

    Answer delete(String path) {
        return send(request(path).DELETE().build());
    }

    Answer send(HttpRequest request) {
        try {
            HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
            return new Answer(response.statusCode(), response.body(), response);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }

    /** Opens a stream; the lines come as the server sends them (close the stream to hang up). */
    HttpResponse<Stream<String>> open(String path, String body) {
        try {
            return client.send(request(path).header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                    HttpResponse.BodyHandlers.ofLines());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }

    Streamed stream(String path, String body) {
        HttpResponse<Stream<String>> response = open(path, body);
        try (Stream<String> lines = response.body()) {
            return read(response.statusCode(), lines.iterator());
        }
    }

    static Streamed read(int status, Iterator<String> lines) {
        StringBuilder text = new StringBuilder();
        String finishReason = null;
        JsonNode error = null;
        JsonNode usage = null;
        List<String> events = new ArrayList<>();
        while (lines.hasNext()) {
            String line = lines.next();
            if (!line.startsWith("data: ")) {
                continue;
            }
            String data = line.substring(6);
            events.add(data);
            if (data.equals("[DONE]")) {
                break;
            }
            JsonNode event;
            try {
                event = JSON.readTree(data);
            } catch (IOException e) {
                throw new AssertionError("an event is not JSON: " + data, e);
            }
            if (event.has("error")) {
                error = event.get("error");
                continue;
            }
            if (event.hasNonNull("usage")) {
                usage = event.get("usage");
            }
            for (JsonNode choice : event.get("choices")) {
                JsonNode piece = choice.has("delta") ? choice.get("delta").get("content") : choice.get("text");
                if (piece != null && !piece.isNull()) {
                    text.append(piece.textValue());
                }
                if (choice.hasNonNull("finish_reason")) {
                    finishReason = choice.get("finish_reason").textValue();
                }
            }
        }
        return new Streamed(status, text.toString(), finishReason, error, usage, events);
    }

    static String json(Object... keysAndValues) {
        var node = JSON.createObjectNode();
        for (int i = 0; i < keysAndValues.length; i += 2) {
            node.set((String) keysAndValues[i], JSON.valueToTree(keysAndValues[i + 1]));
        }
        return node.toString();
    }

    @Override
    public void close() {
        client.close();
    }
}
