package org.bitdelta.server;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.BufferedInputStream;
import java.io.ByteArrayInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.net.http.HttpRequest;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Every wrong request gets its status and OpenAI's error shape, with the wrong field named. */
class BadRequestsTest {
    static final String KEY = "test-key-123";
    static BitDeltaServer server;
    static HttpTestClient client;

    @BeforeAll
    static void start() {
        server = TestServer.start(ServerOptions.defaults().apiKey(KEY).maxRequestBytes(8192));
        client = new HttpTestClient(server, KEY);
    }

    @AfterAll
    static void stop() {
        client.close();
        server.close();
    }

    static JsonNode expectError(HttpTestClient.Answer answer, int status, String param) {
        assertEquals(status, answer.status(), answer.body());
        assertTrue(answer.response().headers().firstValue("content-type").orElse("").startsWith("application/json"), answer.body());
        JsonNode error = answer.error();
        if (param != null) {
            assertEquals(param, error.get("param").asText(), answer.body());
        }
        assertTrue(error.get("message").asText().length() > 10, answer.body());
        return error;
    }

    static String chat(Object... extra) {
        Object[] fields = new Object[4 + extra.length];
        fields[0] = "model";
        fields[1] = "alice";
        fields[2] = "messages";
        fields[3] = List.of(Map.of("role", "user", "content", "Hello"));
        System.arraycopy(extra, 0, fields, 4, extra.length);
        return HttpTestClient.json(fields);
    }

    @Test
    void unknownModelIs404() {
        JsonNode error = expectError(client.post("/v1/chat/completions", HttpTestClient.json("model", "bob", "messages",
                List.of(Map.of("role", "user", "content", "Hi")))), 404, "model");
        assertEquals("model_not_found", error.get("code").asText());
        assertTrue(error.get("message").asText().contains("bob"), error.toString());
        expectError(client.post("/v1/completions", HttpTestClient.json("model", "bob", "prompt", "Hi")), 404, "model");
        expectError(client.post("/v1/completions", HttpTestClient.json("model", "bob", "prompt", "Hi", "stream", true)), 404, "model");
        expectError(client.get("/v1/models/bob"), 404, "model");
        assertEquals(200, client.get("/v1/models/alice").status());
    }

    @Test
    void malformedJsonIs400() {
        JsonNode error = expectError(client.post("/v1/chat/completions", "{\"model\": \"alice\", \"messages\": ["), 400, null);
        assertTrue(error.get("message").asText().contains("not valid JSON"), error.toString());
        expectError(client.post("/v1/completions", "[1, 2]"), 400, null);
        expectError(client.post("/v1/completions", ""), 400, null);
        expectError(client.post("/v1/completions", "{\"model\": \"alice\", \"prompt\": \"a\"} trailing"), 400, null);
    }

    @Test
    void missingOrMistypedFieldsAre400WithTheFieldNamed() {
        expectError(client.post("/v1/chat/completions", HttpTestClient.json("messages", List.of(Map.of("role", "user", "content", "Hi")))), 400,
                "model");
        expectError(client.post("/v1/chat/completions", HttpTestClient.json("model", "alice")), 400, "messages");
        expectError(client.post("/v1/chat/completions", HttpTestClient.json("model", "alice", "messages", List.of())), 400, "messages");
        expectError(client.post("/v1/chat/completions", HttpTestClient.json("model", "alice", "messages", List.of(Map.of("content", "Hi")))),
                400, "messages[0].role");
        expectError(client.post("/v1/completions", HttpTestClient.json("model", "alice")), 400, "prompt");
        expectError(client.post("/v1/completions", HttpTestClient.json("model", 7, "prompt", "Hi")), 400, "model");
        expectError(client.post("/v1/completions", HttpTestClient.json("model", "alice", "prompt", "Hi", "max_tokens", "ten")), 400, "max_tokens");
        expectError(client.post("/v1/completions", HttpTestClient.json("model", "alice", "prompt", "Hi", "stop", 5)), 400, "stop");
    }

