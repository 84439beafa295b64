package org.bitdelta.server;

import org.junit.jupiter.api.Test;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

class SmokeTest {
    @Test
    void smoke() throws Exception {
        try (BitDeltaServer server = TestServer.start(); HttpClient client = HttpClient.newHttpClient()) {
            for (String path : new String[]{"/v1/models", "/health", "/v1/tenants", "/metrics"}) {
                HttpResponse<String> r = client.send(HttpRequest.newBuilder(server.url().resolve(path)).build(), HttpResponse.BodyHandlers.ofString());
                System.out.println(path + " " + r.statusCode() + " " + r.body().substring(0, Math.min(600, r.body().length())));
            }
            for (String body : new String[]{
                    "{\"model\":\"alice\",\"prompt\":\"Once upon a time\",\"max_tokens\":20,\"temperature\":0}",
                    "{\"model\":\"alice\",\"prompt\":\"Once upon a time\",\"max_tokens\":5,\"temperature\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"}) {
                HttpResponse<String> r = client.send(HttpRequest.newBuilder(server.url().resolve("/v1/completions")).POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
                System.out.println(r.statusCode() + " " + r.headers().map() + "\n" + r.body());
            }
            HttpResponse<String> r = client.send(HttpRequest.newBuilder(server.url().resolve("/v1/chat/completions")).POST(HttpRequest.BodyPublishers.ofString(
                    "{\"model\":\"shakespeare\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}],\"max_tokens\":5,\"temperature\":0,\"stream\":true}")).build(), HttpResponse.BodyHandlers.ofString());
            System.out.println(r.statusCode() + "\n" + r.body());
            r = client.send(HttpRequest.newBuilder(server.url().resolve("/")).build(), HttpResponse.BodyHandlers.ofString());
            System.out.println(r.statusCode() + "\n" + r.body());
        }
    }
}
