package org.bitdelta.server;

import com.fasterxml.jackson.databind.JsonNode;
import org.bitdelta.serving.Completion;
import org.bitdelta.serving.Engine;
import org.bitdelta.serving.Request;
import org.junit.jupiter.api.Test;

import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** /v1/models, /v1/tenants, /v1/stats, /health, /metrics, and the heartbeat of a stream that waits. */
class ServerEndpointsTest {
    private static Matcher sample(String scrape, String name, String labels) {
        return Pattern.compile("(?m)^" + Pattern.quote(name) + (labels == null ? "" : "\\{[^}]*" + Pattern.quote(labels) + "[^}]*}")
                + " ([0-9.eE+-]+)$").matcher(scrape);
    }

    static double metric(String scrape, String name, String labels) {
        Matcher matcher = sample(scrape, name, labels);
        if (!matcher.find()) {
            throw new AssertionError("no " + name + (labels == null ? "" : "{" + labels + "}") + " in the scrape:\n" + scrape);
        }
        return Double.parseDouble(matcher.group(1));
    }

    @Test
    void modelsTenantsStatsAndHealth() {
        try (BitDeltaServer server = TestServer.start(); HttpTestClient client = new HttpTestClient(server)) {
            JsonNode models = client.get("/v1/models").json();
            assertEquals("list", models.get("object").asText());
            List<String> ids = new ArrayList<>();
            for (JsonNode model : models.get("data")) {
                assertEquals("model", model.get("object").asText());
                assertTrue(model.get("created").asLong() > 1_600_000_000L);
                assertEquals("bitdelta", model.get("owned_by").asText());
                ids.add(model.get("id").asText());
            }
            assertEquals(List.of("base", TestServer.BASE_ALIAS, "alice", "shakespeare", "alice-rows"), ids);

            JsonNode tenants = client.get("/v1/tenants").json();
            assertEquals(TestServer.BASE_ALIAS, tenants.get("base_alias").asText());
            Map<String, Long> bytes = new java.util.HashMap<>();
            tenants.get("data").forEach(tenant -> bytes.put(tenant.get("id").asText(), tenant.get("bytes").asLong()));
            assertTrue(bytes.get("alice") > 0 && bytes.get("alice") * 4 < bytes.get("base"), "a 1-bit delta is a fraction of the base: " + bytes);

            JsonNode stats = client.get("/v1/stats").json();
            assertEquals(512, stats.get("context_length").asInt());
            assertTrue(stats.get("kv_blocks_total").asInt() > 0, stats.toString());
            assertTrue(stats.get("memory").get("base_bytes").asLong() > 0, stats.toString());
            assertEquals(4, stats.get("tenants").size());

            HttpTestClient.Answer health = client.get("/health");
            assertEquals(200, health.status());
            assertEquals("ok", health.json().get("status").asText());
        }
    }