    @Test
    void samplingParametersOutOfRangeAre400() {
        expectError(client.post("/v1/chat/completions", chat("max_tokens", 0)), 400, "max_tokens");
        expectError(client.post("/v1/chat/completions", chat("max_completion_tokens", -5)), 400, "max_completion_tokens");
        JsonNode error = expectError(client.post("/v1/chat/completions", chat("temperature", 2.5)), 400, "temperature");
        assertTrue(error.get("message").asText().contains("[0, 2.0]"), error.toString());
        expectError(client.post("/v1/chat/completions", chat("temperature", -0.1)), 400, "temperature");
        expectError(client.post("/v1/chat/completions", chat("top_p", 0)), 400, "top_p");
        expectError(client.post("/v1/chat/completions", chat("top_p", 1.5)), 400, "top_p");
        expectError(client.post("/v1/chat/completions", chat("top_k", -2)), 400, "top_k");
    }

    @Test
    void whatTheServerCannotHonourIsRefusedByName() {
        JsonNode error = expectError(client.post("/v1/chat/completions", chat("n", 2)), 400, "n");
        assertTrue(error.get("message").asText().contains("'n' must be 1"), error.toString());
        expectError(client.post("/v1/chat/completions", chat("tools", List.of(Map.of("type", "function")))), 400, "tools");
        expectError(client.post("/v1/chat/completions", chat("logprobs", true)), 400, "logprobs");
        expectError(client.post("/v1/chat/completions", chat("presence_penalty", 0.5)), 400, "presence_penalty");
        expectError(client.post("/v1/chat/completions", chat("stream_options", Map.of("include_usage", true))), 400, "stream_options");
        expectError(client.post("/v1/completions", HttpTestClient.json("model", "alice", "prompt", List.of("a", "b"))), 400, "prompt");
        expectError(client.post("/v1/completions", HttpTestClient.json("model", "alice", "prompt", "a", "echo", true)), 400, "echo");
    }

    @Test
    void unknownFieldsAreIgnored() {
        HttpTestClient.Answer answer = client.post("/v1/chat/completions", chat("max_tokens", 3, "temperature", 0, "user", "someone",
                "metadata", Map.of("k", "v"), "something_new", List.of(1, 2)));
        assertEquals(200, answer.status(), answer.body());
    }

    @Test
    void aPromptOverTheContextIs400NamingTheLimit() {
        String longPrompt = "Once upon a time there was a dog. ".repeat(120);
        JsonNode error = expectError(client.post("/v1/completions", HttpTestClient.json("model", "alice", "prompt", longPrompt)), 400, "prompt");
        String message = error.get("message").asText();
        assertTrue(message.contains("512"), "the message names the context limit: " + message);
        error = expectError(client.post("/v1/chat/completions", HttpTestClient.json("model", "alice", "messages",
                List.of(Map.of("role", "user", "content", longPrompt)))), 400, "messages");
        assertTrue(error.get("message").asText().contains("512"), error.toString());
    }

    @Test
    void aMissingOrWrongApiKeyIs401() {
        try (HttpTestClient anonymous = new HttpTestClient(server); HttpTestClient wrong = new HttpTestClient(server, "not-the-key")) {
            JsonNode error = expectError(anonymous.get("/v1/models"), 401, null);
            assertEquals("invalid_api_key", error.get("code").asText());
            assertEquals("Bearer", anonymous.get("/v1/models").response().headers().firstValue("www-authenticate").orElse(null));
            expectError(wrong.post("/v1/chat/completions", chat()), 401, null);
            expectError(wrong.get("/v1/tenants"), 401, null);
            expectError(wrong.delete("/v1/tenants/alice"), 401, null);
            // Open without the key: health checks, Prometheus and the page's static files.
            assertEquals(200, anonymous.get("/health").status());
            assertEquals(200, anonymous.get("/metrics").status());
            assertEquals(200, anonymous.get("/").status());
        }
        assertEquals(200, client.get("/v1/models").status());
    }

