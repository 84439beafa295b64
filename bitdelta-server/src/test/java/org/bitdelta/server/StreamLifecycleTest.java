package org.bitdelta.server;

import org.bitdelta.serving.Engine;
import org.bitdelta.serving.EngineStats;
import org.bitdelta.serving.FinishReason;
import org.bitdelta.serving.Request;
import org.junit.jupiter.api.Test;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.bitdelta.server.TestServer.waitFor;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** What happens to streams when their client goes away, or their tenant is unloaded while they run. */
class StreamLifecycleTest {
    static final int LONG = 480;

    static String longStream(String model) {
        return HttpTestClient.json("model", model, "prompt", "Once upon a time", "max_tokens", LONG, "ignore_eos", true, "temperature", 0,
                "stream", true);
    }

    static EngineStats.TenantStats tenant(Engine engine, String name) {
        return engine.stats().tenants().stream().filter(t -> t.name().equals(name)).findFirst().orElse(null);
    }

    @Test
    void aClientThatDisconnectsMidStreamFreesItsBatchSlotAtOnce() throws Exception {
        Engine engine = TestServer.engine();
        waitFor("an idle engine", 30_000, () -> engine.stats().running() == 0 && engine.stats().waiting() == 0);
        EngineStats before = engine.stats();
        try (BitDeltaServer server = TestServer.start()) {
            long closedAt;
            try (EngineGate gate = EngineGate.hold(engine); // the engine waits between steps while the client reads
                 Socket socket = new Socket("127.0.0.1", server.port())) {
                byte[] body = longStream("alice").getBytes(StandardCharsets.UTF_8);
                OutputStream out = socket.getOutputStream();
                out.write(("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " + body.length
                        + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
                out.write(body);
                out.flush();
                gate.admit(1, 8); // admitted and about 7 of its LONG tokens generated
                BufferedReader in = new BufferedReader(new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8));
                String status = in.readLine();
                assertTrue(status.startsWith("HTTP/1.1 200"), status);
                int events = 0;
                for (String line = in.readLine(); line != null && events < 3; line = in.readLine()) {
                    if (line.contains("data: {")) {
                        events++;
                    }
                }
                assertEquals(3, events, "three events before hanging up");
                assertEquals(1, tenant(engine, "alice").running(), "the stream's request runs while its client reads");
                closedAt = System.nanoTime();
            } // the socket closes, then the gate opens (and cancels its filler)
            long freedAfter = waitFor("the batch slot to be freed", 5_000, () -> engine.stats().running() == 0);
            EngineStats after = engine.stats();
            long generated = after.generatedTokens() - before.generatedTokens();
            System.out.printf("disconnect: batch slot freed %d ms after the client hung up, after %d tokens in all (the gate's filler's included; the stream asked for %d)%n",
                    TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - closedAt), generated, LONG);
            assertEquals(before.requestsFinished().get(FinishReason.CANCELLED) + 2, after.requestsFinished().get(FinishReason.CANCELLED),
                    "the completion was cancelled, not run to its end (and the gate's filler)");
            assertTrue(freedAfter < 2_000, "the slot was freed only after " + freedAfter + " ms");
        }
    }

    @Test
    void aTenantUnloadedWhileItsRequestsRunEndsThemWithAnErrorWhileTheOthersGoOn() throws Exception {
        Engine engine = TestServer.engine();
        try (BitDeltaServer server = TestServer.start(); HttpTestClient client = new HttpTestClient(server)) {
            String file = TestServer.deltaFolder().resolve("shakespeare.bitdelta").toString();
            HttpTestClient.Answer loaded = client.post("/v1/tenants", HttpTestClient.json("name", "doomed", "path", file));
            assertEquals(201, loaded.status(), loaded.body());
            assertTrue(loaded.json().get("bytes").asLong() > 0, loaded.body());
            assertEquals(409, client.post("/v1/tenants", HttpTestClient.json("name", "doomed", "path", file)).status());
            assertTrue(client.get("/v1/models").body().contains("\"doomed\""));

            String other = HttpTestClient.json("model", "alice", "prompt", "The little dog", "max_tokens", 200, "ignore_eos", true,
                    "temperature", 0, "stream", true);
            String otherAlone = engine.submit(Request.text("alice", "The little dog").maxTokens(200).ignoreEos(true).temperature(0)).result().text();

            CompletableFuture<HttpTestClient.Streamed> doomedStream;
            CompletableFuture<HttpTestClient.Answer> doomedWhole;
            CompletableFuture<HttpTestClient.Streamed> otherStream;
            try (EngineGate gate = EngineGate.hold(engine)) { // the engine waits between steps while the test acts
                doomedStream = CompletableFuture.supplyAsync(() -> client.stream("/v1/completions", longStream("doomed")),
                        command -> Thread.ofVirtual().start(command));
                doomedWhole = CompletableFuture.supplyAsync(() -> client.post("/v1/completions",
                        HttpTestClient.json("model", "doomed", "prompt", "A bird", "max_tokens", LONG, "ignore_eos", true)),
                        command -> Thread.ofVirtual().start(command));
                otherStream = CompletableFuture.supplyAsync(() -> client.stream("/v1/completions", other),
                        command -> Thread.ofVirtual().start(command));
                gate.admit(3, 3); // admitted and a few tokens into their LONG
                EngineStats.TenantStats running = tenant(engine, "doomed");
                assertEquals(2, running == null ? 0 : running.running(), "both of doomed's requests run: " + engine.stats());
                HttpTestClient.Answer unloaded = client.delete("/v1/tenants/doomed");
                assertEquals(200, unloaded.status(), unloaded.body());
                assertTrue(unloaded.json().get("deleted").asBoolean(), unloaded.body());
            }

            HttpTestClient.Streamed doomed = doomedStream.get(30, TimeUnit.SECONDS);
            assertNotNull(doomed.error(), "the stream ends with an error event: " + doomed.events());
            assertTrue(doomed.error().get("message").asText().contains("doomed"), doomed.error().toString());
            assertTrue(doomed.done(), "and then [DONE]: " + doomed.events());
            assertNull(doomed.finishReason(), "no finish_reason for a failed completion");
            assertTrue(doomed.text().length() < 2000, "it stopped early");

            HttpTestClient.Answer whole = doomedWhole.get(30, TimeUnit.SECONDS);
            assertEquals(500, whole.status(), whole.body());
            assertEquals("server_error", whole.error().get("type").asText());

            HttpTestClient.Streamed survivor = otherStream.get(60, TimeUnit.SECONDS);
            assertNull(survivor.error(), "the other tenant's stream goes on: " + survivor.error());
            assertEquals("length", survivor.finishReason());
            assertEquals(otherAlone, survivor.text(), "and gives the answer it gives alone");

            assertFalse(client.get("/v1/models").body().contains("\"doomed\""));
            assertEquals(404, client.post("/v1/completions", HttpTestClient.json("model", "doomed", "prompt", "Hi")).status());
            assertEquals(404, client.delete("/v1/tenants/doomed").status());
            assertEquals(400, client.delete("/v1/tenants/base").status());
            assertEquals(400, client.post("/v1/tenants", HttpTestClient.json("name", "ghost", "path", "/no/such/file.bitdelta")).status());
            System.out.println("unload: the failed stream's error event: " + doomed.error());
        }
    }

}
