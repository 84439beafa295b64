package org.bitdelta.server;

import org.bitdelta.serving.Engine;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Load on loopback: 64 concurrent streaming requests over four models (the base and three tenants) all complete,
 * and each greedy answer is the one the same request gets when it is sent alone (the CPU decoder is
 * batch-invariant, so a row's tokens do not depend on what shares its batch).
 */
class ConcurrentStreamsTest {
    static final List<String> MODELS = List.of(TestServer.BASE_ALIAS, "alice", "shakespeare", "alice-rows");
    static final List<String> PROMPTS = List.of("Once upon a time", "The little dog", "Lily wanted to", "One day, a big",
            "Tom and Sue went", "The sun was", "She looked at the", "In the park there",
            "Mom said", "The cat and the", "He found a", "They played with",
            "At night the", "A bird flew", "The king", "Ben had a red");
    static final int MAX_TOKENS = 48;

    static String body(String model, String prompt) {
        return HttpTestClient.json("model", model, "prompt", prompt, "max_tokens", MAX_TOKENS, "temperature", 0, "stream", true,
                "stream_options", java.util.Map.of("include_usage", true));
    }

    @Test
    void sixtyFourConcurrentStreamsEachEqualTheSameRequestAlone() throws Exception {
        Engine engine = TestServer.engine();
        try (BitDeltaServer server = TestServer.start(); HttpTestClient client = new HttpTestClient(server)) {
            List<String[]> requests = new ArrayList<>();
            for (String prompt : PROMPTS) {
                for (String model : MODELS) {
                    requests.add(new String[]{model, prompt});
                }
            }
            assertEquals(64, requests.size());

            long aloneStart = System.nanoTime();
            List<HttpTestClient.Streamed> alone = new ArrayList<>();
            for (String[] request : requests) {
                alone.add(client.stream("/v1/completions", body(request[0], request[1])));
            }
            double aloneSeconds = (System.nanoTime() - aloneStart) / 1e9;

            long concurrentStart = System.nanoTime();
            List<Future<HttpTestClient.Streamed>> futures = new ArrayList<>();
            int maxBatch = 0;
            try (ExecutorService threads = Executors.newVirtualThreadPerTaskExecutor()) {
                for (String[] request : requests) {
                    futures.add(threads.submit(() -> client.stream("/v1/completions", body(request[0], request[1]))));
                }
                while (!futures.stream().allMatch(Future::isDone)) {
                    maxBatch = Math.max(maxBatch, engine.stats().lastStepSequences());
                    TimeUnit.MILLISECONDS.sleep(2);
                }
            }
            double concurrentSeconds = (System.nanoTime() - concurrentStart) / 1e9;
            System.out.printf("64 streams: one at a time %.2f s, all at once %.2f s (largest batch seen: %d)%n", aloneSeconds, concurrentSeconds,
                    maxBatch);

            java.util.Set<String> distinct = new java.util.HashSet<>();
            for (int i = 0; i < requests.size(); i++) {
                HttpTestClient.Streamed together = futures.get(i).get();
                HttpTestClient.Streamed single = alone.get(i);
                String what = requests.get(i)[0] + " / \"" + requests.get(i)[1] + "\"";
                assertEquals(200, together.status(), what);
                assertTrue(together.done(), what + ": the stream did not end with [DONE]: " + together.events());
                assertNull(together.error(), what);
                assertNotNull(together.finishReason(), what);
                assertNotNull(together.usage(), what + ": include_usage asked for a usage chunk");
                assertEquals(single.text(), together.text(), what + ": the answer in a batch of 64 differs from the same request alone");
                assertEquals(single.finishReason(), together.finishReason(), what);
                assertEquals(single.usage(), together.usage(), what);
                distinct.add(together.text());
            }
            assertTrue(maxBatch > 1, "the requests never shared a batch (largest batch " + maxBatch + "): the test proved nothing");
            // Four models over sixteen prompts: the fine-tunes answer differently from the base and from each other.
            assertTrue(distinct.size() > 48, "only " + distinct.size() + " distinct answers among 64");
        }
    }
}