    @Test
    void aBodyOverTheLimitIs413() {
        String big = chat("padding", "x".repeat(20_000));
        HttpTestClient.Answer tooLarge = client.post("/v1/chat/completions", big);
        System.out.println("413 answer: " + tooLarge.body());
        JsonNode error = expectError(tooLarge, 413, null);
        assertEquals("request_too_large", error.get("code").asText());
        // Sent chunked, without a Content-Length: refused as it is read.
        HttpTestClient.Answer chunked = client.send(client.request("/v1/chat/completions").header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofInputStream(() -> new ByteArrayInputStream(big.getBytes()))).build());
        expectError(chunked, 413, null);
        // The server still answers afterwards.
        assertEquals(200, client.get("/v1/models").status());
    }

    /**
     * A client that sends its whole over-limit body before it reads gets the 413 (the server reads and drops the body
     * first, rather than answering and closing under the client's write), and its connection serves the next request.
     */
    @Test
    void anOverLimitBodyIsReadBeforeThe413AndTheConnectionStaysUsable() throws IOException {
        wholeBodyThenModels(KEY, 413, "request_too_large");
    }

    /**
     * A client with a wrong key that sends its whole body before it reads gets the 401 (not a broken pipe), and the same
     * connection then serves a request with the right key: Helidon reads and drops the body the filter left unread, up
     * to its payload limit (the server's drainLimit).
     */
    @Test
    void aBodyWithAWrongKeyIsReadBeforeThe401AndTheConnectionStaysUsable() throws IOException {
        wholeBodyThenModels("wrong-key", 401, "invalid_api_key");
    }

    /**
     * Writes a chat request with a 200 KB body under {@code key} before reading anything, expects {@code status} with
     * {@code code}, then lists the models with the right key on the same connection.
     */
    private static void wholeBodyThenModels(String key, int status, String code) throws IOException {
        byte[] body = chat("padding", "x".repeat(200_000)).getBytes(StandardCharsets.UTF_8);
        try (Socket socket = new Socket(server.url().getHost(), server.port())) {
            socket.setSoTimeout(30_000);
            OutputStream out = socket.getOutputStream();
            InputStream in = new BufferedInputStream(socket.getInputStream());
            out.write(("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + key
                    + "\r\nContent-Type: application/json\r\nContent-Length: " + body.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
            out.write(body); // 200 KB: more than the socket buffers hold, so the server must read it for this to return
            out.flush();
            RawAnswer refused = RawAnswer.read(in);
            assertEquals(status, refused.status(), refused.body());
            assertTrue(refused.body().contains(code), refused.body());
            out.write(("GET /v1/models HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + KEY + "\r\n\r\n")
                    .getBytes(StandardCharsets.US_ASCII));
            out.flush();
            RawAnswer models = RawAnswer.read(in);
            assertEquals(200, models.status(), models.body());
            assertTrue(models.body().contains("\"alice\""), models.body());
        }
    }

    /** One HTTP/1.1 response read off a socket: status line, headers, a Content-Length body (the server's JSON answers). */
    private record RawAnswer(int status, String body) {
        static RawAnswer read(InputStream in) throws IOException {
            String statusLine = line(in);
            int status = Integer.parseInt(statusLine.split(" ")[1]);
            int length = -1;
            for (String header = line(in); !header.isEmpty(); header = line(in)) {
                String lower = header.toLowerCase(java.util.Locale.ROOT);
                if (lower.startsWith("content-length:")) {
                    length = Integer.parseInt(lower.substring(15).trim());
                }
            }
            assertTrue(length >= 0, "a response without Content-Length: " + statusLine);
            return new RawAnswer(status, new String(in.readNBytes(length), StandardCharsets.UTF_8));
        }

        private static String line(InputStream in) throws IOException {
            StringBuilder line = new StringBuilder();
            for (int c = in.read(); c != '\n'; c = in.read()) {
                if (c < 0) {
                    throw new EOFException("the connection closed mid-response after: " + line);
                }
                if (c != '\r') {
                    line.append((char) c);
                }
            }
            return line.toString();
        }
    }
}