    @Test
    void metricsCoverTheEngineAndEachCompletion() throws InterruptedException {
        try (BitDeltaServer server = TestServer.start(); HttpTestClient client = new HttpTestClient(server)) {
            HttpTestClient.Streamed streamed = client.stream("/v1/completions", HttpTestClient.json("model", "shakespeare", "prompt", "The king",
                    "max_tokens", 20, "ignore_eos", true, "temperature", 0, "stream", true));
            assertEquals("length", streamed.finishReason());
            // The completion's metrics are recorded, and its HTTP request counted, once its handler has returned, which
            // can be after the client read [DONE]: scrape until they are there.
            String[] scraped = new String[1];
            TestServer.waitFor("the completion's metrics", 10_000, () -> {
                HttpTestClient.Answer answer = client.get("/metrics");
                assertEquals(200, answer.status());
                assertTrue(answer.response().headers().firstValue("content-type").orElse("").startsWith("text/plain"),
                        answer.response().headers().toString());
                scraped[0] = answer.body();
                return sample(scraped[0], "bitdelta_request_latency_seconds_count", "model=\"shakespeare\"").find()
                        && sample(scraped[0], "bitdelta_http_requests_total", "route=\"/v1/completions\",status=\"200\"").find();
            });
            String scrape = scraped[0];
            assertEquals(0, metric(scrape, "bitdelta_requests_running", null));
            assertEquals(0, metric(scrape, "bitdelta_requests_waiting", null));
            assertTrue(metric(scrape, "bitdelta_batch_size", null) >= 1);
            assertTrue(metric(scrape, "bitdelta_kv_blocks_capacity", null) > 0);
            metric(scrape, "bitdelta_kv_blocks_used", null);
            assertTrue(metric(scrape, "bitdelta_engine_generated_tokens_total", null) >= 20);
            assertTrue(metric(scrape, "bitdelta_time_to_first_token_seconds_count", "model=\"shakespeare\"") >= 1);
            assertTrue(metric(scrape, "bitdelta_inter_token_latency_seconds_count", "model=\"shakespeare\"") >= 19);
            assertTrue(metric(scrape, "bitdelta_request_latency_seconds_count", "model=\"shakespeare\"") >= 1);
            assertTrue(metric(scrape, "bitdelta_completion_tokens_total", "model=\"shakespeare\"") >= 20);
            assertTrue(metric(scrape, "bitdelta_tenant_bytes", "tenant=\"shakespeare\"") > 0);
            assertTrue(metric(scrape, "bitdelta_tenant_device_bytes", "tenant=\"shakespeare\"") > 0, "resident after serving");
            assertTrue(metric(scrape, "bitdelta_memory_bytes", "purpose=\"base\"") > 0);
            assertTrue(metric(scrape, "bitdelta_http_requests_total", "route=\"/v1/completions\",status=\"200\"") >= 1);
        }
    }

    @Test
    void aWaitingStreamSendsHeartbeatsAndIsCancelledWhenItsClientLeaves() throws Exception {
        // An engine of its own with two batch slots, taken by long requests with more queued, so that the HTTP
        // request (for a tenant of its own, to count it apart) waits.
        try (Engine engine = Engine.open(org.bitdelta.testing.TestData.bundledModel("stories260K"),
                org.bitdelta.serving.EngineOptions.defaults().backend("cpu").maxRunning(2))) {
            engine.addTenant("alice", TestServer.deltaFolder().resolve("alice.bitdelta"));
            List<Completion> fillers = new ArrayList<>();
            for (int i = 0; i < 64; i++) { // 32 x 480 steps of queue: it outlasts a slow machine's server start and HTTP setup
                fillers.add(engine.submit(Request.text("base", "Lily wanted to").maxTokens(480).ignoreEos(true).temperature(0)));
            }
            TestServer.waitFor("both slots taken", 10_000, () -> engine.stats().running() == 2);
            try (BitDeltaServer server = BitDeltaServer.start(engine, ServerOptions.defaults().port(0).streamHeartbeat(Duration.ofMillis(20)));
                 HttpTestClient client = new HttpTestClient(server)) {
                HttpResponse<Stream<String>> response = client.open("/v1/completions", HttpTestClient.json("model", "alice", "prompt",
                        "Hi", "max_tokens", 5, "stream", true));
                assertEquals(200, response.statusCode());
                Stream<String> lines = response.body();
                Iterator<String> iterator = lines.iterator();
                int heartbeats = 0;
                while (heartbeats < 3 && iterator.hasNext()) {
                    String line = iterator.next();
                    assertTrue(line.isEmpty() || line.startsWith(": "), "nothing but heartbeats while it waits: " + line);
                    if (line.startsWith(": ")) {
                        heartbeats++;
                    }
                }
                assertEquals(3, heartbeats);
                assertEquals(1, StreamLifecycleTest.tenant(engine, "alice").waiting(), "the HTTP request waits for a slot");
                lines.close();
                long freed = TestServer.waitFor("the waiting request to go", 5_000,
                        () -> StreamLifecycleTest.tenant(engine, "alice").waiting() == 0);
                assertEquals(0, StreamLifecycleTest.tenant(engine, "alice").running(), "it left without ever running");
                assertTrue(engine.stats().waiting() > 0, "it left while requests still queued before it, not when its turn came");
                System.out.println("heartbeat: a waiting request left the queue " + freed + " ms after its client hung up");
            } finally {
                fillers.forEach(Completion::cancel);
            }
        }
    }
}
